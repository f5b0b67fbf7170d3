package strictjson_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode"

	"github.com/portcullis/portcullis/internal/strictjson"
)

// FuzzParseObject checks the strict JSON reader against encoding/json, the reader an
// attacker hopes another component uses: whatever ParseObject accepts, encoding/json reads
// as the same object, and for every member name, a struct field tagged with that name (which
// encoding/json matches case-insensitively) receives exactly the member ParseObject returns.
// CheckUnambiguous, the whole-document check, never accepts an object ParseObject refuses.
func FuzzParseObject(f *testing.F) {
	for _, s := range []string{
		`{"critical":{"type":"x"},"optional":null}`,
		`{"a":1,"A":2}`,
		`{"a":1,"a":2}`,
		`{"K":1,"\u212a":2}`,
		`{"s":1,"\u017f":2}`,
		`{"a":1} {}`,
		`{"a":1}  `,
		`[1]`,
		`{"a":"\ud800"}`,
		`{"ß":1,"SS":2}`,
		`{"ǅ":1,"ǆ":2}`,
		`{}`,
		`{"İ":1,"i":2}`,
		`{"ı":1,"I":2}`,
		`{"a":{"b":1,"B":2}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		obj, err := strictjson.ParseObject(b)
		if err != nil {
			if strictjson.CheckUnambiguous(b) == nil && json.Valid(b) && bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
				t.Fatalf("CheckUnambiguous accepts an object ParseObject refuses (%v): %q", err, b)
			}
			return
		}
		var plain map[string]json.RawMessage
		if err := json.Unmarshal(b, &plain); err != nil {
			t.Fatalf("ParseObject accepted what encoding/json refuses (%v): %q", err, b)
		}
		if len(plain) != len(obj) {
			t.Fatalf("ParseObject read %d members, encoding/json %d: %q", len(obj), len(plain), b)
		}
		for name, raw := range obj {
			if !compactEqual(plain[name], raw) {
				t.Fatalf("member %q: ParseObject %s, encoding/json %s", name, raw, plain[name])
			}
			if !validTag(name) {
				continue
			}
			typ := reflect.StructOf([]reflect.StructField{{
				Name: "F", Type: reflect.TypeFor[json.RawMessage](), Tag: reflect.StructTag(`json:"` + name + `"`),
			}})
			v := reflect.New(typ)
			if err := json.Unmarshal(b, v.Interface()); err != nil {
				t.Fatalf("encoding/json into a struct: %v", err)
			}
			got := v.Elem().Field(0).Interface().(json.RawMessage)
			if !compactEqual(got, raw) {
				t.Fatalf("a struct field tagged %q reads %s, ParseObject read %s: %q", name, got, raw, b)
			}
		}
	})
}

// FuzzFold checks the folding rule against encoding/json's own definition of "the same
// field": Fold(a) == Fold(b) exactly when strings.EqualFold(a, b).
func FuzzFold(f *testing.F) {
	for _, p := range [][2]string{{"k", "\u212a"}, {"s", "\u017f"}, {"İ", "i"}, {"ı", "I"}, {"ß", "SS"}, {"ǅ", "ǆ"}, {"Σ", "ς"}, {"a_b", "A_B"}, {"\xff", "\ufffd"}} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if got, want := strictjson.Fold(a) == strictjson.Fold(b), strings.EqualFold(a, b); got != want {
			t.Fatalf("Fold(%q) == Fold(%q) is %v, strings.EqualFold says %v", a, b, got, want)
		}
	})
}

func compactEqual(a, b []byte) bool {
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// validTag is encoding/json's rule for a usable tag name.
func validTag(s string) bool {
	if s == "" || s == "-" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}
