package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/posixtest"
	"golang.org/x/sys/unix"

	"github.com/pfs-project/pfs/engine"
)

// These tests mount in-process, as go-fuse's own tests do, and touch the
// mount only through os and syscall calls: exec'ing a program against a
// mount served by the same process can deadlock (go-fuse fs/api.go
// "# Deadlocks"). test/ drives the built binary instead.

// testMount is an engine on a store directory, mounted.
type testMount struct {
	t    *testing.T
	mnt  string
	e    *engine.Engine
	srv  *Server
	once sync.Once
}

// mountStore opens the store with a small memory cap and mounts it at
// mnt. It unmounts in t.Cleanup, also when the test failed.
func mountStore(t *testing.T, store, mnt string) *testMount {
	t.Helper()
	return mountStoreRO(t, store, mnt, false)
}

// mountStoreRO is mountStore, read-only if ro.
func mountStoreRO(t *testing.T, store, mnt string, ro bool) *testMount {
	t.Helper()
	cfg := engine.DefaultConfig(store)
	cfg.Memory = 64 << 20
	cfg.ReadOnly = ro
	cfg.Holder = "fs test mount at " + mnt
	e, err := engine.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("engine.Open: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := Mount(e, mnt, Options{ReadOnly: ro, FsName: store, Logger: logger, Debug: os.Getenv("PFS_FUSE_DEBUG") != ""})
	if err != nil {
		e.Close()
		t.Fatalf("Mount: %v", err)
	}
	m := &testMount{t: t, mnt: mnt, e: e, srv: srv}
	t.Cleanup(m.unmount)
	return m
}

// unmount unmounts (retrying while the kernel still has files open) and
// closes the engine. It is idempotent.
func (m *testMount) unmount() {
	m.once.Do(func() {
		var err error
		for range 20 {
			if err = m.srv.Unmount(); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			m.t.Errorf("unmount: %v; detaching", err)
			if err := syscall.Unmount(m.mnt, syscall.MNT_DETACH); err != nil {
				m.t.Errorf("umount -l %s: %v", m.mnt, err)
				return // Wait could hang; leave the engine open
			}
		}
		done := make(chan struct{})
		go func() { m.srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			m.t.Errorf("server still running 10s after unmount")
			return
		}
		if err := m.e.Close(); err != nil {
			m.t.Errorf("engine Close: %v", err)
		}
	})
}

func mustWrite(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
}

func checkContent(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("ReadFile: %v", err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: got %d bytes, want %d (content differs)", path, len(got), len(want))
	}
}

func checkMode(t *testing.T, path string, want uint32) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Errorf("Lstat: %v", err)
		return
	}
	if st.Mode != want {
		t.Errorf("%s: mode %o, want %o", path, st.Mode, want)
	}
}

func checkErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got %v, want %v", what, err, want)
	}
}

