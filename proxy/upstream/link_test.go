package upstream

import "testing"

func TestNextLink(t *testing.T) {
	for _, tc := range []struct{ link, want string }{
		{`</v2/r/referrers/sha256:ab?n=2&last=x>; rel="next"`, "/v2/r/referrers/sha256:ab?n=2&last=x"},
		{`<https://other/v2/a?p=1>; rel="prev", </v2/a?p=3>; rel="next"`, "/v2/a?p=3"},
		{`</v2/a?p=3>; rel=next`, "/v2/a?p=3"},
		{`</v2/a?p=3>; title="x"; REL="prev next"`, "/v2/a?p=3"},
		{`</v2/a?p=3>; rel="prev"`, ""},
		{`/v2/a?p=3; rel="next"`, ""},
		{`<>; rel="next"`, ""},
		{``, ""},
		{`<%zz>; rel="next"`, ""},
	} {
		got := nextLink(tc.link)
		switch {
		case tc.want == "" && got != nil && got.String() != "":
			t.Errorf("nextLink(%q) = %q, want none", tc.link, got)
		case tc.want != "" && (got == nil || got.String() != tc.want):
			t.Errorf("nextLink(%q) = %v, want %q", tc.link, got, tc.want)
		}
	}
}
