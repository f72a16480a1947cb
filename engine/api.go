package engine

import (
	"github.com/pfs-project/pfs/registry"
)

// Ino re-exports the registry's inode number so callers above the engine
// need not import the registry for it.
type Ino = registry.Ino

// Attr is a snapshot of an inode's attributes. For a file with buffered,
// unflushed writes Size already includes them.
type Attr = registry.Inode

// Dirent is one directory entry.
type Dirent = registry.Dirent

// RootIno is the root directory.
const RootIno = registry.RootIno

// SetAttrIn says which attributes SetAttr changes; nil fields stay.
// Times are nanoseconds since the Unix epoch.
type SetAttrIn struct {
	Mode  *uint32 // permission bits only (07777); the type cannot change
	Uid   *uint32
	Gid   *uint32
	Size  *uint64 // truncate or extend (zeros)
	Atime *int64
	Mtime *int64
	Ctime *int64 // when nil, SetAttr sets ctime to now
}

// Rename flags, as renameat2(2).
const (
	RenameNoReplace = 1 << 0
	RenameExchange  = 1 << 1
)

// Statfs reports capacity for statfs(2), in bytes and files.
type Statfs struct {
	TotalBytes, FreeBytes uint64
	Files                 uint64 // number of inodes
	ChunkSize             uint32
}
