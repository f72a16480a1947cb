// Package backend defines where parts live: the small interface every object
// store (local directory, memory, S3) implements, and the errors it returns.
//
// Backends store opaque immutable objects by key. They know nothing of files,
// chunks or checksums; the chunkstore above them does.
package backend

import (
	"context"
	"errors"
)

// ErrNotFound is returned (wrapped) by Load, Stat and Delete when no object
// exists under the key. Callers test it with errors.Is.
var ErrNotFound = errors.New("object not found")

// ErrInvalidRange is returned (wrapped) by Load when the requested range does
// not lie inside the object.
var ErrInvalidRange = errors.New("invalid range")

// ErrNoSpace is returned (wrapped) when the backend has no room for an object.
// The FUSE layer maps it to ENOSPC.
var ErrNoSpace = errors.New("no space left in backend")

// ErrInvalidKey is returned (wrapped) when a key is not one the backend can
// store, for example an empty key or one containing '/'.
var ErrInvalidKey = errors.New("invalid key")

// Backend stores immutable objects by key. Keys are short ASCII strings made
// of [0-9a-f-]; the backend may map them to paths or object names as it likes.
//
// All methods MUST be safe for concurrent use by many goroutines.
type Backend interface {
	// Save stores data under key. When Save returns nil the object is
	// durable (survives a crash of the process and of the machine) and
	// complete: a reader never sees a partial object. Saving an existing
	// key replaces it atomically. Save MUST NOT retain data after returning.
	Save(ctx context.Context, key string, data []byte) error

	// Load returns length bytes of the object starting at offset. A length
	// < 0 means "to the end". A missing object returns ErrNotFound; a range
	// outside the object returns ErrInvalidRange.
	Load(ctx context.Context, key string, offset, length int64) ([]byte, error)

	// Stat returns the size of the object, or ErrNotFound.
	Stat(ctx context.Context, key string) (int64, error)

	// Delete removes the object. Deleting a missing key returns ErrNotFound;
	// callers that do not care test for it.
	Delete(ctx context.Context, key string) error

	// List calls fn for every object, in no particular order. If fn returns
	// an error, List stops and returns it.
	List(ctx context.Context, fn func(key string, size int64) error) error

	// Usage reports the capacity of the storage behind the backend, for
	// statfs. Backends without a notion of capacity return total = 0.
	Usage(ctx context.Context) (total, free uint64, err error)

	// Close releases resources. No other method may be called afterwards.
	Close() error
}

type dstKey struct{}

// WithDst asks Load to read into dst when the object fits in cap(dst),
// instead of allocating: a hint that saves the garbage of one chunk-sized
// allocation per load. Backends that ignore it allocate as usual, so the
// caller must use the returned slice, which may or may not share dst.
func WithDst(ctx context.Context, dst []byte) context.Context {
	return context.WithValue(ctx, dstKey{}, dst)
}

// DstFrom returns the buffer given to WithDst, for backend implementations.
func DstFrom(ctx context.Context) ([]byte, bool) {
	dst, ok := ctx.Value(dstKey{}).([]byte)
	return dst, ok
}
