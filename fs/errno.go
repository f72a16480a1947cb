package fs

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"sync/atomic"
	"syscall"

	"github.com/pfs-project/pfs/chunkstore/backend"
	"github.com/pfs-project/pfs/engine"
	"github.com/pfs-project/pfs/registry"
)

// errLog receives the errors toErrno cannot name. Mount sets it from
// Options.Logger; until then slog.Default() is used.
var errLog atomic.Pointer[slog.Logger]

// toErrno is the only place Go errors become errnos. Unknown errors
// (checksum mismatches, missing parts, registry corruption, backend I/O)
// are logged with their full text, which names the file, offset and part,
// and become EIO: the detail goes to the log, the errno to the user.
//
// fusefs.ToErrno is not used: go-fuse's fuse.ToStatus has no errors.Is and
// turns wrapped errors into ENOSYS.
func toErrno(err error) syscall.Errno {
	var errno syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.As(err, new(*url.Error)), errors.As(err, new(*net.OpError)):
		// A remote backend that cannot be reached: the chain holds the
		// socket's errno (ECONNREFUSED, ECONNRESET, ...), which is not the
		// file's. Logged, and EIO below.
	case errors.As(err, &errno):
		return errno
	case errors.Is(err, engine.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, engine.ErrExists):
		return syscall.EEXIST
	case errors.Is(err, engine.ErrNotEmpty):
		return syscall.ENOTEMPTY
	case errors.Is(err, engine.ErrNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, engine.ErrIsDir):
		return syscall.EISDIR
	case errors.Is(err, engine.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, engine.ErrNoAttr):
		return syscall.ENODATA // == ENOATTR on Linux
	case errors.Is(err, engine.ErrNoData):
		return syscall.ENXIO // lseek(2) SEEK_DATA past the last data
	case errors.Is(err, engine.ErrNameTooLong):
		return syscall.ENAMETOOLONG
	case errors.Is(err, engine.ErrReadOnly), errors.Is(err, registry.ErrReadOnly):
		return syscall.EROFS
	case errors.Is(err, engine.ErrFileTooBig):
		return syscall.EFBIG
	case errors.Is(err, backend.ErrNoSpace), errors.Is(err, registry.ErrNoSpace):
		return syscall.ENOSPC
	case errors.Is(err, context.Canceled):
		// go-fuse cancels a request's context on FUSE_INTERRUPT (go-fuse
		// fs/api.go "# Interrupts"). The handlers here ignore interrupts
		// (see the package comment), so this is for completeness.
		return syscall.EINTR
	}
	logger().Error("fs: I/O error", "err", err.Error())
	return syscall.EIO
}

// ioErrno is toErrno for data operations (read, write, flush, fsync).
// There a "not found" means a part or inode record vanished under an open
// file, which is damage, not a missing name: it becomes EIO, logged.
func ioErrno(err error) syscall.Errno {
	errno := toErrno(err)
	if errno == syscall.ENOENT {
		logger().Error("fs: I/O error", "err", err.Error())
		return syscall.EIO
	}
	return errno
}

func logger() *slog.Logger {
	if l := errLog.Load(); l != nil {
		return l
	}
	return slog.Default()
}
