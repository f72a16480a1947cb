package engine

import (
	"context"
	"errors"

	"github.com/pfs-project/pfs/registry"
)

// errTODO marks engine entry points whose bodies are being written; it is
// removed before the engine issue is closed.
var errTODO = errors.New("engine: not implemented yet")

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

// Lookup returns the child called name in directory parent, or an error
// wrapping ErrNotFound.
func (e *Engine) Lookup(ctx context.Context, parent Ino, name string) (*Attr, error) {
	return nil, errTODO
}

// GetAttr returns the attributes of ino.
func (e *Engine) GetAttr(ctx context.Context, ino Ino) (*Attr, error) { return nil, errTODO }

// Create makes a new non-directory, non-symlink inode (regular file, fifo,
// socket, device: the type is in mode's S_IFMT bits; 0 means regular) and
// links it as parent/name. ErrExists if the name is taken.
func (e *Engine) Create(ctx context.Context, parent Ino, name string, mode, uid, gid, rdev uint32) (*Attr, error) {
	return nil, errTODO
}

// Mkdir makes a directory parent/name.
func (e *Engine) Mkdir(ctx context.Context, parent Ino, name string, mode, uid, gid uint32) (*Attr, error) {
	return nil, errTODO
}

// Symlink makes a symlink parent/name pointing at target.
func (e *Engine) Symlink(ctx context.Context, parent Ino, name, target string, uid, gid uint32) (*Attr, error) {
	return nil, errTODO
}

// Link adds a hard link newParent/newName to the non-directory ino.
func (e *Engine) Link(ctx context.Context, ino, newParent Ino, newName string) (*Attr, error) {
	return nil, errTODO
}

// Unlink removes the non-directory entry parent/name. When the last link
// goes and no handle is open, the file's parts are deleted; with handles
// open, that waits for the last Release.
func (e *Engine) Unlink(ctx context.Context, parent Ino, name string) error { return errTODO }

// Rmdir removes the empty directory parent/name (ErrNotEmpty otherwise).
func (e *Engine) Rmdir(ctx context.Context, parent Ino, name string) error { return errTODO }

// Rename moves parent/name to newParent/newName in one transaction,
// replacing the target if it exists (and is compatible), as rename(2).
// flags take RenameNoReplace and RenameExchange.
func (e *Engine) Rename(ctx context.Context, parent Ino, name string, newParent Ino, newName string, flags uint32) error {
	return errTODO
}

// SetAttr changes attributes and returns the new ones. A Size change
// truncates or extends the file (open or not).
func (e *Engine) SetAttr(ctx context.Context, ino Ino, in SetAttrIn) (*Attr, error) {
	return nil, errTODO
}

// ReadDir calls fn for the entries of directory ino in name order, starting
// strictly after the name `after` ("" for the start). fn returning
// ErrStopIteration ends the listing without error.
func (e *Engine) ReadDir(ctx context.Context, ino Ino, after string, fn func(Dirent) error) error {
	return errTODO
}

// GetXattr returns the value of an extended attribute, or ErrNoAttr.
func (e *Engine) GetXattr(ctx context.Context, ino Ino, name string) ([]byte, error) {
	return nil, errTODO
}

// SetXattr sets an extended attribute. flags as setxattr(2): XATTR_CREATE
// (1) fails with ErrExists if it exists, XATTR_REPLACE (2) fails with
// ErrNoAttr if it does not.
func (e *Engine) SetXattr(ctx context.Context, ino Ino, name string, value []byte, flags uint32) error {
	return errTODO
}

// ListXattr returns the names of ino's extended attributes.
func (e *Engine) ListXattr(ctx context.Context, ino Ino) ([]string, error) { return nil, errTODO }

// RemoveXattr removes an extended attribute, or returns ErrNoAttr.
func (e *Engine) RemoveXattr(ctx context.Context, ino Ino, name string) error { return errTODO }

// Statfs reports the store's capacity.
func (e *Engine) Statfs(ctx context.Context) (Statfs, error) { return Statfs{}, errTODO }

// OpenFile opens the regular file ino for I/O. Every OpenFile must be
// paired with a Release of the returned handle. Handles of one inode share
// its buffered data, so all readers see all writes at once.
func (e *Engine) OpenFile(ctx context.Context, ino Ino) (*Handle, error) { return nil, errTODO }

// Handle is one open of a regular file.
type Handle struct {
	e *Engine
	f *file
}

// ReadAt reads into p at off. It returns fewer than len(p) bytes only at
// end of file (n may be 0 there; no io.EOF). A damaged part in the range
// returns an error wrapping chunkstore.ErrChecksum (or ErrNotFound for a
// missing part).
func (h *Handle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) { return 0, errTODO }

// WriteAt writes p at off, extending the file as needed. It may block
// while the memory cap is full (backpressure).
func (h *Handle) WriteAt(ctx context.Context, p []byte, off int64) (int, error) { return 0, errTODO }

// Flush stores all buffered writes of the file and commits them to the
// registry (close(2) semantics: visible to the next mount, not yet fsynced).
func (h *Handle) Flush(ctx context.Context) error { return errTODO }

// Fsync makes all writes of the file durable: parts are durable before the
// registry commit, and the registry is synced before Fsync returns.
func (h *Handle) Fsync(ctx context.Context) error { return errTODO }

// Allocate implements fallocate(2) mode 0 (extend size, no data written)
// and FALLOC_FL_KEEP_SIZE (a no-op here: holes need no space).
func (h *Handle) Allocate(ctx context.Context, off, size uint64, mode uint32) error {
	return errTODO
}

// SeekData returns the first offset >= off that is inside a written chunk,
// or ErrNoData (ENXIO) if none. SeekHole returns the first offset >= off
// in a hole, which is the file size if the file has none after off.
func (h *Handle) SeekData(ctx context.Context, off int64) (int64, error) { return 0, errTODO }

// SeekHole: see SeekData.
func (h *Handle) SeekHole(ctx context.Context, off int64) (int64, error) { return 0, errTODO }

// Release closes the handle: it flushes, and when this was the last handle
// of an unlinked file, deletes the file.
func (h *Handle) Release(ctx context.Context) error { return errTODO }

// Ino returns the inode the handle is open on.
func (h *Handle) Ino() Ino { return 0 }
