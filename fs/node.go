package fs

import (
	"context"
	"errors"
	"sync"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/pfs-project/pfs/engine"
)

// Node is one inode of the mount: a directory, regular file, symlink or
// special file. The embedded fusefs.Inode is go-fuse's (and the kernel's)
// view of it; the engine, under ino, holds the truth. Every attribute is
// read from the engine when the kernel asks, so Node caches nothing that
// matters for correctness.
type Node struct {
	fusefs.Inode
	fsys *fsys
	ino  engine.Ino

	mu sync.Mutex // protects the following
	// last is the attributes last read from the engine. It answers fstat
	// on a directory that was removed while open (the engine forgets
	// removed directories at once; the kernel still has the fd).
	last     engine.Attr
	haveLast bool
	// opened, openMtime and openSize record the file's mtime and size at
	// its last open, to decide whether the kernel may keep its page cache
	// (see Open).
	opened    bool
	openMtime int64
	openSize  uint64
}

// newChild returns the node for a, a child of n: go-fuse returns the
// Inode it already has for a.Ino if there is one, which is what makes hard
// links one inode. It fills out with a's attributes.
func (n *Node) newChild(ctx context.Context, a *engine.Attr, out *fuse.EntryOut) *fusefs.Inode {
	child := n.NewInode(ctx, &Node{fsys: n.fsys, ino: a.Ino},
		fusefs.StableAttr{Ino: uint64(a.Ino), Mode: a.Mode & syscall.S_IFMT})
	if cn, ok := child.Operations().(*Node); ok {
		cn.remember(a)
	}
	fillAttr(a, &out.Attr)
	return child
}

// remember records a as the node's last known attributes.
func (n *Node) remember(a *engine.Attr) {
	n.mu.Lock()
	n.last, n.haveLast = *a, true
	n.mu.Unlock()
}

// Getattr reports the engine's attributes. With a file handle the engine
// still answers by inode: its Size includes buffered writes of every
// handle.
func (n *Node) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	ctx = uninterruptible(ctx)
	a, err := n.fsys.e.GetAttr(ctx, n.ino)
	if errors.Is(err, engine.ErrNotFound) {
		// The kernel only asks about inodes it still references, so the
		// inode was removed while open (rmdir, or rename over a directory)
		// and this is fstat on its fd. Answer like a local file system: the
		// last attributes, with no links left.
		n.mu.Lock()
		last, ok := n.last, n.haveLast
		n.mu.Unlock()
		if ok {
			last.Nlink = 0
			fillAttr(&last, &out.Attr)
			return 0
		}
	}
	if err != nil {
		return toErrno(err)
	}
	n.remember(a)
	fillAttr(a, &out.Attr)
	return 0
}

// Setattr implements chmod, chown, truncate and utimes. The kernel has
// already checked permissions (default_permissions), turned UTIME_NOW into
// FATTR_*_NOW (resolved by in.GetATime/GetMTime), and, when a non-root
// write or chown must drop setuid/setgid, added the new mode to the
// request. A size change goes to the engine even when the kernel names a
// file handle: the engine truncates open files itself.
func (n *Node) Setattr(ctx context.Context, f fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	ctx = uninterruptible(ctx)
	var sa engine.SetAttrIn
	if m, ok := in.GetMode(); ok {
		sa.Mode = &m
	}
	if uid, ok := in.GetUID(); ok {
		sa.Uid = &uid
	}
	if gid, ok := in.GetGID(); ok {
		sa.Gid = &gid
	}
	if size, ok := in.GetSize(); ok {
		sa.Size = &size
	}
	if t, ok := in.GetATime(); ok {
		ns := t.UnixNano()
		sa.Atime = &ns
	}
	if t, ok := in.GetMTime(); ok {
		ns := t.UnixNano()
		sa.Mtime = &ns
	}
	if t, ok := in.GetCTime(); ok {
		ns := t.UnixNano()
		sa.Ctime = &ns
	}
	// chown(2) of a non-directory clears setuid, and setgid when
	// group-executable, for every caller, root included; so does a
	// truncate by a caller without CAP_FSETID. With
	// FUSE_HANDLE_KILLPRIV_V2 (see killPrivFS) the kernel leaves both, and
	// dropping the file's capabilities, to us and flags the SETATTR.
	kill := in.Valid&fuse.FATTR_KILL_SUIDGID != 0
	if (sa.Uid != nil || sa.Gid != nil || kill) && n.StableAttr().Mode != syscall.S_IFDIR {
		if sa.Mode == nil {
			if errno := n.killSuid(ctx, &sa); errno != 0 {
				return errno
			}
		}
		if errno := n.dropCapability(ctx); errno != 0 {
			return errno
		}
	}
	a, err := n.fsys.e.SetAttr(ctx, n.ino, sa)
	if err != nil {
		return toErrno(err)
	}
	n.remember(a)
	fillAttr(a, &out.Attr)
	// go-fuse sets no timeout on a SETATTR reply, and with none the
	// kernel asks again (GETATTR) at the next stat, chown or read: one
	// more round trip per file for tar, cp -p and rsync.
	out.SetTimeout(cacheTimeout)
	return 0
}

