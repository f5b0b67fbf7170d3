package predicate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/strictjson"
)

// Defaults of the options.
const (
	// DefaultTimeout bounds one evaluation (WithTimeout).
	DefaultTimeout = 2 * time.Second
	// DefaultMaxInput bounds the size of a statement (WithMaxInput): 4 MiB.
	DefaultMaxInput = 4 << 20
)

// maxMessage bounds a Violation's Message: a statement's values may be long, and the message
// goes into logs and denials.
const maxMessage = 2048

// Source is the text of one predicate policy: exactly one of CUE and Rego is set.
type Source struct {
	CUE  string
	Rego string
	// Name names the policy in messages and positions (a file name, or where in the
	// configuration it is); "policy.cue" or "policy.rego" when empty.
	Name string
}

// Violation is a policy that does not hold for a statement: Message is what CUE or Rego said,
// for a person.
type Violation struct {
	Message string
}

func (v *Violation) Error() string { return "not satisfied: " + v.Message }

// Option configures Compile.
type Option func(*options) error

type options struct {
	timeout     time.Duration
	maxInput    int
	concurrency int
}

// WithTimeout bounds each evaluation to d (DefaultTimeout when not given). An evaluation
// still running at the deadline does not hold: Eval returns an error that wraps
// context.DeadlineExceeded.
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("timeout %s: must be positive", d)
		}
		o.timeout = d
		return nil
	}
}

// WithMaxInput bounds the statements Eval accepts to n bytes (DefaultMaxInput when not
// given); a larger statement is refused before it is parsed.
func WithMaxInput(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("max input %d: must be positive", n)
		}
		o.maxInput = n
		return nil
	}
}

// WithCUEConcurrency bounds the CUE evaluations of one policy that may run at once to n
// (GOMAXPROCS when not given). CUE cannot be interrupted: an evaluation that outlives its
// timeout goes on in the background until it ends, holding its slot, so that a pathological
// policy occupies at most n goroutines; while all are taken, further evaluations wait for a
// slot within their own timeout. Rego evaluations stop at their deadline and are not limited.
func WithCUEConcurrency(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("cue concurrency %d: must be positive", n)
		}
		o.concurrency = n
		return nil
	}
}

// Policy is a compiled predicate policy. It is safe for concurrent use.
type Policy struct {
	name     string
	timeout  time.Duration
	maxInput int
	eval     func(ctx context.Context, statement []byte) error
}

// Compile compiles one CUE or Rego source (exactly one non-empty). Errors name the problem,
// with the line and column CUE or OPA report.
func Compile(src Source, opts ...Option) (*Policy, error) {
	o := options{timeout: DefaultTimeout, maxInput: DefaultMaxInput, concurrency: runtime.GOMAXPROCS(0)}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	hasCUE, hasRego := strings.TrimSpace(src.CUE) != "", strings.TrimSpace(src.Rego) != ""
	switch {
	case hasCUE && hasRego:
		return nil, errors.New("a predicate policy is either cue or rego, not both")
	case hasCUE:
		name := src.Name
		if name == "" {
			name = "policy.cue"
		}
		c, err := compileCUE(name, src.CUE, o.concurrency)
		if err != nil {
			return nil, err
		}
		return &Policy{name: name, timeout: o.timeout, maxInput: o.maxInput, eval: c.eval}, nil
	case hasRego:
		name := src.Name
		if name == "" {
			name = "policy.rego"
		}
		r, err := compileRego(name, src.Rego)
		if err != nil {
			return nil, err
		}
		return &Policy{name: name, timeout: o.timeout, maxInput: o.maxInput, eval: r.eval}, nil
	default:
		return nil, errors.New("a predicate policy needs cue or rego source; both are empty")
	}
}

// Name is the policy's name in messages.
func (p *Policy) Name() string { return p.name }

// Eval evaluates the policy against one in-toto statement (JSON bytes). nil: it holds.
// A *Violation (errors.As) when the policy does not hold, whose Message is the CUE or Rego
// message for a person. Any other error (too large, timeout, bad JSON, evaluation error)
// also means it does not hold (callers deny), with a clear message. Safe for concurrent use.
func (p *Policy) Eval(ctx context.Context, statement []byte) error {
	if len(statement) > p.maxInput {
		return fmt.Errorf("%s: statement is %d bytes, more than the %d a policy evaluates", p.name, len(statement), p.maxInput)
	}
	if err := strictjson.CheckUnambiguous(statement); err != nil {
		return fmt.Errorf("%s: statement: %w", p.name, err)
	}
	if first := firstByte(statement); first != '{' {
		return fmt.Errorf("%s: statement is not a JSON object", p.name)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if err := p.eval(ctx, statement); err != nil {
		if ctx.Err() != nil {
			return p.stopped(ctx, err)
		}
		return fmt.Errorf("%s: %w", p.name, err)
	}
	return nil
}

// errNoSlot is a CUE evaluation that did not start: all slots were taken until it ended.
var errNoSlot = errors.New("no free cue evaluation slot")

// stopped is the error of an evaluation whose context ended: the timeout, or the caller's.
func (p *Policy) stopped(ctx context.Context, err error) error {
	what := "evaluation did not finish"
	if errors.Is(err, errNoSlot) {
		what = "no free cue evaluation slot (all taken by evaluations still running)"
	}
	cause := context.Cause(ctx)
	if errors.Is(cause, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %s within %s: %w", p.name, what, p.timeout, cause)
	}
	return fmt.Errorf("%s: %s: %w", p.name, what, cause)
}

// firstByte is the first byte of b that is not JSON white space.
func firstByte(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
		default:
			return c
		}
	}
	return 0
}

// decodeJSON decodes a checked statement keeping numbers exact (json.Number), as OPA reads
// its input.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// truncate bounds a message to maxMessage bytes, on a rune boundary.
func truncate(s string) string {
	s = strings.TrimSpace(s)
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + " …(truncated)"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
