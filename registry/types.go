package registry

import (
	"github.com/google/uuid"
)

// Ino is an inode number. RootIno is the root directory, created by Open.
type Ino uint64

// RootIno is the inode number of the root directory.
const RootIno Ino = 1

// FileStatus is the life-cycle state of an inode.
type FileStatus uint8

const (
	// StatusReady: the inode is live.
	StatusReady FileStatus = iota
	// StatusWriting: a daemon had the file open for writing with
	// uncommitted data; informational only (fsck reports it).
	StatusWriting
	// StatusDeleting: nlink reached 0; the inode and its parts are removed
	// when the last open handle closes, or at the next mount after a crash.
	StatusDeleting
	// StatusDamaged: fsck --repair found parts of the file corrupt or
	// missing. The damaged ranges read as EIO.
	StatusDamaged
)

func (s FileStatus) String() string {
	switch s {
	case StatusReady:
		return "ready"
	case StatusWriting:
		return "writing"
	case StatusDeleting:
		return "deleting"
	case StatusDamaged:
		return "damaged"
	}
	return "unknown"
}

// Inode is the file registry record of one file, directory or symlink.
// Times are nanoseconds since the Unix epoch.
type Inode struct {
	Ino    Ino
	ID     uuid.UUID // never changes, survives renames; what `pfs ls` prints
	Mode   uint32    // type bits (syscall.S_IFREG, S_IFDIR, S_IFLNK, ...) | permission bits
	Uid    uint32
	Gid    uint32
	Rdev   uint32
	Nlink  uint32
	Size   uint64
	Atime  int64
	Mtime  int64
	Ctime  int64
	Status FileStatus
	Target string // symlink target
}

// Dirent is one directory entry: name in parent → child inode.
type Dirent struct {
	Name string
	Ino  Ino
	Mode uint32 // type bits of the child (S_IFMT part of its mode)
}

// Slice is a range of a part mapped into a chunk: bytes
// [PartOff, PartOff+Len) of the part's plain content appear at
// [Off, Off+Len) of the chunk.
type Slice struct {
	Part    uuid.UUID
	PartOff uint32
	Off     uint32
	Len     uint32
}

// Chunk is the ordered list of slices of one chunk of a file, oldest
// first. Reads overlay them in order, so a later slice wins where slices
// overlap. Bytes covered by no slice are zeros (holes).
type Chunk []Slice

// PartStatus is the life-cycle state of a part.
type PartStatus uint8

const (
	// PartPending: the part was recorded before its object was written and
	// no chunk references it yet. A pending part found at mount or by fsck
	// belongs to a write that never committed, and is collected.
	PartPending PartStatus = iota
	// PartStored: the object is durable and referenced by Refs slices.
	PartStored
	// PartCorrupt: a load found its MD5 or length wrong.
	PartCorrupt
	// PartDeleting: no slice references it any more; its object is being
	// deleted, after which the record goes too.
	PartDeleting
)

func (s PartStatus) String() string {
	switch s {
	case PartPending:
		return "pending"
	case PartStored:
		return "stored"
	case PartCorrupt:
		return "corrupt"
	case PartDeleting:
		return "deleting"
	}
	return "unknown"
}

// Part is the part registry record of one stored object.
type Part struct {
	ID          uuid.UUID
	Key         string // backend key of the object
	Size        uint32 // stored (possibly compressed) size
	PlainSize   uint32 // size after decompression
	MD5         [16]byte
	Compression uint8 // chunkstore compression codec
	Status      PartStatus
	Refs        uint32 // number of slices in chunk maps that reference it
	Ino         Ino    // the file it was written for (for fsck messages)
	Chunk       uint64 // the chunk index it was written for
}
