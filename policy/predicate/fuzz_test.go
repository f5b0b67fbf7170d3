package predicate_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/portcullis/portcullis/policy/predicate"
)

// fuzzTimeout bounds each evaluation of FuzzEval, and fuzzMaxInput the statements it
// evaluates. The bound is short so that a fuzzing worker is never long inside one input:
// at the end of -fuzztime Go's coordinator races workers still running an input, and can
// fail the run with a bare "context deadline exceeded". The cap keeps the largest statement
// well within the bound (CUE takes about 25 µs per list element here: ~50 ms for a 4 KiB
// list of numbers), so a timeout still means a pathological statement, not a large one.
const (
	fuzzTimeout  = 250 * time.Millisecond
	fuzzMaxInput = 4 << 10
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
		p, err := predicate.Compile(src, predicate.WithTimeout(fuzzTimeout), predicate.WithMaxInput(fuzzMaxInput))
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
				t.Fatalf("%s: a %d-byte statement took more than %s: %v", p.Name(), len(statement), fuzzTimeout, err)
			}
		}
	})
}
