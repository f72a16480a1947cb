// Package local stores objects as files in a directory on a local
// filesystem.
//
// An object with key k lives in a fan-out directory named after the key's
// first characters, so no directory holds more than a small share of the
// objects: dir/k[0:2]/k in the one-level layout, dir/k[0:2]/k[2:4]/k in the
// two-level layout of older stores. The one-level layout's 256 directories
// are made when the backend is opened, so a Save never makes a directory
// (and fsyncs its parent): in the two-level layout a new store makes one
// for nearly each of its first objects. Save writes a temp file next to
// the final name, fsyncs it, renames it into place and fsyncs the
// directory, so a saved object is durable and a reader sees the old
// object or the new one, never a mix. Temp files are named
// ".tmp-<key>-<random>"; keys never contain '.', so temp files cannot be
// mistaken for objects. Those left by a crash are ignored by List and
// removed by CleanTemp, which New calls.
package local

import (
	"unsafe"

	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pfs-project/pfs/chunkstore/backend"
)

var _ backend.Backend = (*Local)(nil)

const (
	tempPrefix = ".tmp-"
	dirMode    = 0o700 // files get os.CreateTemp's 0600
)

// Layout is how object files are spread over fan-out directories.
type Layout int

const (
	// OneLevel keeps an object with key k at dir/k[0:2]/k.
	OneLevel Layout = 1
	// TwoLevel keeps it at dir/k[0:2]/k[2:4]/k (stores of format 1).
	TwoLevel Layout = 2
)

// Local is a backend storing objects as files under one directory.
type Local struct {
	dir    string
	levels int // fan-out directories between dir and an object: 1 or 2

	// saving is held for reading by every Save while its temp file exists,
	// and for writing by CleanTemp, so CleanTemp never removes the temp
	// file of a Save in flight.
	saving sync.RWMutex

	reserve int64 // free bytes Save leaves on the filesystem; see SetReserve

	// made holds the fan-out directories (key[0:2*levels]) known to
	// exist, so a Save does not try mkdirs first. A directory removed
	// behind our back is created again when the temp file cannot be
	// created in it.
	made sync.Map
}

// SetReserve makes Save fail with backend.ErrNoSpace rather than leave
// fewer than n bytes free, for a registry that shares the filesystem and
// must still be able to record deletes when the objects have filled it.
// Call it before the first Save.
func (l *Local) SetReserve(n int64) { l.reserve = n }

// New returns a backend storing objects under dir in the given layout;
// dir is created (mode 0700) if it does not exist, and so are the
// one-level layout's fan-out directories. Temp files left by an earlier
// crash are removed.
func New(dir string, layout Layout) (*Local, error) {
	if layout != OneLevel && layout != TwoLevel {
		return nil, fmt.Errorf("local: unknown layout %d", layout)
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return nil, fmt.Errorf("local: %w", err)
		}
		if err := syncDir(filepath.Dir(dir)); err != nil {
			return nil, fmt.Errorf("local: %w", err)
		}
	}
	l := &Local{dir: dir, levels: int(layout)}
	if layout == OneLevel {
		if err := l.makeFanOut(); err != nil {
			return nil, fmt.Errorf("local: %w", noSpace(err))
		}
	}
	if err := l.CleanTemp(); err != nil {
		return nil, err
	}
	return l, nil
}

// makeFanOut makes the 256 directories of the one-level layout that do not
// exist yet, with one fsync of dir for all of them. On a read-only
// filesystem, where nothing can be saved, it makes none.
func (l *Local) makeFanOut() error {
	made := false
	for i := range 256 {
		name := fmt.Sprintf("%02x", i)
		err := os.Mkdir(filepath.Join(l.dir, name), dirMode)
		switch {
		case err == nil:
			made = true
		case errors.Is(err, syscall.EROFS):
			return nil
		case !errors.Is(err, fs.ErrExist):
			return err
		}
		l.made.Store(name, struct{}{})
	}
	if made {
		return syncDir(l.dir)
	}
	return nil
}

// checkKey rejects keys that cannot be fanned out or that could name
// something other than an object file: short keys, and keys containing
// '/', '.' (so also "." and "..") or NUL.
func checkKey(op, key string) error {
	if len(key) < 4 || strings.ContainsAny(key, "/.\x00") {
		return fmt.Errorf("local: %s %q: %w", op, key, backend.ErrInvalidKey)
	}
	return nil
}

// path returns the file name of the object with a valid key.
func (l *Local) path(key string) string {
	if l.levels == 1 {
		return filepath.Join(l.dir, key[0:2], key)
	}
	return filepath.Join(l.dir, key[0:2], key[2:4], key)
}

