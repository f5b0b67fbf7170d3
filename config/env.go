package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// envPrefix starts the name of every environment variable that overrides a key.
const envPrefix = "PORTCULLIS_"

// A schemaKey is a configuration key that an environment variable can set.
type schemaKey struct {
	path string // the dotted key, e.g. "cache.tagTTL"
	// structured values (lists, maps) are given as YAML (JSON is YAML); strings lists are
	// also taken comma-separated.
	kind reflect.Kind
	// open keys (maps such as storage.params) take any sub-key: PORTCULLIS_STORAGE_PARAMS_X.
	open bool
}

// schemaKeys lists every key of t (a struct with mapstructure tags): the leaves, and lists and
// maps as one key each.
func schemaKeys(t reflect.Type, prefix string) []schemaKey {
	var out []schemaKey
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		path := prefix + tag
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Time]():
			out = append(out, schemaKeys(ft, path+".")...)
		case ft.Kind() == reflect.Map:
			out = append(out, schemaKey{path: path, kind: reflect.Map, open: true})
		default:
			out = append(out, schemaKey{path: path, kind: ft.Kind()})
		}
	}
	return out
}

// applyEnv sets the keys environ's PORTCULLIS_* variables name: the variable's name is the
// key's path in upper case with "_" for ".", e.g. PORTCULLIS_CACHE_TAGTTL for cache.tagTTL,
// PORTCULLIS_PUSH_USERS for push.users, PORTCULLIS_STORAGE_PARAMS_ROOTDIRECTORY for
// storage.params.rootdirectory (sub-keys of maps in lower case). Lists and maps are YAML
// flow values (JSON is YAML), e.g. PORTCULLIS_PUSH_USERS='[{name: ci, images: ["ghcr.io/org/**"]}]';
// a list of strings may also be comma-separated. A variable that names no key is an error.
func applyEnv(doc tree, environ []string) error {
	keys := schemaKeys(reflect.TypeFor[Config](), "")
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, envPrefix) {
			continue
		}
		want := strings.ToLower(strings.TrimPrefix(name, envPrefix))
		k, sub, ok := matchKey(keys, want)
		if !ok {
			return fmt.Errorf("environment variable %s names no configuration key", name)
		}
		value, err := envValue(k, sub, val)
		if err != nil {
			return fmt.Errorf("environment variable %s: %w", name, err)
		}
		path := k.path
		if sub != "" {
			path += "." + sub
		}
		if err := doc.set(path, value); err != nil {
			return fmt.Errorf("environment variable %s: %w", name, err)
		}
	}
	return nil
}

// matchKey finds the key an environment suffix (lower case) names, and the sub-key of an
// open key.
func matchKey(keys []schemaKey, want string) (schemaKey, string, bool) {
	for _, k := range keys {
		flat := strings.ReplaceAll(strings.ToLower(k.path), ".", "_")
		if flat == want {
			return k, "", true
		}
		if sub, ok := strings.CutPrefix(want, flat+"_"); ok && k.open && sub != "" {
			return k, sub, true
		}
	}
	return schemaKey{}, "", false
}

// envValue turns a variable's text into the value for k: YAML for lists and maps, the text
// itself (decoded later, like the file's scalars) otherwise.
func envValue(k schemaKey, sub, val string) (any, error) {
	if sub != "" {
		return val, nil
	}
	switch k.kind {
	case reflect.Slice:
		t := strings.TrimSpace(val)
		if t == "" {
			return []any{}, nil
		}
		if v, err := parseValue(val); err == nil {
			if out, ok := v.([]any); ok {
				return out, nil
			}
		}
		if strings.HasPrefix(t, "[") || strings.HasPrefix(t, "-") {
			return nil, errors.New("not a YAML list")
		}
		var out []any
		for _, s := range strings.Split(t, ",") {
			out = append(out, strings.TrimSpace(s))
		}
		return out, nil
	case reflect.Map:
		v, err := parseValue(val)
		out, ok := v.(map[string]any)
		if err != nil || !ok {
			return nil, errors.New("not a YAML map")
		}
		return out, nil
	}
	return val, nil
}
