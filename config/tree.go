package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxFileSize caps the configuration file.
const maxFileSize = 4 << 20

// tree is a configuration document as YAML decodes it. Keys keep their case: the schema's
// keys match case-insensitively when the tree is decoded, but the keys of maps the schema
// leaves open (annotations, storage.params) are data, and "Team" is not "team".
type tree map[string]any

// readTree reads the YAML file at path.
func readTree(path string) (tree, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	return parseTree(b)
}

// parseTree decodes a YAML document whose top level is a mapping (or empty).
func parseTree(b []byte) (tree, error) {
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	doc, err := stringKeys(doc, "")
	if err != nil {
		return nil, err
	}
	switch d := doc.(type) {
	case nil:
		return tree{}, nil
	case map[string]any:
		return tree(d), nil
	}
	return nil, errors.New("not a YAML mapping of keys")
}

// parseValue decodes one YAML value (a scalar, a flow or block list or mapping).
func parseValue(s string) (any, error) {
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		return nil, err
	}
	return stringKeys(v, "")
}

// stringKeys returns v with every mapping a map[string]any: YAML allows keys of any type,
// the configuration only names things (a mapping key 0 or [a] is an error, not a panic in
// the decoder).
func stringKeys(v any, at string) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			var err error
			if x[k], err = stringKeys(e, at+k+"."); err != nil {
				return nil, err
			}
		}
		return x, nil
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("%skey %v is not a string", at, k)
			}
			var err error
			if out[ks], err = stringKeys(e, at+ks+"."); err != nil {
				return nil, err
			}
		}
		return out, nil
	case []any:
		for i, e := range x {
			var err error
			if x[i], err = stringKeys(e, fmt.Sprintf("%s[%d].", strings.TrimSuffix(at, "."), i)); err != nil {
				return nil, err
			}
		}
		return x, nil
	}
	return v, nil
}

// set puts value at the dotted path, matching existing keys case-insensitively (as the
// schema does), creating mappings on the way.
func (t tree) set(path string, value any) error {
	parts := strings.Split(path, ".")
	m := map[string]any(t)
	for i, p := range parts {
		key := p
		for k := range m {
			if strings.EqualFold(k, p) {
				key = k
				break
			}
		}
		if i == len(parts)-1 {
			m[key] = value
			return nil
		}
		next, ok := m[key].(map[string]any)
		if !ok {
			if m[key] != nil {
				return fmt.Errorf("%s is not a mapping", strings.Join(parts[:i+1], "."))
			}
			next = map[string]any{}
			m[key] = next
		}
		m = next
	}
	return nil
}

// merge returns base with over laid on it: mappings merge key by key (case-insensitively),
// anything else in over replaces what base has.
func merge(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		key := k
		for bk := range base {
			if strings.EqualFold(bk, k) {
				key = bk
				break
			}
		}
		bm, bok := out[key].(map[string]any)
		om, ook := v.(map[string]any)
		delete(out, key)
		if bok && ook {
			out[k] = merge(bm, om)
		} else {
			out[k] = v
		}
	}
	return out
}