// Save implements backend.Backend.
func (l *Local) Save(ctx context.Context, key string, data []byte) error {
	if err := checkKey("save", key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: save %s: %w", key, err)
	}
	if l.reserve > 0 {
		if _, free, err := l.Usage(ctx); err == nil && int64(free) < int64(len(data))+l.reserve {
			return fmt.Errorf("local: save %s: %w: %d bytes free, %d kept for the registry", key, backend.ErrNoSpace, free, l.reserve)
		}
	}
	l.saving.RLock()
	defer l.saving.RUnlock()

	final := l.path(key)
	dir := filepath.Dir(final)
	if err := l.mkdirs(key); err != nil {
		return fmt.Errorf("local: save %s: %w", key, noSpace(err))
	}
	f, err := os.CreateTemp(dir, tempPrefix+key+"-*") // O_EXCL, mode 0600
	if errors.Is(err, fs.ErrNotExist) {
		l.made.Delete(key[:2*l.levels])
		if err = l.mkdirs(key); err == nil {
			f, err = os.CreateTemp(dir, tempPrefix+key+"-*")
		}
	}
	if err != nil {
		return fmt.Errorf("local: save %s: %w", key, noSpace(err))
	}
	tmp := f.Name()
	if err := writeSync(f, data); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("local: save %s: %w", key, noSpace(err))
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("local: save %s: %w", key, noSpace(err))
	}
	if err := syncDir(dir); err != nil {
		// The object is in place but may not survive a crash; report it,
		// the caller will retry or give up on the whole file.
		return fmt.Errorf("local: save %s: %w", key, noSpace(err))
	}
	return nil
}

// writeSync writes data to f, fsyncs and closes it.
func writeSync(f *os.File, data []byte) error {
	var err error
	if directOK(data) {
		// Large aligned parts bypass the page cache: the bytes go from the
		// chunk buffer to the disk without a copy, and flushing them at
		// fsync costs no extra CPU. pfs caches chunks itself.
		err = writeDirect(f, data)
	} else {
		_, err = f.Write(data)
	}
	if err == nil {
		err = unix.Fdatasync(int(f.Fd()))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// mkdirs creates the fan-out directories of key if needed, fsyncing each
// parent in which it created one.
func (l *Local) mkdirs(key string) error {
	if _, ok := l.made.Load(key[:2*l.levels]); ok {
		return nil
	}
	parent := l.dir
	for i := range l.levels { // level i is named by key[2i:2i+2]
		dir := filepath.Join(parent, key[2*i:2*i+2])
		err := os.Mkdir(dir, dirMode)
		switch {
		case err == nil:
			if err := syncDir(parent); err != nil {
				return err
			}
		case !errors.Is(err, fs.ErrExist):
			return err
		}
		parent = dir
	}
	l.made.Store(key[:2*l.levels], struct{}{})
	return nil
}

// syncDir fsyncs a directory, making renames and creations in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// noSpace marks out-of-space errors (ENOSPC, EDQUOT) as backend.ErrNoSpace,
// keeping the original error in the chain.
func noSpace(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", backend.ErrNoSpace, err)
	}
	return err
}

// notFound marks a missing file as backend.ErrNotFound, keeping the
// original error (with its path) in the chain.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", backend.ErrNotFound, err)
	}
	return err
}

