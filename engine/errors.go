package engine

import (
	"errors"

	"github.com/pfs-project/pfs/registry"
)

// ErrNotFound is returned when a name, inode or part does not exist. It is
// the registry's sentinel, so errors.Is works across both packages.
var ErrNotFound = registry.ErrNotFound

// ErrExists is returned when a name that must be new is taken.
var ErrExists = registry.ErrExists

// ErrNotEmpty is returned by Rmdir and Rename onto a non-empty directory.
var ErrNotEmpty = errors.New("directory not empty")

// ErrNotDir is returned when a directory was expected.
var ErrNotDir = errors.New("not a directory")

// ErrIsDir is returned when a non-directory was expected.
var ErrIsDir = errors.New("is a directory")

// ErrInvalid is returned for arguments that make no sense (rename of a
// directory into itself, a bad flag).
var ErrInvalid = errors.New("invalid argument")

// ErrNoAttr is returned when an extended attribute does not exist.
var ErrNoAttr = errors.New("no such attribute")

// ErrNoData is returned by SeekData when no data follows the offset.
var ErrNoData = errors.New("no data after offset")

// ErrNameTooLong is returned for names over 255 bytes.
var ErrNameTooLong = errors.New("name too long")

// ErrReadOnly is returned by changes to a store opened read-only.
var ErrReadOnly = errors.New("store is read-only")

// ErrFileTooBig is returned for sizes beyond what the chunk map can address.
var ErrFileTooBig = errors.New("file too big")

// ErrStopIteration, returned by a ReadDir callback, ends the listing
// without error.
var ErrStopIteration = errors.New("stop iteration")

// ErrLocked is returned by Open when another process holds the store.
var ErrLocked = errors.New("store is locked by another process")

// ErrNotSupported is returned for operations pfs does not implement, such
// as fallocate modes other than 0 and KEEP_SIZE.
var ErrNotSupported = errors.New("operation not supported")