func lstat(t *testing.T, path string) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatalf("Lstat: %v", err)
	}
	return st
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestMount exercises every operation through the kernel, then unmounts,
// reopens the store, remounts and checks that everything persisted: the
// second read comes from the store, not from memory.
func TestMount(t *testing.T) {
	store, mnt := t.TempDir(), t.TempDir()
	oldMask := syscall.Umask(022)
	defer syscall.Umask(oldMask)

	m := mountStore(t, store, mnt)
	p := func(name string) string { return filepath.Join(mnt, name) }

	big := randomBytes(10<<20+123, 1) // three 4 MiB chunks, the last partial
	small := []byte("hello world")
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("entry-%04d", i)
	}

	t.Run("CreateWriteRead", func(t *testing.T) {
		mustWrite(t, p("big"), big, 0666)
		mustWrite(t, p("small"), small, 0666)
		checkContent(t, p("big"), big)
		checkContent(t, p("small"), small)
		if st := lstat(t, p("big")); st.Size != int64(len(big)) || st.Nlink != 1 || st.Blksize != blockSize {
			t.Errorf("stat big: size %d nlink %d blksize %d", st.Size, st.Nlink, st.Blksize)
		}
		f, err := os.Open(p("big"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 1<<20)
		off := int64(4<<20 - 1000) // straddles a chunk boundary
		if n, err := f.ReadAt(buf, off); err != nil || !bytes.Equal(buf[:n], big[off:off+int64(n)]) {
			t.Errorf("ReadAt across chunks: n=%d err=%v", n, err)
		}
	})

	t.Run("Umask", func(t *testing.T) {
		// The kernel applies the umask once; 0666 under 022 is 0644.
		checkMode(t, p("small"), syscall.S_IFREG|0644)
		if err := os.Mkdir(p("dir"), 0777); err != nil {
			t.Fatal(err)
		}
		checkMode(t, p("dir"), syscall.S_IFDIR|0755)
		fd, err := syscall.Open(p("created"), syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0666)
		if err != nil {
			t.Fatal(err)
		}
		syscall.Close(fd)
		checkMode(t, p("created"), syscall.S_IFREG|0644)
	})

	t.Run("Owner", func(t *testing.T) {
		st := lstat(t, p("small"))
		if st.Uid != uint32(os.Geteuid()) || st.Gid != uint32(os.Getegid()) {
			t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, os.Geteuid(), os.Getegid())
		}
	})

	t.Run("ReaddirMany", func(t *testing.T) {
		if err := os.Mkdir(p("dir/many"), 0755); err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			mustWrite(t, p("dir/many/"+name), []byte(name), 0644)
		}
		entries, err := os.ReadDir(p("dir/many"))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Name())
		}
		slices.Sort(got)
		if !slices.Equal(got, names) {
			t.Errorf("ReadDir: %d entries, want %d", len(got), len(names))
		}
		// Small getdents buffers make the kernel resume at offsets in the
		// middle of go-fuse's replies.
		fd, err := syscall.Open(p("dir/many"), syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(fd)
		seen := map[string]bool{}
		buf := make([]byte, 100)
		for {
			n, err := syscall.ReadDirent(fd, buf)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			_, _, nm := syscall.ParseDirent(buf[:n], -1, nil)
			for _, name := range nm {
				if seen[name] {
					t.Errorf("duplicate entry %q", name)
				}
				seen[name] = true
			}
		}
		if len(seen) != len(names) {
			t.Errorf("small-buffer listing: %d entries, want %d", len(seen), len(names))
		}
	})

	// Listings and lookups stay cached in the kernel between opens (long
	// timeouts, FOPEN_KEEP_CACHE on directories): every change through
	// the mount must still show at once.
	t.Run("CachedListingFollowsChanges", func(t *testing.T) {
		if err := os.Mkdir(p("dir/cached"), 0755); err != nil {
			t.Fatal(err)
		}
		list := func() []string {
			t.Helper()
			entries, err := os.ReadDir(p("dir/cached"))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range entries {
				got = append(got, e.Name())
			}
			return got
		}
		want := func(names ...string) {
			t.Helper()
			if got := list(); !slices.Equal(got, names) {
				t.Errorf("listing %q, want %q", got, names)
			}
		}
		mustWrite(t, p("dir/cached/a"), []byte("a"), 0644)
		want("a")
		want("a") // served from the kernel's cache
		mustWrite(t, p("dir/cached/b"), []byte("b"), 0644)
		want("a", "b")
		if err := os.Rename(p("dir/cached/a"), p("dir/cached/c")); err != nil {
			t.Fatal(err)
		}
		want("b", "c")
		if err := os.Rename(p("dir/cached/b"), p("dir/b-moved")); err != nil {
			t.Fatal(err)
		}
		want("c")
		if err := os.Remove(p("dir/cached/c")); err != nil {
			t.Fatal(err)
		}
		want()
		if _, err := os.Lstat(p("dir/cached/c")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("removed name still found: %v", err)
		}
		if err := os.Link(p("dir/b-moved"), p("dir/cached/l")); err != nil {
			t.Fatal(err)
		}
		if st := lstat(t, p("dir/b-moved")); st.Nlink != 2 {
			t.Errorf("nlink after link through another name: %d", st.Nlink)
		}
		if err := os.Remove(p("dir/cached/l")); err != nil {
			t.Fatal(err)
		}
		if st := lstat(t, p("dir/b-moved")); st.Nlink != 1 {
			t.Errorf("nlink after unlink through another name: %d", st.Nlink)
		}
	})

	t.Run("Rename", func(t *testing.T) {
		mustWrite(t, p("tomove"), small, 0644)
		if err := os.Rename(p("tomove"), p("dir/moved")); err != nil {
			t.Fatal(err)
		}
		_, err := os.Lstat(p("tomove"))
		checkErrno(t, "Lstat old name", err, syscall.ENOENT)
		checkContent(t, p("dir/moved"), small)

		mustWrite(t, p("a"), []byte("a"), 0644)
		mustWrite(t, p("b"), []byte("b"), 0644)
		checkErrno(t, "RENAME_NOREPLACE", unix.Renameat2(unix.AT_FDCWD, p("a"), unix.AT_FDCWD, p("b"), unix.RENAME_NOREPLACE), syscall.EEXIST)
		if err := unix.Renameat2(unix.AT_FDCWD, p("a"), unix.AT_FDCWD, p("b"), unix.RENAME_EXCHANGE); err != nil {
			t.Fatalf("RENAME_EXCHANGE: %v", err)
		}
		checkContent(t, p("a"), []byte("b"))
		checkContent(t, p("b"), []byte("a"))
	})

	t.Run("Unlink", func(t *testing.T) {
		mustWrite(t, p("todelete"), small, 0644)
		f, err := os.Open(p("todelete"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := os.Remove(p("todelete")); err != nil {
			t.Fatal(err)
		}
		_, err = os.Lstat(p("todelete"))
		checkErrno(t, "Lstat after unlink", err, syscall.ENOENT)
		buf := make([]byte, 100)
		if n, err := f.ReadAt(buf, 0); !bytes.Equal(buf[:n], small) {
			t.Errorf("read of unlinked open file: %q, %v", buf[:n], err)
		}
		checkErrno(t, "rmdir non-empty", syscall.Rmdir(p("dir")), syscall.ENOTEMPTY)
		if d, err := os.Open(p("dir")); err != nil {
			t.Error(err)
		} else {
			if err := d.Sync(); err != nil { // FSYNCDIR
				t.Errorf("fsync dir: %v", err)
			}
			d.Close()
		}
		if err := os.Mkdir(p("emptydir"), 0755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Rmdir(p("emptydir")); err != nil {
			t.Errorf("rmdir: %v", err)
		}
	})

	t.Run("Symlink", func(t *testing.T) {
		if err := os.Symlink("big", p("link")); err != nil {
			t.Fatal(err)
		}
		if got, err := os.Readlink(p("link")); err != nil || got != "big" {
			t.Errorf("Readlink: %q, %v", got, err)
		}
		checkContent(t, p("link"), big)
		if st := lstat(t, p("link")); st.Mode&syscall.S_IFMT != syscall.S_IFLNK {
			t.Errorf("symlink mode %o", st.Mode)
		}
	})

	t.Run("Hardlink", func(t *testing.T) {
		if err := os.Link(p("big"), p("dir/biglink")); err != nil {
			t.Fatal(err)
		}
		a, b := lstat(t, p("big")), lstat(t, p("dir/biglink"))
		if a.Ino != b.Ino || b.Nlink != 2 {
			t.Errorf("hard link: ino %d vs %d, nlink %d", a.Ino, b.Ino, b.Nlink)
		}
		checkContent(t, p("dir/biglink"), big)
	})

	t.Run("Xattr", func(t *testing.T) {
		if err := unix.Setxattr(p("small"), "user.tmp", []byte("x"), 0); err != nil {
			t.Fatal(err)
		}
		if err := unix.Setxattr(p("small"), "user.keep", []byte("kept"), 0); err != nil {
			t.Fatal(err)
		}
		checkErrno(t, "XATTR_CREATE of existing", unix.Setxattr(p("small"), "user.keep", []byte("y"), unix.XATTR_CREATE), syscall.EEXIST)
		buf := make([]byte, 100)
		if n, err := unix.Getxattr(p("small"), "user.keep", buf); err != nil || string(buf[:n]) != "kept" {
			t.Errorf("Getxattr: %q, %v", buf[:n], err)
		}
		_, err := unix.Getxattr(p("small"), "user.keep", make([]byte, 1))
		checkErrno(t, "Getxattr small buffer", err, syscall.ERANGE)
		n, err := unix.Listxattr(p("small"), buf)
		if err != nil || !bytes.Contains(buf[:n], []byte("user.keep\x00")) || !bytes.Contains(buf[:n], []byte("user.tmp\x00")) {
			t.Errorf("Listxattr: %q, %v", buf[:n], err)
		}
		if err := unix.Removexattr(p("small"), "user.tmp"); err != nil {
			t.Error(err)
		}
		_, err = unix.Getxattr(p("small"), "user.tmp", buf)
		checkErrno(t, "Getxattr removed", err, syscall.ENODATA)
		// ACLs and security labels pfs does not enforce are refused, so
		// tools (ls -l) stop asking; file capabilities are kept.
		checkErrno(t, "set an ACL", unix.Setxattr(p("small"), "system.posix_acl_access", []byte{2, 0, 0, 0}, 0), syscall.EOPNOTSUPP)
		_, err = unix.Getxattr(p("small"), "system.posix_acl_access", buf)
		checkErrno(t, "get an ACL", err, syscall.EOPNOTSUPP)
		_, err = unix.Lgetxattr(p("small"), "security.selinux", buf)
		checkErrno(t, "get an SELinux label", err, syscall.EOPNOTSUPP)
		_, err = unix.Getxattr(p("small"), "security.capability", buf)
		checkErrno(t, "get capabilities", err, syscall.ENODATA)
	})

	// A SETATTR on a file with buffered writes (tar sets the mtime before
	// closing) must report the buffered size: the kernel keeps the size
	// of the reply, and a read through the same descriptor stops there.
	t.Run("SetattrKeepsBufferedSize", func(t *testing.T) {
		f, err := os.Create(p("utimes"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		data := randomBytes(5809, 3)
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
		if err := unix.Futimes(int(f.Fd()), []unix.Timeval{unix.NsecToTimeval(old.UnixNano()), unix.NsecToTimeval(old.UnixNano())}); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(data)+10)
		n, err := f.ReadAt(got, 0)
		if n != len(data) || !bytes.Equal(got[:n], data) {
			t.Errorf("read back %d bytes after utimes (%v), want %d", n, err, len(data))
		}
		st := lstat(t, p("utimes"))
		if st.Size != int64(len(data)) || st.Mtim.Sec != old.Unix() {
			t.Errorf("stat: size %d mtime %d, want %d and %d", st.Size, st.Mtim.Sec, len(data), old.Unix())
		}
	})

	t.Run("Truncate", func(t *testing.T) {
		mustWrite(t, p("trunc"), randomBytes(100, 2), 0644)
		if err := os.Truncate(p("trunc"), 10); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(p("trunc"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(20); err != nil { // ftruncate: SETATTR with a file handle
			t.Error(err)
		}
		f.Close()
		checkContent(t, p("trunc"), append(randomBytes(100, 2)[:10], make([]byte, 10)...))
	})

	t.Run("Chmod", func(t *testing.T) {
		if err := os.Chmod(p("dir/moved"), 0600); err != nil {
			t.Fatal(err)
		}
		checkMode(t, p("dir/moved"), syscall.S_IFREG|0600)
		mustWrite(t, p("zero"), nil, 0644)
		if err := os.Chmod(p("zero"), 0); err != nil {
			t.Fatal(err)
		}
		checkMode(t, p("zero"), syscall.S_IFREG) // 0000 stays 0000
	})

	t.Run("Chown", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("chown needs root")
		}
		mustWrite(t, p("suid"), nil, 0755)
		if err := os.Chmod(p("suid"), 0755|os.ModeSetuid|os.ModeSetgid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p("suid"), 1000, 1000); err != nil {
			t.Fatal(err)
		}
		st := lstat(t, p("suid"))
		if st.Uid != 1000 || st.Gid != 1000 || st.Mode != syscall.S_IFREG|0755 {
			t.Errorf("after chown: %d:%d mode %o; want 1000:1000 mode 100755 (setuid/setgid cleared)", st.Uid, st.Gid, st.Mode)
		}
	})

	t.Run("SetgidDir", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("chown needs root")
		}
		if err := os.Mkdir(p("sgid"), 0775); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p("sgid"), 0, 1234); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p("sgid"), 0775|os.ModeSetgid); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, p("sgid/file"), nil, 0644)
		if err := os.Mkdir(p("sgid/sub"), 0755); err != nil {
			t.Fatal(err)
		}
		if st := lstat(t, p("sgid/file")); st.Gid != 1234 {
			t.Errorf("file in setgid dir: gid %d, want 1234", st.Gid)
		}
		if st := lstat(t, p("sgid/sub")); st.Gid != 1234 || st.Mode&syscall.S_ISGID == 0 {
			t.Errorf("dir in setgid dir: gid %d mode %o, want gid 1234 and setgid", st.Gid, st.Mode)
		}
	})

	t.Run("Statfs", func(t *testing.T) {
		var st syscall.Statfs_t
		if err := syscall.Statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		if st.Bsize != blockSize || st.Blocks == 0 || st.Bavail == 0 || st.Namelen != 255 || st.Ffree == 0 {
			t.Errorf("statfs: %+v", st)
		}
	})

	t.Run("Seek", func(t *testing.T) {
		f, err := os.Create(p("sparse"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte("data"), 8<<20); err != nil { // chunks 0 and 1 are holes
			t.Fatal(err)
		}
		fd := int(f.Fd())
		if off, err := unix.Seek(fd, 0, unix.SEEK_DATA); err != nil || off > 8<<20 {
			t.Errorf("SEEK_DATA 0: %d, %v", off, err)
		}
		if off, err := unix.Seek(fd, 0, unix.SEEK_HOLE); err != nil || off > 8<<20 {
			t.Errorf("SEEK_HOLE 0: %d, %v", off, err)
		}
		_, err = unix.Seek(fd, 8<<20+4, unix.SEEK_DATA)
		checkErrno(t, "SEEK_DATA at EOF", err, syscall.ENXIO)
	})

	t.Run("Fallocate", func(t *testing.T) {
		f, err := os.Create(p("falloc"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := unix.Fallocate(int(f.Fd()), 0, 0, 5000); err != nil {
			t.Fatal(err)
		}
		if st := lstat(t, p("falloc")); st.Size != 5000 {
			t.Errorf("size after fallocate %d", st.Size)
		}
		checkErrno(t, "punch hole", unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 10), syscall.EOPNOTSUPP)
	})

	if t.Failed() {
		return
	}

	// Everything again from the store.
	bigSt := lstat(t, p("big"))
	m.unmount()
	mnt2 := t.TempDir()
	mountStore(t, store, mnt2)
	p = func(name string) string { return filepath.Join(mnt2, name) }

	checkContent(t, p("big"), big)
	checkContent(t, p("dir/biglink"), big)
	checkContent(t, p("link"), big)
	checkContent(t, p("small"), small)
	checkContent(t, p("dir/moved"), small)
	checkContent(t, p("a"), []byte("b"))
	checkContent(t, p("trunc"), append(randomBytes(100, 2)[:10], make([]byte, 10)...))
	checkMode(t, p("small"), syscall.S_IFREG|0644)
	checkMode(t, p("dir/moved"), syscall.S_IFREG|0600)
	checkMode(t, p("zero"), syscall.S_IFREG)
	checkMode(t, p("dir"), syscall.S_IFDIR|0755)
	if st := lstat(t, p("big")); st.Ino != bigSt.Ino || st.Nlink != 2 || st.Mtim != bigSt.Mtim || st.Size != bigSt.Size {
		t.Errorf("big after remount: ino %d nlink %d mtime %v size %d; before ino %d mtime %v", st.Ino, st.Nlink, st.Mtim, st.Size, bigSt.Ino, bigSt.Mtim)
	}
	for _, gone := range []string{"tomove", "todelete", "emptydir"} {
		_, err := os.Lstat(p(gone))
		checkErrno(t, "Lstat "+gone, err, syscall.ENOENT)
	}
	buf := make([]byte, 100)
	if n, err := unix.Getxattr(p("small"), "user.keep", buf); err != nil || string(buf[:n]) != "kept" {
		t.Errorf("xattr after remount: %q, %v", buf[:n], err)
	}
	entries, err := os.ReadDir(p("dir/many"))
	if err != nil || len(entries) != len(names) {
		t.Fatalf("ReadDir after remount: %d entries, %v", len(entries), err)
	}
	for _, name := range names[:50] {
		checkContent(t, p("dir/many/"+name), []byte(name))
	}
	if os.Geteuid() == 0 {
		if st := lstat(t, p("sgid/file")); st.Gid != 1234 {
			t.Errorf("setgid file gid after remount: %d", st.Gid)
		}
	}
}

// TestKeepCache checks that a file's page cache survives a reopen only
// when the file did not change.
func TestKeepCache(t *testing.T) {
	store, mnt := t.TempDir(), t.TempDir()
	mountStore(t, store, mnt)
	fn := filepath.Join(mnt, "f")
	mustWrite(t, fn, []byte("one"), 0644)
	checkContent(t, fn, []byte("one"))
	checkContent(t, fn, []byte("one"))
	mustWrite(t, fn, []byte("two!"), 0644)
	checkContent(t, fn, []byte("two!"))
	// Same size, new content: the mtime differs, so the cache goes.
	time.Sleep(10 * time.Millisecond)
	mustWrite(t, fn, []byte("tri!"), 0644)
	checkContent(t, fn, []byte("tri!"))
}

// TestReadOnly mounts a store read-only: reads work, every change is
// EROFS, and /proc/mounts says ro.
func TestReadOnly(t *testing.T) {
	store, mnt := t.TempDir(), t.TempDir()
	m := mountStore(t, store, mnt)
	mustWrite(t, filepath.Join(mnt, "f"), []byte("data"), 0644)
	m.unmount()

	mnt = t.TempDir()
	mountStoreRO(t, store, mnt, true)
	checkContent(t, filepath.Join(mnt, "f"), []byte("data"))
	_, err := os.OpenFile(filepath.Join(mnt, "f"), os.O_WRONLY, 0)
	checkErrno(t, "open for writing", err, syscall.EROFS)
	checkErrno(t, "create", os.WriteFile(filepath.Join(mnt, "g"), nil, 0644), syscall.EROFS)
	checkErrno(t, "mkdir", os.Mkdir(filepath.Join(mnt, "d"), 0755), syscall.EROFS)
	checkErrno(t, "chmod", os.Chmod(filepath.Join(mnt, "f"), 0600), syscall.EROFS)
	checkErrno(t, "setxattr", unix.Setxattr(filepath.Join(mnt, "f"), "user.x", []byte("y"), 0), syscall.EROFS)
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil || st.Flags&unix.ST_RDONLY == 0 {
		t.Errorf("statfs flags %#x (%v), want ST_RDONLY", st.Flags, err)
	}
}

// TestParallel writes and reads many files at once, for the race detector.
func TestParallel(t *testing.T) {
	store, mnt := t.TempDir(), t.TempDir()
	mountStore(t, store, mnt)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn := filepath.Join(mnt, fmt.Sprintf("p%d", i))
			data := randomBytes(3<<20+i, uint64(i))
			if err := os.WriteFile(fn, data, 0644); err != nil {
				errs <- err
				return
			}
			got, err := os.ReadFile(fn)
			if err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, data) {
				errs <- fmt.Errorf("%s: content differs", fn)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// posixInstead replaces the posixtest cases whose expectation is not
// POSIX's with a test of what POSIX says; test/posix_test.go has the same
// list for the binary, and README.md the reasons.
var posixInstead = map[string]func(t *testing.T, mnt string){
	// Expects F_SETLK through two descriptors of one process to conflict
	// (OFD semantics); POSIX record locks belong to the process.
	"FcntlFlockLocksFile": recordLocksInProcess,
}

// recordLocksInProcess: F_SETLK locks are per process, so a second lock
// through another descriptor succeeds; F_OFD_SETLK locks are per open
// file and conflict. (The binary's test adds another process.)
func recordLocksInProcess(t *testing.T, mnt string) {
	p := filepath.Join(mnt, "locked")
	if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	var fds []*os.File
	for range 4 {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fds = append(fds, f)
	}
	wr := func(f *os.File, cmd int) error {
		lk := syscall.Flock_t{Type: syscall.F_WRLCK}
		return syscall.FcntlFlock(f.Fd(), cmd, &lk)
	}
	if err := wr(fds[0], syscall.F_SETLK); err != nil {
		t.Fatalf("F_SETLK: %v", err)
	}
	if err := wr(fds[1], syscall.F_SETLK); err != nil {
		t.Errorf("F_SETLK through a second descriptor of the same process: %v; want success", err)
	}
	unlock := syscall.Flock_t{Type: syscall.F_UNLCK}
	if err := syscall.FcntlFlock(fds[0].Fd(), syscall.F_SETLK, &unlock); err != nil {
		t.Fatalf("F_SETLK unlock: %v", err)
	}
	if err := wr(fds[2], unix.F_OFD_SETLK); err != nil {
		t.Fatalf("F_OFD_SETLK: %v", err)
	}
	if err := wr(fds[3], unix.F_OFD_SETLK); !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EACCES) {
		t.Errorf("F_OFD_SETLK through a second open file description: %v; want EAGAIN", err)
	}
}

// TestPosixInProcess runs go-fuse's POSIX conformance tests against an
// in-process mount, each on a fresh store. test/posix_test.go runs the
// same against the built binary.
func TestPosixInProcess(t *testing.T) {
	for _, name := range slices.Sorted(maps.Keys(posixtest.All)) {
		fn := posixtest.All[name]
		t.Run(name, func(t *testing.T) {
			if alt, ok := posixInstead[name]; ok {
				fn = alt
			}
			store, mnt := t.TempDir(), t.TempDir()
			mountStore(t, store, mnt)
			fn(t, mnt)
		})
	}
}

// TestSpareProc: a mount leaves the Go runtime a P more than go-fuse has
// /dev/fuse readers (withSpareProc), never fewer Ps than the process
// started with, and a second mount does not raise it again.
func TestSpareProc(t *testing.T) {
	for i := range 2 {
		dir := t.TempDir()
		mnt := filepath.Join(dir, "mnt")
		if err := os.Mkdir(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		m := mountStore(t, filepath.Join(dir, "store"), mnt)
		readers := fuseReaders(procsBase())
		got := runtime.GOMAXPROCS(0)
		if want := max(procsBase(), readers+1); got != want {
			t.Errorf("mount %d: GOMAXPROCS %d with %d fuse readers (started with %d), want %d", i, got, readers, procsBase(), want)
		}
		mustWrite(t, filepath.Join(mnt, "f"), []byte("x"), 0o644)
		m.unmount()
	}
}
