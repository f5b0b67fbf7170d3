package verify

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode"
)

// FuzzParseObject checks the strict JSON reader against encoding/json, the reader an
// attacker hopes another component uses: whatever parseObject accepts, encoding/json reads
// as the same object, and for every member name, a struct field tagged with that name (which
// encoding/json matches case-insensitively) receives exactly the member parseObject returns.
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
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		obj, err := parseObject(b)
		if err != nil {
			return
		}
		var plain map[string]json.RawMessage
		if err := json.Unmarshal(b, &plain); err != nil {
			t.Fatalf("parseObject accepted what encoding/json refuses (%v): %q", err, b)
		}
		if len(plain) != len(obj) {
			t.Fatalf("parseObject read %d members, encoding/json %d: %q", len(obj), len(plain), b)
		}
		for name, raw := range obj {
			if !compactEqual(plain[name], raw) {
				t.Fatalf("member %q: parseObject %s, encoding/json %s", name, raw, plain[name])
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
				t.Fatalf("a struct field tagged %q reads %s, parseObject read %s: %q", name, got, raw, b)
			}
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
