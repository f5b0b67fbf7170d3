// Package config maps portcullis's YAML file and PORTCULLIS_* environment variables into the
// options structs the other packages own, strictly: an unknown key, a value of the wrong type
// or an invalid setting is refused, with the key's name in the message.
//
// The schema's keys match in any case; the keys of open maps (annotations, storage.params)
// are data and keep their case. Precedence: environment, then file, then defaults.
//
// Every key can be overridden from the environment: the key path in upper case with "_" for
// ".", e.g. PORTCULLIS_LISTEN, PORTCULLIS_CACHE_TAGTTL, PORTCULLIS_PUSH_USERS; a map's
// sub-keys too (PORTCULLIS_STORAGE_PARAMS_ROOTDIRECTORY). Lists and maps are given as YAML
// (JSON is YAML); a list of strings may also be comma-separated. The keys are known from the
// schema (the mapstructure tags), not from the file, so a key the file lacks can be set.
//
// Relative paths (TLS, storage root, keys, certificate roots, trust roots, htpasswd, password
// files, policy files) are made absolute against the configuration file's directory; Files
// lists the files the configuration depends on, which serve watches for reloads. policyFiles
// name policy-controller ClusterImagePolicy files, read and converted at Load (package
// policy/cip) into policies that Policy returns after the inline ones.
package config