// killSuid sets sa.Mode to the current mode without setuid and (if group
// executable) setgid, when that differs from the current mode.
func (n *Node) killSuid(ctx context.Context, sa *engine.SetAttrIn) syscall.Errno {
	cur, err := n.fsys.e.GetAttr(ctx, n.ino)
	if err != nil {
		return toErrno(err)
	}
	perm := cur.Mode & 07777
	if m := dropSuid(perm); m != perm {
		sa.Mode = &m
	}
	return 0
}

// dropCapability removes the file's security.capability, if it has one.
// The check first is what keeps a chown cheap: the engine remembers
// files without extended attributes, and most have none.
func (n *Node) dropCapability(ctx context.Context) syscall.Errno {
	_, err := n.fsys.e.GetXattr(ctx, n.ino, capabilityXattr)
	if err == nil {
		err = n.fsys.e.RemoveXattr(ctx, n.ino, capabilityXattr)
	}
	if err != nil && !errors.Is(err, engine.ErrNoAttr) {
		return toErrno(err)
	}
	return 0
}

// Readlink returns a symlink's target.
func (n *Node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	ctx = uninterruptible(ctx)
	a, err := n.fsys.e.GetAttr(ctx, n.ino)
	if err != nil {
		return nil, toErrno(err)
	}
	if a.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		return nil, syscall.EINVAL
	}
	return []byte(a.Target), 0
}

// Statfs reports the store's capacity in blockSize units. Inodes are not
// a limited resource in the registry; a large free count says so.
func (n *Node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	ctx = uninterruptible(ctx)
	st, err := n.fsys.e.Statfs(ctx)
	if err != nil {
		return toErrno(err)
	}
	total, free := st.TotalBytes, st.FreeBytes
	if total == 0 {
		// A backend without a notion of capacity (S3). Report plenty:
		// with zero free blocks, tools like cp refuse to write at all.
		total, free = 1<<50, 1<<50
	}
	const freeFiles = 1 << 32
	*out = fuse.StatfsOut{
		Blocks:  total / blockSize,
		Bfree:   free / blockSize,
		Bavail:  free / blockSize,
		Files:   st.Files + freeFiles,
		Ffree:   freeFiles,
		Bsize:   blockSize,
		Frsize:  blockSize,
		NameLen: 255,
	}
	return 0
}

// fillAttr converts engine attributes to FUSE's. go-fuse overwrites Ino
// and the type bits from the node's StableAttr, which hold the same.
func fillAttr(a *engine.Attr, out *fuse.Attr) {
	out.Ino = uint64(a.Ino)
	out.Size = a.Size
	out.Blocks = (a.Size + 511) / 512 // holes are not tracked; report the size
	out.Atime, out.Atimensec = splitNs(a.Atime)
	out.Mtime, out.Mtimensec = splitNs(a.Mtime)
	out.Ctime, out.Ctimensec = splitNs(a.Ctime)
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Uid = a.Uid
	out.Gid = a.Gid
	out.Rdev = a.Rdev
	out.Blksize = blockSize
}

// splitNs splits nanoseconds since the epoch into seconds and
// nanoseconds as FUSE wants them. Times before 1970 have negative seconds
// (sent as two's complement, which the kernel reads as signed) and a
// non-negative nanosecond part.
func splitNs(ns int64) (sec uint64, nsec uint32) {
	s, r := ns/1e9, ns%1e9
	if r < 0 {
		s--
		r += 1e9
	}
	return uint64(s), uint32(r)
}

// caller returns the uid and gid of the process making the request.
func caller(ctx context.Context) (uid, gid uint32) {
	if c, ok := fuse.FromContext(ctx); ok {
		return c.Uid, c.Gid
	}
	return 0, 0
}
