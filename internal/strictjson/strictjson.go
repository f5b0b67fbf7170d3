package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode"
	"unicode/utf8"
)

// MaxDepth bounds the nesting CheckUnambiguous accepts; manifests nest a few levels.
const MaxDepth = 32

// Fold folds a member name as encoding/json does before it matches a name to a struct field:
// Fold(a) == Fold(b) exactly when encoding/json treats a and b as the same field (when
// strings.EqualFold(a, b)).
func Fold(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		out = utf8.AppendRune(out, foldRune(r))
		i += n
	}
	return string(out)
}

// foldRune returns the smallest rune of r's simple-fold orbit.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// Object is one JSON object read strictly: no two members whose names Fold equal.
type Object map[string]json.RawMessage

// ParseObject reads b as exactly one JSON object, refusing duplicate members, members whose
// names differ only in case, and anything after the object. Member values are kept raw (and
// valid); nested objects are read with ObjectMember.
func ParseObject(b []byte) (Object, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid json: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a json object")
	}
	obj := Object{}
	names := names{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid json: %w", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("invalid json: member name is not a string")
		}
		if err := names.add(name); err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("invalid json in member %q: %w", name, err)
		}
		obj[name] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, fmt.Errorf("invalid json: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid json: data after the object")
	}
	return obj, nil
}

// names are the member names of one object, by their folded form.
type names map[string]string

// add records name, refusing a duplicate or a name that folds equal to an earlier one.
func (n names) add(name string) error {
	f := Fold(name)
	if prev, dup := n[f]; dup {
		if prev == name {
			return fmt.Errorf("duplicate member %q", name)
		}
		return fmt.Errorf("ambiguous members %q and %q", prev, name)
	}
	n[f] = name
	return nil
}

// Member returns the raw value of the member spelled exactly name. ok is false when it is
// missing or null. A member spelled differently (e.g. "Type" for "type") is an error rather
// than absence, so the reason tells the signer what is wrong.
func (o Object) Member(name string) (raw json.RawMessage, ok bool, err error) {
	if v, found := o[name]; found {
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return nil, false, nil
		}
		return v, true, nil
	}
	f := Fold(name)
	for k := range o {
		if Fold(k) == f {
			return nil, false, fmt.Errorf("member %q must be spelled %q", k, name)
		}
	}
	return nil, false, nil
}

// ObjectMember returns the member name as a strictly read object; a missing or null member
// is an empty object when optional, an error otherwise.
func (o Object) ObjectMember(name string, optional bool) (Object, error) {
	raw, ok, err := o.Member(name)
	if err != nil {
		return nil, err
	}
	if !ok {
		if optional {
			return Object{}, nil
		}
		return nil, fmt.Errorf("missing %q", name)
	}
	obj, err := ParseObject(raw)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", name, err)
	}
	return obj, nil
}

// StringMember returns the member name, which must be a JSON string.
func (o Object) StringMember(name string) (string, error) {
	raw, ok, err := o.Member(name)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("missing %q", name)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%q is not a string", name)
	}
	return s, nil
}

// ArrayMember returns the elements of the member name, which must be a JSON array.
func (o Object) ArrayMember(name string) ([]json.RawMessage, error) {
	raw, ok, err := o.Member(name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("missing %q", name)
	}
	var a []json.RawMessage
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("%q is not an array", name)
	}
	return a, nil
}

// CheckUnambiguous refuses a JSON document that parsers may read differently: an object, at
// any depth, with two members whose names Fold equal, nesting deeper than MaxDepth, or
// anything after the top-level value. It returns nil for any other valid JSON value.
func CheckUnambiguous(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := walk(dec, 0); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("invalid json: data after the value")
	}
	return nil
}

func walk(dec *json.Decoder, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("json nested deeper than %d", MaxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid json: %w", err)
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch delim {
	case '{':
		names := names{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return fmt.Errorf("invalid json: %w", err)
			}
			name, _ := tok.(string) // the decoder allows only strings here
			if err := names.add(name); err != nil {
				return err
			}
			if err := walk(dec, depth+1); err != nil {
				return err
			}
		}
	case '[':
		for dec.More() {
			if err := walk(dec, depth+1); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return fmt.Errorf("invalid json: %w", err)
	}
	return nil
}
