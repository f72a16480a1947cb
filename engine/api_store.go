package engine

import (
	"github.com/google/uuid"

	"fmt"
)

// LockedError is returned (wrapped) by Open when another process holds the
// store; errors.Is(err, ErrLocked) is true for it.
type LockedError struct {
	Dir    string
	Pid    int    // the holder's process ID, 0 if unknown
	Holder string // what the holder said it is doing, e.g. "mounted at /mnt/x"
}

func (e *LockedError) Error() string {
	if e.Holder != "" {
		return fmt.Sprintf("store %s is in use by pid %d (%s)", e.Dir, e.Pid, e.Holder)
	}
	return fmt.Sprintf("store %s is in use by pid %d", e.Dir, e.Pid)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// PartInfo describes one slice of a file's chunk map, for `pfs ls --long`.
type PartInfo struct {
	Chunk       uint64 // chunk index
	FileOffset  int64  // where the slice's bytes sit in the file
	Len         uint32
	PartID      uuid.UUID
	Key         string
	StoredSize  uint32
	PlainSize   uint32
	MD5         [16]byte
	Compression string
	Status      string
}

// FsckOptions configures Fsck.
type FsckOptions struct {
	Repair bool
	// Progress, if set, is called from one goroutine with bytes verified so
	// far and the total to verify.
	Progress func(done, total int64)
}

// FsckProblem is one inconsistency found by Fsck.
type FsckProblem struct {
	Kind   string // "checksum", "missing-part", "missing-object", "refcount", "orphan-object", "orphan-part", "dangling-entry", ...
	Path   string // the file affected, if any
	Ino    Ino
	Offset int64 // file offset of the damaged range, -1 if not applicable
	Part   string
	Detail string
}

func (p FsckProblem) String() string {
	s := p.Kind
	if p.Path != "" {
		s += " " + p.Path
	}
	if p.Offset >= 0 {
		s += fmt.Sprintf(" offset %d", p.Offset)
	}
	if p.Part != "" {
		s += " part " + p.Part
	}
	if p.Detail != "" {
		s += ": " + p.Detail
	}
	return s
}

// FsckReport is what Fsck found and did.
type FsckReport struct {
	Files, Dirs, Parts int64
	Bytes              int64 // plain bytes verified
	Problems           []FsckProblem
	Repaired           int // problems fixed by Repair
}
