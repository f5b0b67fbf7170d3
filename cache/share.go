package cache

import (
	"fmt"
	"reflect"
	"runtime"
	"sync"
	"weak"
)

// sharing holds one copy of each distinct value remainder (see Splitter), weakly: a copy no
// entry points to any more is collected and its index entry removed.
type sharing[V any] struct {
	mu   sync.Mutex
	m    map[string]weak.Pointer[V]
	last weak.Pointer[V] // the copy returned last: most decisions equal the one before
}

// get returns the shared copy of v, making v (cloned, if it can be) the shared copy if there
// is none.
func (s *sharing[V]) get(v V) *V {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.last.Value(); p != nil && reflect.DeepEqual(*p, v) {
		return p
	}
	id := fmt.Sprintf("%#v", v)
	if p := s.m[id].Value(); p != nil {
		s.last = s.m[id]
		return p
	}
	if cl, ok := any(v).(interface{ Clone() V }); ok {
		v = cl.Clone()
	}
	p := &v
	wp := weak.Make(p)
	s.m[id], s.last = wp, wp
	runtime.AddCleanup(p, func(id string) {
		s.mu.Lock()
		if s.m[id] == wp {
			delete(s.m, id)
		}
		s.mu.Unlock()
	}, id)
	return p
}
