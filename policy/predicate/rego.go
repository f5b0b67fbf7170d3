package predicate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// policy-controller's conventions for a Rego predicate policy.
const (
	regoPackage = "sigstore"
	regoRule    = "isCompliant"
	regoQuery   = "data." + regoPackage + "." + regoRule
)

// deniedBuiltins are the built-ins a predicate policy may not call: they reach the network
// or read the process's environment, and a pull must not depend on either.
var deniedBuiltins = []string{"http.send", "net.lookup_ip_addr", "opa.runtime"}

// regoPolicy is a prepared query, safe for concurrent evaluation.
type regoPolicy struct {
	query rego.PreparedEvalQuery
}

func compileRego(name, src string) (*regoPolicy, error) {
	module, err := parseRego(name, src)
	if err != nil {
		return nil, err
	}
	if got := module.Package.Path.String(); got != "data."+regoPackage {
		return nil, fmt.Errorf("rego: %s: the package is %s; a predicate policy is package %s (policy-controller's convention)", name, strings.TrimPrefix(got, "data."), regoPackage)
	}
	if !slices.ContainsFunc(module.Rules, func(r *ast.Rule) bool { return r.Head.Name.String() == regoRule || r.Head.Ref().String() == regoRule }) {
		return nil, fmt.Errorf("rego: %s: no rule %s; a predicate policy defines %s (true, or {result, error, warning} objects)", name, regoRule, regoRule)
	}
	caps := ast.CapabilitiesForThisVersion()
	caps.Builtins = slices.DeleteFunc(slices.Clone(caps.Builtins), func(b *ast.Builtin) bool {
		return slices.Contains(deniedBuiltins, b.Name)
	})
	caps.AllowNet = []string{}
	q, err := rego.New(
		rego.Query(regoQuery),
		rego.ParsedModule(module),
		rego.SetRegoVersion(module.RegoVersion()),
		rego.Capabilities(caps),
	).PrepareForEval(context.Background())
	if err != nil {
		return nil, fmt.Errorf("rego: %w", err)
	}
	return &regoPolicy{query: q}, nil
}

// parseRego parses src as Rego v0, the dialect of policy-controller's policies (and of v1
// syntax after `import rego.v1`), and else as Rego v1. When neither parses, the error is the
// one of the dialect that read further.
func parseRego(name, src string) (*ast.Module, error) {
	m0, err0 := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV0})
	if err0 == nil {
		return m0, nil
	}
	m1, err1 := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err1 == nil {
		return m1, nil
	}
	if errorRow(err1) > errorRow(err0) {
		return nil, fmt.Errorf("rego (v1): %w", err1)
	}
	return nil, fmt.Errorf("rego: %w", err0)
}

// errorRow is the line of the first error of a parse, 0 when unknown.
func errorRow(err error) int {
	var errs ast.Errors
	if errors.As(err, &errs) && len(errs) > 0 && errs[0].Location != nil {
		return errs[0].Location.Row
	}
	return 0
}

func (r *regoPolicy) eval(ctx context.Context, statement []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("rego evaluation failed: %v", p)
		}
	}()
	input, err := decodeJSON(statement)
	if err != nil {
		return fmt.Errorf("statement: %w", err)
	}
	rs, err := r.query.Eval(ctx, rego.EvalInput(input))
	if err != nil {
		return fmt.Errorf("rego evaluation: %w", err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return &Violation{Message: regoRule + " is undefined"}
	}
	return regoResult(rs[0].Expressions[0].Value)
}

// regoResult reads isCompliant as policy-controller does: true holds; false does not; a set
// (or array) of {result, error, warning} objects holds when one of them has result true, and
// otherwise its errors are the message. A single such object is read as a set of one.
func regoResult(v any) error {
	switch v := v.(type) {
	case bool:
		if v {
			return nil
		}
		return &Violation{Message: regoRule + " is false"}
	case map[string]any:
		return regoResult([]any{v})
	case []any:
		var msgs []string
		for _, o := range v {
			obj, ok := o.(map[string]any)
			if !ok {
				return fmt.Errorf("%s holds a %s, want {result, error, warning} objects", regoRule, regoType(o))
			}
			ok, msg, err := regoObject(obj)
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
			if msg != "" && !slices.Contains(msgs, msg) {
				msgs = append(msgs, msg)
			}
		}
		if len(msgs) == 0 {
			return &Violation{Message: regoRule + " has no result true"}
		}
		slices.Sort(msgs) // a set has no order; the message should not change between runs
		return &Violation{Message: truncate(strings.Join(msgs, "; "))}
	default:
		return fmt.Errorf("%s is a %s, want a boolean or {result, error, warning} objects", regoRule, regoType(v))
	}
}

// regoObject reads one {result, error, warning} object: whether it holds, and the message
// for a person when it does not (its error, else its warning).
func regoObject(o map[string]any) (bool, string, error) {
	for k := range o {
		if k != "result" && k != "error" && k != "warning" {
			return false, "", fmt.Errorf("%s object has a member %q; its members are result, error and warning", regoRule, k)
		}
	}
	result := false
	if r, ok := o["result"]; ok {
		b, isBool := r.(bool)
		if !isBool {
			return false, "", fmt.Errorf("%s object's result is a %s, want a boolean", regoRule, regoType(r))
		}
		result = b
	}
	str := func(k string) (string, error) {
		s, ok := o[k]
		if !ok {
			return "", nil
		}
		if str, isStr := s.(string); isStr {
			return str, nil
		}
		return "", fmt.Errorf("%s object's %s is a %s, want a string", regoRule, k, regoType(s))
	}
	msg, err := str("error")
	if err != nil {
		return false, "", err
	}
	warn, err := str("warning")
	if err != nil {
		return false, "", err
	}
	if msg == "" {
		msg = warn
	}
	return result, msg, nil
}

func regoType(v any) string {
	switch v.(type) {
	case bool:
		return "boolean"
	case string:
		return "string"
	case map[string]any:
		return "object"
	case []any:
		return "set or array"
	case nil:
		return "null"
	default:
		return "number"
	}
}
