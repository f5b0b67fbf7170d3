// Package strictjson reads JSON so that no other reader of the same bytes can see something
// else. Go's encoding/json matches object member names to struct fields case-insensitively
// (Unicode simple folding: "K", "k" and the Kelvin sign "K" are one field) and keeps the last
// of duplicate members; other parsers keep the first, or match exactly. A document with two
// members that encoding/json would treat as the same field, or with data after its value,
// can therefore mean two things, and is refused here.
//
// It owns:
//
//   - Fold, the one folding rule: exactly encoding/json's (its fold.go: ASCII letters to
//     upper case, every other rune to the smallest rune of its simple-fold orbit), so that
//     "ambiguous" means "encoding/json could confuse them", no more and no less;
//   - ParseObject and Object, a member-by-member reader of one object level, for signed
//     payloads read strictly: a member must be spelled exactly (Member reports a member that
//     differs only in case as an error, not as absence), null counts as absent, unknown members
//     are ignored;
//   - CheckUnambiguous, the same rule over a whole document at every depth (nested at most
//     MaxDepth levels), for manifests judged by their shape.
//
// It has no I/O and no state. Errors are plain; callers add what they were reading.
package strictjson