// Load implements backend.Backend. It reads the range with pread on the
// opened file, so a concurrent Save (which renames a new file into place)
// cannot mix two objects.
func (l *Local) Load(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	if err := checkKey("load", key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local: load %s: %w", key, err)
	}
	f, err := os.Open(l.path(key))
	if err != nil {
		return nil, fmt.Errorf("local: load %s: %w", key, notFound(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("local: load %s: %w", key, err)
	}
	n, err := backend.CheckRange(fi.Size(), offset, length)
	if err != nil {
		return nil, fmt.Errorf("local: load %s: %w", key, err)
	}
	var buf []byte
	if dst, ok := backend.DstFrom(ctx); ok && int64(cap(dst)) >= n {
		buf = dst[:n] // the caller's buffer: no allocation per load
		if offset == 0 && directOK(buf) {
			// Whole aligned objects are read with O_DIRECT: straight from
			// the disk into the buffer, no second copy in the page cache
			// (pfs caches chunks itself, and the kernel caches the file
			// above the mount).
			if err := readDirect(f, buf); err == nil {
				return buf, nil
			}
		}
	} else {
		buf = make([]byte, n)
	}
	got, err := f.ReadAt(buf, offset)
	if got == len(buf) {
		return buf, nil // ReadAt may return io.EOF with a full buffer
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // the file shrank: not one of ours
	}
	return nil, fmt.Errorf("local: load %s: %s: read %d of %d bytes at %d: %w", key, f.Name(), got, n, offset, err)
}

// Stat implements backend.Backend.
func (l *Local) Stat(ctx context.Context, key string) (int64, error) {
	if err := checkKey("stat", key); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("local: stat %s: %w", key, err)
	}
	fi, err := os.Stat(l.path(key))
	if err != nil {
		return 0, fmt.Errorf("local: stat %s: %w", key, notFound(err))
	}
	return fi.Size(), nil
}

// Delete implements backend.Backend. The directory is not fsynced: a
// delete lost in a crash leaves an orphan object, which fsck finds, and
// empty fan-out directories stay, so a concurrent Save never loses its
// directory.
func (l *Local) Delete(ctx context.Context, key string) error {
	if err := checkKey("delete", key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: delete %s: %w", key, err)
	}
	if err := os.Remove(l.path(key)); err != nil {
		return fmt.Errorf("local: delete %s: %w", key, notFound(err))
	}
	return nil
}

// List implements backend.Backend. Objects saved or deleted while List runs
// may or may not be reported.
func (l *Local) List(ctx context.Context, fn func(key string, size int64) error) error {
	return l.walk(ctx, func(dir string, e fs.DirEntry) error {
		name := e.Name()
		if !e.Type().IsRegular() || checkKey("list", name) != nil || filepath.Dir(l.path(name)) != dir {
			return nil // temp file or a stranger
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted since ReadDir
		}
		if err != nil {
			return fmt.Errorf("local: list: %w", err)
		}
		return fn(name, fi.Size())
	})
}

// CleanTemp removes the temp files a crash left in the fan-out directories.
// It waits for Saves in flight and blocks new ones while it runs.
func (l *Local) CleanTemp() error {
	l.saving.Lock()
	defer l.saving.Unlock()
	return l.walk(context.Background(), func(dir string, e fs.DirEntry) error {
		if !strings.HasPrefix(e.Name(), tempPrefix) || !e.Type().IsRegular() {
			return nil
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("local: clean temp: %w", err)
		}
		return nil
	})
}

// walk calls fn for every entry of every innermost fan-out directory.
// Entries of other shapes in the outer levels are skipped.
func (l *Local) walk(ctx context.Context, fn func(dir string, e fs.DirEntry) error) error {
	return l.walkLevel(ctx, l.dir, l.levels, fn)
}

// walkLevel walks dir, which has levels fan-out levels below it.
func (l *Local) walkLevel(ctx context.Context, dir string, levels int, fn func(dir string, e fs.DirEntry) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: list: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("local: list: %w", err)
	}
	for _, e := range entries {
		var err error
		switch {
		case levels == 0:
			err = fn(dir, e)
		case e.IsDir() && len(e.Name()) == 2:
			err = l.walkLevel(ctx, filepath.Join(dir, e.Name()), levels-1, fn)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Usage implements backend.Backend with statfs on the directory. free is
// the space available to unprivileged users.
func (l *Local) Usage(ctx context.Context) (total, free uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(l.dir, &st); err != nil {
		return 0, 0, fmt.Errorf("local: usage: statfs %s: %w", l.dir, err)
	}
	bsize := uint64(st.Bsize)
	return st.Blocks * bsize, st.Bavail * bsize, nil
}

// Close implements backend.Backend. Local holds no open files between
// calls, so there is nothing to release.
func (l *Local) Close() error {
	return nil
}

// directAlign is the alignment O_DIRECT needs of buffer address, length
// and file offset on the filesystems pfs stores on.
const directAlign = 4096

// directOK reports whether data can be written with O_DIRECT: large and
// aligned in address and length.
func directOK(data []byte) bool {
	return len(data) >= 256<<10 && len(data)%directAlign == 0 &&
		uintptr(unsafe.Pointer(&data[0]))%directAlign == 0
}

// writeDirect writes data with O_DIRECT set on f, falling back to a plain
// write where the filesystem refuses it (tmpfs, some FUSE filesystems).
func writeDirect(f *os.File, data []byte) error {
	fd := int(f.Fd())
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err == nil {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags|unix.O_DIRECT)
	}
	if err != nil {
		_, err = f.Write(data)
		return err
	}
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if err == unix.EINVAL && n <= 0 {
			// Refused after all: write the rest through the page cache.
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags)
			_, err = f.Write(data)
			return err
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// readDirect fills buf from the start of f with O_DIRECT. Any failure
// (a filesystem without O_DIRECT, a short read) is left to the caller's
// buffered read.
func readDirect(f *os.File, buf []byte) error {
	fd, err := unix.Open(f.Name(), unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for got := 0; got < len(buf); {
		n, err := unix.Pread(fd, buf[got:], int64(got))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		got += n
	}
	return nil
}
