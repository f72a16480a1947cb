package fs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/pfs-project/pfs/chunkstore/backend"
	"github.com/pfs-project/pfs/engine"
)

func TestToErrno(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("lookup /a/b: %w", err) }
	for _, tc := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{engine.ErrNotFound, syscall.ENOENT},
		{engine.ErrExists, syscall.EEXIST},
		{engine.ErrNotEmpty, syscall.ENOTEMPTY},
		{engine.ErrNotDir, syscall.ENOTDIR},
		{engine.ErrIsDir, syscall.EISDIR},
		{engine.ErrInvalid, syscall.EINVAL},
		{engine.ErrNoAttr, syscall.ENODATA},
		{engine.ErrNoData, syscall.ENXIO},
		{engine.ErrNameTooLong, syscall.ENAMETOOLONG},
		{engine.ErrReadOnly, syscall.EROFS},
		{engine.ErrFileTooBig, syscall.EFBIG},
		{backend.ErrNoSpace, syscall.ENOSPC},
		{context.Canceled, syscall.EINTR},
		{syscall.EACCES, syscall.EACCES},
		{errors.New("part 1234: want 00 got ff: checksum mismatch"), syscall.EIO},
		{backend.ErrNotFound, syscall.EIO}, // a missing part is damage, not a missing name
		// An unreachable S3 server: the socket's errno is not the file's.
		{&url.Error{Op: "Put", URL: "http://127.0.0.1:9000/b/k", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, syscall.EIO},
	} {
		for _, err := range []error{tc.err, wrap(tc.err), wrap(wrap(tc.err))} {
			if tc.err == nil && err != nil {
				continue
			}
			if got := toErrno(err); got != tc.want {
				t.Errorf("toErrno(%v) = %v, want %v", err, got, tc.want)
			}
		}
	}
}

func TestIOErrno(t *testing.T) {
	// Under an open file, a vanished record is an I/O error.
	if got := ioErrno(fmt.Errorf("read ino 5: %w", engine.ErrNotFound)); got != syscall.EIO {
		t.Errorf("ioErrno(ErrNotFound) = %v, want EIO", got)
	}
	if got := ioErrno(fmt.Errorf("write: %w", backend.ErrNoSpace)); got != syscall.ENOSPC {
		t.Errorf("ioErrno(ErrNoSpace) = %v, want ENOSPC", got)
	}
}

func TestSplitNs(t *testing.T) {
	for _, tc := range []struct {
		ns   int64
		sec  int64
		nsec uint32
	}{
		{0, 0, 0},
		{1_500_000_000, 1, 500_000_000},
		{-1, -1, 999_999_999},
		{-1_500_000_000, -2, 500_000_000},
	} {
		sec, nsec := splitNs(tc.ns)
		if int64(sec) != tc.sec || nsec != tc.nsec {
			t.Errorf("splitNs(%d) = %d, %d; want %d, %d", tc.ns, int64(sec), nsec, tc.sec, tc.nsec)
		}
	}
}
