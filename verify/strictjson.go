package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// jsonObject is one JSON object read strictly: no two members whose names are equal or differ
// only in case, so that a case-insensitive reader (encoding/json) cannot see another value.
type jsonObject map[string]json.RawMessage

// parseObject reads b as exactly one JSON object.
func parseObject(b []byte) (jsonObject, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid json: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a json object")
	}
	obj := jsonObject{}
	folded := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid json: %w", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("invalid json: member name is not a string")
		}
		f := foldName(name)
		if prev, dup := folded[f]; dup {
			if prev == name {
				return nil, fmt.Errorf("duplicate member %q", name)
			}
			return nil, fmt.Errorf("ambiguous members %q and %q", prev, name)
		}
		folded[f] = name
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

// foldName folds a member name the way encoding/json compares names, so that "ambiguous"
// means "encoding/json could confuse them".
func foldName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < utf8.RuneSelf {
			b.WriteRune(unicode.ToUpper(r))
			continue
		}
		b.WriteRune(unicode.ToUpper(unicode.ToLower(r)))
	}
	return b.String()
}

// member returns the raw value of the member spelled exactly name. ok is false when it is
// missing or null. A member spelled differently (e.g. "Type" for "type") is an error rather
// than absence, so the reason tells the signer what is wrong.
func (o jsonObject) member(name string) (raw json.RawMessage, ok bool, err error) {
	if v, found := o[name]; found {
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return nil, false, nil
		}
		return v, true, nil
	}
	f := foldName(name)
	for k := range o {
		if foldName(k) == f {
			return nil, false, fmt.Errorf("member %q must be spelled %q", k, name)
		}
	}
	return nil, false, nil
}

// object returns the member name as a strictly read object; a missing or null member is an
// empty object when optional, an error otherwise.
func (o jsonObject) object(name string, optional bool) (jsonObject, error) {
	raw, ok, err := o.member(name)
	if err != nil {
		return nil, err
	}
	if !ok {
		if optional {
			return jsonObject{}, nil
		}
		return nil, fmt.Errorf("missing %q", name)
	}
	obj, err := parseObject(raw)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", name, err)
	}
	return obj, nil
}

// string returns the member name, which must be a JSON string.
func (o jsonObject) string(name string) (string, error) {
	raw, ok, err := o.member(name)
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

// array returns the elements of the member name, which must be a JSON array.
func (o jsonObject) array(name string) ([]json.RawMessage, error) {
	raw, ok, err := o.member(name)
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

// matchAnnotations checks that every wanted annotation is a string member of have with
// exactly the wanted value. It returns "" when all match, else a reason naming the first
// mismatch in key order.
func matchAnnotations(want map[string]string, have jsonObject) (string, error) {
	for _, k := range sortedKeys(want) {
		raw, ok, err := have.member(k)
		if err != nil {
			return "", err
		}
		if !ok {
			return fmt.Sprintf("annotation %q missing", k), nil
		}
		var got string
		if err := json.Unmarshal(raw, &got); err != nil {
			return fmt.Sprintf("annotation %q is not a string", k), nil
		}
		if got != want[k] {
			return fmt.Sprintf("annotation %q is %q, want %q", k, got, want[k]), nil
		}
	}
	return "", nil
}
