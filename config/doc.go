// Package config maps portcullis's YAML file and PORTCULLIS_* environment variables into the
// options structs the other packages own, strictly: an unknown key, a value of the wrong type
// or an invalid setting is refused, with the key's name in the message.
//
// Environment overrides use the key path in upper case with "_" for ".", e.g.
// PORTCULLIS_LISTEN, PORTCULLIS_LOG_LEVEL, PORTCULLIS_CACHE_TTL. Lists (upstreams, policies)
// come from the file only.
package config
