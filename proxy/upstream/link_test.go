package upstream

import (
	"net/url"
	"strings"
	"testing"
)

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

// FuzzNextLink checks the Link header parser against links built from their parts: a next
// link whose URL has any path and query (commas included, which RFC 8288 allows inside
// <…>) is found whatever non-next links come before or after it, and a header that says
// "next" nowhere yields nothing.
func FuzzNextLink(f *testing.F) {
	f.Add("/v2/r/referrers/sha256:ab", "x", `title="a, b"`, `</v2/p?n=1>; rel="prev"`, false)
	f.Add("/v2/a,b", "c,d", "", "", true)
	f.Add("", "", "rel=nextx", `<%zz>; rel="next"`, false)
	f.Add("/v2/t", `"quoted"`, `REL="prev next"`, ",,,", true)
	f.Fuzz(func(t *testing.T, path, last, param, noise string, before bool) {
		if !strings.Contains(strings.ToLower(noise), "next") && !strings.Contains(strings.ToLower(param), "next") {
			if got := nextLink(noise); got != nil {
				t.Fatalf("nextLink(%q) = %q: no next link in it", noise, got)
			}
		}
		u := &url.URL{Path: "/" + strings.TrimLeft(path, "/"), RawQuery: url.Values{"last": {last}}.Encode()}
		want := u.String()
		if strings.Contains(noise, "next") || strings.ContainsAny(noise, "<>\"") {
			noise = `<https://other.example/v2/x>; rel="prev"`
		}
		link := "<" + want + `>; rel="next"`
		if param != "" && !strings.ContainsAny(param, `<>,";`) {
			link = "<" + want + ">; " + strings.ReplaceAll(param, "next", "") + `=x; rel="next"`
		}
		if noise != "" {
			if before {
				link = noise + ", " + link
			} else {
				link += ", " + noise
			}
		}
		got := nextLink(link)
		if got == nil || got.String() != want {
			t.Fatalf("nextLink(%q) = %v, want %q", link, got, want)
		}
	})
}
