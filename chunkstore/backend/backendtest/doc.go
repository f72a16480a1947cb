// Package backendtest is the conformance suite every backend.Backend must
// pass. A backend's test is one line:
//
//	func TestBackend(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) backend.Backend { return mem.New() })
//	}
//
// newBE is called once per subtest and must return an empty backend; Run
// closes it when the subtest ends. The suite checks what the doc comments of
// backend.Backend promise:
//
//   - SaveLoad: objects of 0 bytes, 1 byte, odd sizes and 4 MiB come back
//     byte for byte, and Stat reports their size.
//   - MissingIsNotFound: Load, Stat and Delete of a missing key return an
//     error for which errors.Is(err, backend.ErrNotFound) holds.
//   - RangeReads: Load(offset, length) returns exactly that slice; length < 0
//     reads to the end; a zero-length read at the end is empty, not an error;
//     a range not inside the object returns backend.ErrInvalidRange.
//   - Overwrite: saving an existing key replaces the object, also with a
//     shorter one.
//   - List: calls fn exactly once for every object with its size, nothing
//     else, and stops with fn's error.
//   - Delete: a deleted object is gone from Load, Stat and List, and a second
//     Delete returns ErrNotFound.
//   - ConcurrentSave: many goroutines saving distinct keys, and the same key,
//     at once; afterwards every object is complete and equal to one that
//     was saved.
//   - ContextCancel: with a cancelled context every method either fails or
//     works, but a failed Save never leaves a partial object behind and the
//     old object survives.
//   - Usage: returns no error, and free <= total when total is known.
//   - SaveDoesNotRetain: changing the buffer after Save, or the slice Load
//     returned, does not change the stored object.
//
// The suite uses keys of the form the chunkstore uses (hex and '-', at least
// 4 characters) and no more than a few tens of MiB in total, so it can run
// against a real object store.
package backendtest
