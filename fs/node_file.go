package fs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/pfs-project/pfs/engine"
)

// Open opens a regular file. O_TRUNC arrives separately as a SETATTR
// (go-fuse does not ask for FUSE_ATOMIC_O_TRUNC); O_APPEND offsets are
// computed by the kernel; O_DIRECT needs nothing here.
func (n *Node) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	ctx = uninterruptible(ctx)
	return n.open(ctx)
}

// open opens an engine handle on n. The kernel keeps the file's page cache
// (FOPEN_KEEP_CACHE) when mtime and size are what they were at the node's
// previous open: nothing changed the data that the kernel did not see,
// because every change goes through this mount (the store lock keeps
// others out) and the kernel updates or drops its cache for its own
// writes and truncates. Otherwise the kernel drops the cache.
func (n *Node) open(ctx context.Context) (fusefs.FileHandle, uint32, syscall.Errno) {
	h, err := n.fsys.e.OpenFile(ctx, n.ino)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	size, mtime := h.Stamp()
	n.mu.Lock()
	keep := n.opened && n.openMtime == mtime && n.openSize == uint64(size)
	n.opened, n.openMtime, n.openSize = true, mtime, uint64(size)
	n.mu.Unlock()
	var fuseFlags uint32
	if keep {
		fuseFlags |= fuse.FOPEN_KEEP_CACHE
	}
	return &handle{n: n, h: h}, fuseFlags, 0
}

// release releases h, logging a failure: there is no one left to tell.
func (n *Node) release(ctx context.Context, h *engine.Handle) {
	if err := h.Release(uninterruptible(ctx)); err != nil {
		n.fsys.log.Error("fs: release", "ino", n.ino, "err", err.Error())
	}
}

// Tmpfile makes an unnamed regular file in n (open(2) with O_TMPFILE).
// The engine has no unnamed create, so the file is created under a random
// hidden name, opened, and unlinked at once; the open handle keeps it
// alive until the last Release. A concurrent listing of n may glimpse the
// name.
func (n *Node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	ctx = uninterruptible(ctx)
	uid, gid, mode, errno := n.owner(ctx, mode|syscall.S_IFREG)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	var rnd [12]byte
	_, _ = rand.Read(rnd[:]) // never fails (crypto/rand)
	name := ".pfs-tmpfile-" + hex.EncodeToString(rnd[:])
	a, err := n.fsys.e.Create(ctx, n.ino, name, mode, uid, gid, 0)
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	h, err := n.fsys.e.OpenFile(ctx, a.Ino)
	if err == nil {
		err = n.fsys.e.Unlink(ctx, n.ino, name)
		if err != nil {
			n.release(ctx, h)
		}
	} else if uerr := n.fsys.e.Unlink(ctx, n.ino, name); uerr != nil {
		n.fsys.log.Error("fs: tmpfile cleanup", "name", name, "err", uerr.Error())
	}
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	a.Nlink = 0
	child := n.newChild(ctx, a, out)
	return child, &handle{n: child.Operations().(*Node), h: h}, 0, 0
}

// handle is an open regular file.
type handle struct {
	n *Node
	h *engine.Handle
}

// Read reads into dest, the buffer go-fuse provides for the request. Short
// reads happen only at end of file.
func (f *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	ctx = uninterruptible(ctx)
	n, err := f.h.ReadAt(ctx, dest, off)
	if err != nil {
		return nil, ioErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// Write writes data at off. killPrivFS has already dropped setuid, setgid
// and capabilities if the kernel flagged the write (FUSE_HANDLE_KILLPRIV_V2).
func (f *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	ctx = uninterruptible(ctx)
	n, err := f.h.WriteAt(ctx, data, off)
	if err != nil {
		return uint32(n), ioErrno(err)
	}
	return uint32(n), 0
}

// Flush runs on every close(2) of a descriptor: buffered writes are
// stored and committed, so close reports write errors as it should.
func (f *handle) Flush(ctx context.Context) syscall.Errno {
	ctx = uninterruptible(ctx)
	return ioErrno(f.h.Flush(ctx))
}

// Fsync makes the file's writes durable.
func (f *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	ctx = uninterruptible(ctx)
	return ioErrno(f.h.Fsync(ctx))
}

// Release runs once the last descriptor of this open is gone; the engine
// flushes, and deletes an unlinked file here.
func (f *handle) Release(ctx context.Context) syscall.Errno {
	f.n.release(ctx, f.h)
	return 0
}

// Allocate implements fallocate(2) mode 0 (extend the size) and
// FALLOC_FL_KEEP_SIZE (nothing to do: holes need no space). Punching holes
// and the other modes are not supported.
func (f *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	ctx = uninterruptible(ctx)
	if mode&^unix.FALLOC_FL_KEEP_SIZE != 0 {
		return syscall.EOPNOTSUPP
	}
	return ioErrno(f.h.Allocate(ctx, off, size, mode))
}

// Lseek implements SEEK_DATA and SEEK_HOLE; the kernel does the other
// whences itself. Never ENOSYS: the kernel would stop asking for the whole
// mount and treat every file as one extent.
func (f *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	ctx = uninterruptible(ctx)
	if whence != unix.SEEK_DATA && whence != unix.SEEK_HOLE {
		return 0, syscall.EINVAL
	}
	a, err := f.n.fsys.e.GetAttr(ctx, f.n.ino)
	if err != nil {
		return 0, ioErrno(err)
	}
	// lseek(2): ENXIO for SEEK_DATA at or after the end, and for SEEK_HOLE
	// after it.
	if off > a.Size || (off == a.Size && whence == unix.SEEK_DATA) {
		return 0, syscall.ENXIO
	}
	var pos int64
	if whence == unix.SEEK_DATA {
		pos, err = f.h.SeekData(ctx, int64(off))
	} else {
		pos, err = f.h.SeekHole(ctx, int64(off))
	}
	if err != nil {
		return 0, ioErrno(err)
	}
	return uint64(pos), 0
}

// Getlk, Setlk and Setlkw are never called: the mount does not enable
// FUSE locks (MountOptions.EnableLocks), so the kernel keeps fcntl and
// flock locks itself, which is right for a store only one mount serves.
func (f *handle) Getlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return syscall.ENOSYS
}

// Setlk: see Getlk.
func (f *handle) Setlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return syscall.ENOSYS
}

// Setlkw: see Getlk.
func (f *handle) Setlkw(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return syscall.ENOSYS
}
