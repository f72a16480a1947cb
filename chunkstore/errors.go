package chunkstore

import (
	"errors"

	"github.com/pfs-project/pfs/chunkstore/backend"
)

// ErrChecksum is returned (wrapped, with the part, the wanted and the got
// hash) when a loaded part does not match the MD5 or size recorded when it
// was stored. The bytes are never returned.
var ErrChecksum = errors.New("checksum mismatch")

// ErrNotFound is returned (wrapped) when a part's object is missing. It is
// the backend's sentinel, so errors.Is works for both.
var ErrNotFound = backend.ErrNotFound

// ErrTooLarge is returned by Memory.Acquire for a request larger than the
// whole cap: waiting could never satisfy it.
var ErrTooLarge = errors.New("request larger than the memory cap")
