package strictjson_test

import (
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/strictjson"
)

func TestFold(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"critical", "CRITICAL", true},
		{"k", "\u212a", true}, // Kelvin sign
		{"s", "\u017f", true}, // long s
		{"Σ", "ς", true},
		{"ǅ", "ǆ", true},
		{"a_b", "A_B", true},
		{"İ", "i", false}, // no simple fold: encoding/json keeps them apart
		{"ı", "I", false},
		{"ß", "SS", false},
		{"a-b", "a_b", false},
	} {
		t.Run(tc.a+"/"+tc.b, func(t *testing.T) {
			if got := strictjson.Fold(tc.a) == strictjson.Fold(tc.b); got != tc.same {
				t.Errorf("Fold(%q) == Fold(%q): got %v, want %v", tc.a, tc.b, got, tc.same)
			}
		})
	}
}

func TestParseObject(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string // want: "" accepted, else a part of the error
	}{
		{"object", `{"a":1,"b":{"c":2}}`, ""},
		{"nested duplicates are the member's business", `{"a":{"b":1,"b":2}}`, ""},
		{"duplicate", `{"a":1,"a":2}`, `duplicate member "a"`},
		{"case", `{"type":1,"Type":2}`, `ambiguous members "type" and "Type"`},
		{"escaped duplicate", `{"\u0063ritical":1,"critical":2}`, `duplicate member "critical"`},
		{"kelvin", `{"k":1,"\u212a":2}`, "ambiguous members"},
		{"dotted capital I is another name", `{"İ":1,"i":2}`, ""},
		{"trailing data", `{"a":1} {}`, "data after the object"},
		{"array", `[1]`, "not a json object"},
		{"invalid", `{"a":}`, "invalid json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := strictjson.ParseObject([]byte(tc.in))
			checkErr(t, "ParseObject", err, tc.want)
		})
	}
}

func TestMembers(t *testing.T) {
	obj, err := strictjson.ParseObject([]byte(`{"s":"x","n":null,"Upper":"y","o":{"k":"v"},"a":[1,2],"num":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := obj.StringMember("s"); err != nil || s != "x" {
		t.Errorf(`StringMember("s") = %q, %v; want "x"`, s, err)
	}
	if _, ok, err := obj.Member("n"); ok || err != nil {
		t.Errorf(`Member("n") = ok %v, err %v; want absent (null)`, ok, err)
	}
	if _, ok, err := obj.Member("missing"); ok || err != nil {
		t.Errorf(`Member("missing") = ok %v, err %v; want absent`, ok, err)
	}
	_, _, err = obj.Member("upper")
	checkErr(t, `Member("upper")`, err, `member "Upper" must be spelled "upper"`)
	if o, err := obj.ObjectMember("o", false); err != nil || len(o) != 1 {
		t.Errorf(`ObjectMember("o") = %v, %v; want one member`, o, err)
	}
	if o, err := obj.ObjectMember("n", true); err != nil || len(o) != 0 {
		t.Errorf(`ObjectMember("n", optional) = %v, %v; want empty`, o, err)
	}
	_, err = obj.ObjectMember("n", false)
	checkErr(t, `ObjectMember("n")`, err, `missing "n"`)
	if a, err := obj.ArrayMember("a"); err != nil || len(a) != 2 {
		t.Errorf(`ArrayMember("a") = %v, %v; want 2 elements`, a, err)
	}
	_, err = obj.StringMember("num")
	checkErr(t, `StringMember("num")`, err, `"num" is not a string`)
	_, err = obj.ArrayMember("s")
	checkErr(t, `ArrayMember("s")`, err, `"s" is not an array`)
}

func TestCheckUnambiguous(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"manifest", `{"schemaVersion":2,"layers":[{"mediaType":"x","annotations":{"a":"1","b":"2"}}]}`, ""},
		{"scalar", `"x"`, ""},
		{"nested duplicate", `{"layers":[{"mediaType":"a","mediaType":"b"}]}`, `duplicate member "mediaType"`},
		{"nested case", `{"config":{"mediaType":"a","MediaType":"b"}}`, "ambiguous members"},
		{"long s", `{"s":1,"\u017f":2}`, "ambiguous members"},
		{"trailing data", `{} {}`, "data after the value"},
		{"too deep", strings.Repeat("[", strictjson.MaxDepth+2) + strings.Repeat("]", strictjson.MaxDepth+2), "nested deeper"},
		{"deep enough", strings.Repeat("[", strictjson.MaxDepth+1) + strings.Repeat("]", strictjson.MaxDepth+1), ""},
		{"invalid", `{"a":[}`, "invalid json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, "CheckUnambiguous", strictjson.CheckUnambiguous([]byte(tc.in)), tc.want)
		})
	}
}

func checkErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: got error %v, want none", what, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("%s: got error %v, want one containing %q", what, err, want)
	}
}
