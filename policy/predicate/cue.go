package predicate

import (
	"context"
	"fmt"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"
	cueerrors "cuelang.org/go/cue/errors"
	cuejson "cuelang.org/go/encoding/json"
)

// maxCUEErrors is how many of CUE's errors a Violation lists.
const maxCUEErrors = 5

// cuePolicy evaluates CUE source. A cue.Context is not safe for concurrent use, so each
// evaluation compiles the (small) source again in a context of its own; slots bounds the
// evaluations in flight (see WithCUEConcurrency).
type cuePolicy struct {
	name  string
	src   string
	slots chan struct{}
}

func compileCUE(name, src string, concurrency int) (*cuePolicy, error) {
	v := cuecontext.New().CompileString(src, cue.Filename(name))
	if err := v.Err(); err != nil {
		return nil, fmt.Errorf("cue: %s", cueMessage(err))
	}
	// Conflicts within the policy itself, found without a statement.
	if err := v.Validate(); err != nil {
		return nil, fmt.Errorf("cue: %s", cueMessage(err))
	}
	if v.IncompleteKind()&cue.StructKind == 0 {
		return nil, fmt.Errorf("cue: %s is a %s, not a struct: a predicate policy constrains the statement's fields (_type, subject, predicateType, predicate)", name, v.IncompleteKind())
	}
	return &cuePolicy{name: name, src: src, slots: make(chan struct{}, concurrency)}, nil
}

// eval runs the evaluation in a goroutine of its own, which holds a slot until CUE returns,
// and waits for it until ctx ends.
func (c *cuePolicy) eval(ctx context.Context, statement []byte) error {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return errNoSlot
	}
	done := make(chan error, 1) // buffered: an abandoned evaluation still ends
	go func() {
		defer func() { <-c.slots }()
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("cue evaluation failed: %v", r)
			}
		}()
		done <- c.unify(statement)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unify unifies the policy with the statement and requires the result to be concrete, as
// policy-controller does: a conflict, or a field the policy requires and the statement
// lacks, is a Violation.
func (c *cuePolicy) unify(statement []byte) error {
	cctx := cuecontext.New()
	pol := cctx.CompileString(c.src, cue.Filename(c.name))
	if err := pol.Err(); err != nil { // compiled before: not expected
		return fmt.Errorf("cue: %s", cueMessage(err))
	}
	expr, err := cuejson.Extract("statement", statement)
	if err != nil {
		return fmt.Errorf("statement: %s", cueMessage(err))
	}
	data := cctx.BuildExpr(expr)
	if err := data.Err(); err != nil {
		return fmt.Errorf("statement: %s", cueMessage(err))
	}
	if err := pol.Unify(data).Validate(cue.Concrete(true)); err != nil {
		return &Violation{Message: cueMessage(err)}
	}
	return nil
}

// cueMessage is CUE's error text for a person: one line per error (at most maxCUEErrors),
// each with the policy positions CUE gives, bounded in length.
func cueMessage(err error) string {
	errs := cueerrors.Errors(err)
	if len(errs) == 0 {
		return truncate(err.Error())
	}
	var lines []string
	for i, e := range errs {
		if i == maxCUEErrors {
			lines = append(lines, fmt.Sprintf("and %d more", len(errs)-maxCUEErrors))
			break
		}
		line := e.Error()
		var pos []string
		for _, p := range cueerrors.Positions(e) {
			if p.IsValid() && p.Filename() != "" && p.Filename() != "statement" {
				pos = append(pos, fmt.Sprintf("%s:%d:%d", p.Filename(), p.Line(), p.Column()))
			}
		}
		if len(pos) > 0 {
			line += " (" + strings.Join(pos, ", ") + ")"
		}
		lines = append(lines, line)
	}
	return truncate(strings.Join(lines, "; "))
}
