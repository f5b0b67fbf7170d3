package predicate_test

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/policy/predicate"
)

func readStatement(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Policies over SLSA provenance as policy-controller users write them.
// slowCUE takes predicate.n² steps of a comprehension, in little memory.
const slowCUE = `
import "list"

predicate: n: int
_r: list.Range(0, predicate.n, 1)
check: len([for i in _r for j in _r if i*j < 0 {1}]) & 0
`

const (
	cueSLSA1 = `
predicateType: "https://slsa.dev/provenance/v1"
predicate: runDetails: builder: id: =~"^https://github.com/slsa-framework/slsa-github-generator/"
predicate: buildDefinition: buildType: "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1"
predicate: buildDefinition: externalParameters: workflow: repository: "https://github.com/example/app"
`
	cueSLSA1WrongRepo = `
predicateType: "https://slsa.dev/provenance/v1"
predicate: buildDefinition: externalParameters: workflow: repository: "https://github.com/example/other"
`
	cueSLSA1Missing = `
predicate: runDetails: metadata: reproducible: bool
`
	cueSLSA02 = `
import "list"

predicateType: "https://slsa.dev/provenance/v0.2"
predicate: builder: id: =~"^https://github.com/slsa-framework/slsa-github-generator/"
predicate: buildType: "https://github.com/slsa-framework/slsa-github-generator/container@v1"
predicate: materials: [...{uri: =~"^(git\\+https://github.com/example/|pkg:docker/)"}]
predicate: materials: list.MinItems(1)
`
	cueSLSA02BadBuilder = `
predicateType: "https://slsa.dev/provenance/v0.2"
predicate: builder: id: "https://cloudbuild.googleapis.com/GoogleHostedWorker"
`
	cueSLSA02BadMaterial = `
predicate: materials: [...{uri: =~"^git\\+https://github.com/example/"}]
`

	regoSLSA1 = `
package sigstore

default isCompliant = false

isCompliant {
	input.predicateType == "https://slsa.dev/provenance/v1"
	startswith(input.predicate.runDetails.builder.id, "https://github.com/slsa-framework/slsa-github-generator/")
	input.predicate.buildDefinition.externalParameters.workflow.repository == "https://github.com/example/app"
}
`
	regoSLSA1V1Syntax = `
package sigstore

default isCompliant := false

isCompliant if {
	input.predicateType == "https://slsa.dev/provenance/v1"
	some dep in input.predicate.buildDefinition.resolvedDependencies
	startswith(dep.uri, "git+https://github.com/example/app@")
}
`
	regoSLSA02Result = `
package sigstore

isCompliant[response] {
	bad := [m.uri | m := input.predicate.materials[_]; not startswith(m.uri, "git+https://github.com/example/")]
	count(bad) == 0
	response := {"result": true, "error": "", "warning": ""}
}

isCompliant[response] {
	bad := [m.uri | m := input.predicate.materials[_]; not startswith(m.uri, "git+https://github.com/example/")]
	count(bad) > 0
	response := {"result": false, "error": sprintf("materials from outside github.com/example: %v", [bad]), "warning": "check the build's inputs"}
}
`
	regoSLSA02Builder = `
package sigstore

import rego.v1

isCompliant := {"result": ok, "error": msg} if {
	ok := input.predicate.builder.id == "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v1.9.0"
	msg := sprintf("builder %s is not the SLSA generator v1.9.0", [input.predicate.builder.id])
}
`
	regoFalse = `
package sigstore
isCompliant = false
`
	regoUndefined = `
package sigstore
isCompliant {
	input.predicateType == "https://example.com/never"
}
`
	// Two values for a complete rule: an evaluation error, not a violation.
	regoConflict = `
package sigstore
isCompliant = true { input._type }
isCompliant = false { input.predicateType }
`
	regoBadType = `
package sigstore
isCompliant = 42
`
)

func TestEval(t *testing.T) {
	v1 := readStatement(t, "slsa-v1.json")
	v02 := readStatement(t, "slsa-v02.json")
	tests := []struct {
		name      string
		src       predicate.Source
		statement []byte
		// wantViolation: the *Violation's Message contains it; wantErr: a non-Violation error
		// containing it. Both empty: the policy holds.
		wantViolation string
		wantErr       string
	}{
		{name: "cue slsa v1 holds", src: predicate.Source{CUE: cueSLSA1}, statement: v1},
		{name: "cue slsa v1 wrong repository", src: predicate.Source{CUE: cueSLSA1WrongRepo, Name: "repo.cue"}, statement: v1,
			wantViolation: `predicate.buildDefinition.externalParameters.workflow.repository: conflicting values "https://github.com/example/app" and "https://github.com/example/other" (repo.cue:3:`},
		{name: "cue slsa v1 against v0.2", src: predicate.Source{CUE: cueSLSA1}, statement: v02,
			wantViolation: `predicateType: conflicting values "https://slsa.dev/provenance/v0.2" and "https://slsa.dev/provenance/v1"`},
		{name: "cue required field missing", src: predicate.Source{CUE: cueSLSA1Missing}, statement: v1,
			wantViolation: "predicate.runDetails.metadata.reproducible: incomplete value bool"},
		{name: "cue slsa v0.2 holds", src: predicate.Source{CUE: cueSLSA02}, statement: v02},
		{name: "cue slsa v0.2 wrong builder", src: predicate.Source{CUE: cueSLSA02BadBuilder}, statement: v02,
			wantViolation: `predicate.builder.id: conflicting values "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v1.9.0" and "https://cloudbuild.googleapis.com/GoogleHostedWorker" (policy.cue:3:25)`},
		{name: "cue slsa v0.2 material from elsewhere", src: predicate.Source{CUE: cueSLSA02BadMaterial}, statement: v02,
			wantViolation: `predicate.materials.1.uri: invalid value "pkg:docker/golang@1.26.8" (out of bound =~"^git\\+https://github.com/example/")`},

		{name: "rego slsa v1 holds", src: predicate.Source{Rego: regoSLSA1}, statement: v1},
		{name: "rego slsa v1 against v0.2", src: predicate.Source{Rego: regoSLSA1}, statement: v02,
			wantViolation: "isCompliant is false"},
		{name: "rego v1 syntax holds", src: predicate.Source{Rego: regoSLSA1V1Syntax}, statement: v1},
		{name: "rego v1 syntax fails", src: predicate.Source{Rego: regoSLSA1V1Syntax}, statement: v02,
			wantViolation: "isCompliant is false"},
		{name: "rego result set fails", src: predicate.Source{Rego: regoSLSA02Result}, statement: v02,
			wantViolation: `materials from outside github.com/example: ["pkg:docker/golang@1.26.8"]`},
		{name: "rego result set holds", src: predicate.Source{Rego: regoSLSA02Result}, statement: v1}, // v1 has no materials
		{name: "rego result object holds", src: predicate.Source{Rego: regoSLSA02Builder}, statement: v02},
		{name: "rego result object fails", src: predicate.Source{Rego: regoSLSA02Builder},
			statement:     []byte(strings.Replace(string(v02), "v1.9.0", "v1.2.0", 1)),
			wantViolation: "builder https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v1.2.0 is not the SLSA generator v1.9.0"},
		{name: "rego false", src: predicate.Source{Rego: regoFalse}, statement: v1, wantViolation: "isCompliant is false"},
		{name: "rego undefined", src: predicate.Source{Rego: regoUndefined}, statement: v1, wantViolation: "isCompliant is undefined"},
		{name: "rego evaluation error", src: predicate.Source{Rego: regoConflict, Name: "conflict.rego"}, statement: v1,
			wantErr: "conflict.rego: rego evaluation: conflict.rego:4: eval_conflict_error: rule data.sigstore.isCompliant produced conflicting values"},
		{name: "rego result of another type", src: predicate.Source{Rego: regoBadType}, statement: v1,
			wantErr: "isCompliant is a number, want a boolean or {result, error, warning} objects"},

		// The statement is checked before any policy sees it.
		{name: "not json", src: predicate.Source{CUE: cueSLSA1}, statement: []byte(`{"_type": `), wantErr: "statement: invalid json"},
		{name: "not an object", src: predicate.Source{Rego: regoSLSA1}, statement: []byte(`["https://slsa.dev/provenance/v1"]`), wantErr: "statement is not a JSON object"},
		{name: "duplicate member", src: predicate.Source{Rego: regoSLSA1},
			statement: []byte(`{"predicateType": "https://slsa.dev/provenance/v1", "predicateType": "x"}`), wantErr: "statement: "},
		{name: "data after the value", src: predicate.Source{CUE: cueSLSA1}, statement: append(append([]byte{}, v1...), `{}`...), wantErr: "data after the value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := predicate.Compile(tt.src)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			err = p.Eval(context.Background(), tt.statement)
			var v *predicate.Violation
			switch {
			case tt.wantViolation != "":
				if !errors.As(err, &v) {
					t.Fatalf("Eval = %v; want a *Violation containing %q", err, tt.wantViolation)
				}
				if !strings.Contains(v.Message, tt.wantViolation) {
					t.Fatalf("Violation.Message = %q; want it to contain %q", v.Message, tt.wantViolation)
				}
			case tt.wantErr != "":
				if err == nil || errors.As(err, &v) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Eval = %v; want an error (not a Violation) containing %q", err, tt.wantErr)
				}
			default:
				if err != nil {
					t.Fatalf("Eval = %v; want the policy to hold", err)
				}
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		src  predicate.Source
		opts []predicate.Option
		want string
	}{
		{name: "empty", src: predicate.Source{}, want: "needs cue or rego"},
		{name: "both", src: predicate.Source{CUE: "a: 1", Rego: regoFalse}, want: "either cue or rego, not both"},
		{name: "cue syntax", src: predicate.Source{Name: "p.cue", CUE: "predicateType: \"x\"\npredicate: {\n  builder: id: \n"}, want: "cue: expected operand, found 'EOF' (p.cue:3:17)"},
		{name: "cue conflict in itself", src: predicate.Source{Name: "p.cue", CUE: "predicateType: \"a\"\npredicateType: \"b\"\n"},
			want: `predicateType: conflicting values "b" and "a" (p.cue:1:16, p.cue:2:16)`},
		{name: "cue not a struct", src: predicate.Source{CUE: `"https://slsa.dev/provenance/v1"`}, want: "is a string, not a struct"},
		{name: "cue unknown import", src: predicate.Source{Name: "p.cue", CUE: "import \"example.com/x\"\na: x.b\n"}, want: `p.cue:1:8`},
		{name: "rego syntax", src: predicate.Source{Name: "p.rego", Rego: "package sigstore\n\nisCompliant {\n  input.x ==\n}\n"}, want: "p.rego:5: rego_parse_error: unexpected } token"},
		{name: "rego v1 syntax error", src: predicate.Source{Name: "p.rego", Rego: "package sigstore\n\ndefault isCompliant := false\n\nisCompliant if {\n  some x in \n}\n"}, want: "p.rego:6"},
		{name: "rego unsafe variable", src: predicate.Source{Name: "p.rego", Rego: "package sigstore\n\nisCompliant {\n  x == 1\n}\n"}, want: "p.rego:4: rego_unsafe_var_error: var x is unsafe"},
		{name: "rego wrong package", src: predicate.Source{Rego: "package signature\nallow = true\n"}, want: "the package is signature; a predicate policy is package sigstore"},
		{name: "rego no isCompliant", src: predicate.Source{Rego: "package sigstore\nallow = true\n"}, want: "no rule isCompliant"},
		{name: "rego http.send", src: predicate.Source{Name: "p.rego", Rego: "package sigstore\nisCompliant {\n  http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:1/\"}).status_code == 200\n}\n"}, want: "p.rego:3: rego_type_error: undefined function http.send"},
		{name: "rego opa.runtime", src: predicate.Source{Rego: "package sigstore\nisCompliant {\n  opa.runtime().env.HOME\n}\n"}, want: "undefined function opa.runtime"},
		{name: "bad timeout", src: predicate.Source{CUE: "a: 1"}, opts: []predicate.Option{predicate.WithTimeout(0)}, want: "timeout 0s: must be positive"},
		{name: "bad max input", src: predicate.Source{CUE: "a: 1"}, opts: []predicate.Option{predicate.WithMaxInput(-1)}, want: "max input -1: must be positive"},
		{name: "bad concurrency", src: predicate.Source{CUE: "a: 1"}, opts: []predicate.Option{predicate.WithCUEConcurrency(0)}, want: "cue concurrency 0: must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := predicate.Compile(tt.src, tt.opts...)
			if err == nil {
				t.Fatalf("Compile = %v, nil; want an error containing %q", p, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compile error = %q; want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestMaxInput(t *testing.T) {
	v1 := readStatement(t, "slsa-v1.json")
	for _, src := range []predicate.Source{{CUE: cueSLSA1}, {Rego: regoSLSA1}} {
		p, err := predicate.Compile(src, predicate.WithMaxInput(len(v1)))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Eval(context.Background(), v1); err != nil {
			t.Fatalf("%s: a statement of exactly the bound: %v", p.Name(), err)
		}
		big := append(append([]byte{}, v1...), ' ')
		err = p.Eval(context.Background(), big)
		want := "more than the " + itoa(len(v1)) + " a policy evaluates"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: one byte over: %v; want an error containing %q", p.Name(), err, want)
		}
	}
	// The default bound: 4 MiB.
	p, err := predicate.Compile(predicate.Source{Rego: regoSLSA1})
	if err != nil {
		t.Fatal(err)
	}
	huge := []byte(`{"predicate": "` + strings.Repeat("a", predicate.DefaultMaxInput) + `"}`)
	if err := p.Eval(context.Background(), huge); err == nil || !strings.Contains(err.Error(), "more than the 4194304") {
		t.Fatalf("a 4 MiB statement: %v; want it refused", err)
	}
}

func itoa(n int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + fmtInt(n)) }

func fmtInt(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// Policies that run far longer than any bound: each Eval returns a timeout error within the
// bound (plus scheduling slack) and is not a Violation.
func TestTimeout(t *testing.T) {
	v1 := readStatement(t, "slsa-v1.json")
	tests := []struct {
		name      string
		src       predicate.Source
		statement []byte
	}{
		// 4·10^8 iterations, nothing kept.
		{name: "rego", src: predicate.Source{Rego: `
package sigstore
import rego.v1
isCompliant if {
	some i in numbers.range(1, 20000)
	some j in numbers.range(1, 20000)
	i * j == -1
}
`}, statement: v1},
		// n² iterations of a comprehension: seconds of CPU for n = 400, in a few MiB.
		{name: "cue", src: predicate.Source{CUE: slowCUE}, statement: []byte(`{"predicate": {"n": 400}}`)},
	}
	const bound = 300 * time.Millisecond
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := predicate.Compile(tt.src, predicate.WithTimeout(bound), predicate.WithCUEConcurrency(1))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err = p.Eval(context.Background(), tt.statement)
			took := time.Since(start)
			var v *predicate.Violation
			if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &v) || !strings.Contains(err.Error(), "did not finish within 300ms") {
				t.Fatalf("Eval = %v; want a timeout error", err)
			}
			if took > bound+2*time.Second {
				t.Fatalf("Eval returned after %s; the bound is %s", took, bound)
			}
			t.Logf("timed out after %s", took)
		})
	}
}

// A CUE evaluation cannot be interrupted: with one slot, a second Eval while the first still
// runs waits for the slot and times out itself, so that runaway evaluations never pile up.
func TestCUESlots(t *testing.T) {
	p, err := predicate.Compile(predicate.Source{CUE: slowCUE}, predicate.WithTimeout(200*time.Millisecond), predicate.WithCUEConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	slow, quick := []byte(`{"predicate": {"n": 500}}`), []byte(`{"predicate": {"n": 2}}`)
	if err := p.Eval(context.Background(), quick); err != nil {
		t.Fatalf("a quick evaluation: %v", err)
	}
	before := runtime.NumGoroutine()
	if err := p.Eval(context.Background(), slow); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a slow evaluation: %v; want a timeout", err)
	}
	// The slow evaluation still holds the only slot: quick ones wait for it, and time out,
	// without starting goroutines.
	for range 2 {
		err := p.Eval(context.Background(), quick)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no free cue evaluation slot") {
			t.Fatalf("while the slot is taken: %v; want a timeout waiting for a slot", err)
		}
	}
	if n := runtime.NumGoroutine(); n > before+1 {
		t.Fatalf("%d goroutines after 3 evaluations, %d before; want at most one more", n, before)
	}
	// Once the slow evaluation ends, its slot is free again.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := p.Eval(context.Background(), quick)
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "no free cue evaluation slot") || time.Now().After(deadline) {
			t.Fatalf("after the slow evaluation: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestConcurrentEval(t *testing.T) {
	v1 := readStatement(t, "slsa-v1.json")
	v02 := readStatement(t, "slsa-v02.json")
	for _, src := range []predicate.Source{{CUE: cueSLSA1}, {Rego: regoSLSA1}} {
		p, err := predicate.Compile(src)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 32 {
			wg.Go(func() {
				stmt, holds := v1, true
				if i%2 == 1 {
					stmt, holds = v02, false
				}
				err := p.Eval(context.Background(), stmt)
				var v *predicate.Violation
				if holds && err != nil || !holds && !errors.As(err, &v) {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("%s: concurrent Eval: %v", p.Name(), err)
		}
	}
}
