package policy

import (
	"time"

	"github.com/portcullis/portcullis/cache"
)

// The decision cache keeps one copy of the decisions that are equal but for when they were
// made (most of them: one policy, one signer, one reason), and per entry only the time.
var _ cache.Splitter[Decision] = Decision{}

// Split returns d without its decision time, and the time (see cache.Splitter).
func (d Decision) Split() (Decision, time.Time) {
	t := d.DecidedAt
	d.DecidedAt = time.Time{}
	return d, t
}

// Join returns d decided at t (see cache.Splitter).
func (d Decision) Join(t time.Time) Decision {
	d.DecidedAt = t
	return d
}
