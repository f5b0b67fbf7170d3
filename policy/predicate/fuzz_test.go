package predicate_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/portcullis/portcullis/policy/predicate"
)

// FuzzEval feeds arbitrary statements to a fixed CUE and a fixed Rego policy: Eval never
// panics, and answers nil, a *Violation or another error, never hanging past its bound.
func FuzzEval(f *testing.F) {
	for _, name := range []string{"slsa-v1.json", "slsa-v02.json"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"predicate": {"materials": [{"uri": 1}, null, {"uri": "git+https://github.com/example/a"}]}}`))
	f.Add([]byte(`{"predicateType": 1e999999, "predicate": {"builder": {"id": "\u0000"}}}`))
	f.Add([]byte(`{"a": [[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}`))
	policies := []predicate.Source{{CUE: cueSLSA02, Name: "fuzz.cue"}, {Rego: regoSLSA02Result, Name: "fuzz.rego"}, {Rego: regoSLSA1, Name: "fuzz1.rego"}}
	var compiled []*predicate.Policy
	for _, src := range policies {
		p, err := predicate.Compile(src, predicate.WithTimeout(5*time.Second), predicate.WithMaxInput(64<<10))
		if err != nil {
			f.Fatal(err)
		}
		compiled = append(compiled, p)
	}
	f.Fuzz(func(t *testing.T, statement []byte) {
		for _, p := range compiled {
			err := p.Eval(context.Background(), statement)
			var v *predicate.Violation
			if errors.As(err, &v) && v.Message == "" {
				t.Fatalf("%s: a Violation without a message", p.Name())
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s: a %d-byte statement took more than 5s: %v", p.Name(), len(statement), err)
			}
		}
	})
}
