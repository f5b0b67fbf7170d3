#!/usr/bin/env bash
# Runs one fuzz target: hack/fuzz.sh PKG NAME FUZZTIME MINIMIZETIME.
#
# Go 1.26's fuzzing coordinator can report a bare "context deadline exceeded" when -fuzztime
# ends while a worker is still answering (go.dev/issue/75804, fixed in Go 1.27): the target
# fails although no input failed and nothing was written to testdata/fuzz. That result, and
# only that one, is retried (twice at most). A run that writes a failing input, panics, or
# fails any other way fails at once.
set -uo pipefail
pkg=$1 name=$2 fuzztime=$3 minimize=$4
go=${GO:-go}
corpus="$pkg/testdata/fuzz/$name"
count() { find "$corpus" -type f 2>/dev/null | wc -l; }
for attempt in 1 2 3; do
	before=$(count)
	out=$(mktemp)
	"$go" test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$pkg" 2>&1 | tee "$out"
	st=${PIPESTATUS[0]}
	after=$(count)
	if [ "$st" -eq 0 ]; then rm -f "$out"; exit 0; fi
	if [ "$after" -ne "$before" ] || grep -q 'Failing input written' "$out" ||
		! grep -q '^    context deadline exceeded$' "$out" || grep -q '^panic:' "$out"; then
		rm -f "$out"; exit "$st"
	fi
	rm -f "$out"
	echo "fuzz $name: the coordinator's deadline race (go.dev/issue/75804), no failing input; retrying ($attempt)" >&2
done
exit 1
