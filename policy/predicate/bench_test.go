package predicate_test

import (
	"context"
	"testing"

	"github.com/portcullis/portcullis/policy/predicate"
)

func benchmarkEval(b *testing.B, src predicate.Source) {
	statement := readStatement(b, "slsa-v02.json")
	p, err := predicate.Compile(src)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Eval(context.Background(), statement); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvalCUE is one CUE evaluation of a typical SLSA v0.2 provenance statement: the
// policy compiled again in a fresh context, unified with the statement, validated.
func BenchmarkEvalCUE(b *testing.B) { benchmarkEval(b, predicate.Source{CUE: cueSLSA02}) }

// BenchmarkEvalRego is one evaluation of the prepared Rego query on the same statement.
func BenchmarkEvalRego(b *testing.B) {
	benchmarkEval(b, predicate.Source{Rego: regoSLSA02Builder})
}
