package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/pfs-project/pfs/engine"
)

const (
	// copyBlock is the size of one ReadAt/WriteAt on the engine. Large
	// blocks let the engine fill whole chunks and keep its workers busy.
	copyBlock = 4 << 20
	// zeroBlock is the granularity at which all-zero data is skipped, so
	// that holes (and runs of zeros) take no space in the store or in a
	// file written by get.
	zeroBlock = 64 << 10
	// putParallel is how many files put copies at once; the engine
	// parallelises within each file.
	putParallel = 4
)

func newPutCmd(g *globals) *cobra.Command {
	var dest string
	var ef engineFlags
	cmd := &cobra.Command{
		Use:   "put [flags] FILE...",
		Short: "Store local files in the store",
		Long: `Store local files in the (unmounted) store and print "<file-id> <path>" for
each. A file is written under a temporary name and renamed over its final
name only once all its parts are durable, so a failed put leaves nothing
half-written. Holes and runs of zeros take no space. FILE - reads stdin
(then --dest names the file).

--dest is a directory in the store when several files are given, when it
ends in '/', or when it names an existing directory; otherwise it is the
path of the stored file. Missing directories are created. Without --dest
files go to the root under their base name.`,
		Example: `  pfs put photo.jpg                     # -> /photo.jpg
  pfs put a.bin b.bin --dest /backup/   # -> /backup/a.bin, /backup/b.bin
  pfs put big.iso --dest /isos/debian.iso
  tar c dir | pfs put - --dest /dir.tar`,
		Args: minArgs(1, "at least one FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPut(cmd.Context(), g, &ef, dest, args)
		},
	}
	cmd.Flags().StringVar(&dest, "dest", "", "destination path or directory in the store")
	ef.add(cmd.Flags(), true)
	return cmd
}

// putJob is one file to store.
type putJob struct {
	src  string // local path, "-" for stdin
	size int64  // -1 for stdin
	info os.FileInfo
	dir  string // directory in the store
	name string // final name in dir
}

func (j *putJob) target() string { return path.Join(j.dir, j.name) }

func runPut(ctx context.Context, g *globals, ef *engineFlags, dest string, args []string) error {
	// Check the local side first: a missing source must not touch the store.
	jobs := make([]*putJob, len(args))
	var total int64
	for i, src := range args {
		j := &putJob{src: src, size: -1}
		if src == "-" {
			if len(args) > 1 || dest == "" || dest[len(dest)-1] == '/' {
				return usageErrorf("put -: stdin needs --dest naming the file, and no other FILE")
			}
		} else {
			fi, err := os.Stat(src)
			if err != nil {
				return fmt.Errorf("put %s: %w", src, unwrapPathError(err))
			}
			if fi.IsDir() {
				return withCode(exitUsage, fmt.Errorf("put %s: is a directory (put stores files; to copy a tree, 'pfs mount' and cp -r)", src))
			}
			if !fi.Mode().IsRegular() {
				return withCode(exitUsage, fmt.Errorf("put %s: not a regular file", src))
			}
			j.info, j.size = fi, fi.Size()
			total += fi.Size()
		}
		jobs[i] = j
	}

	e, err := openStore(ctx, g, openOptions{holder: "pfs put", create: true, flags: ef})
	if err != nil {
		return err
	}
	return closeStore(e, putAll(ctx, e, dest, jobs, total))
}

func putAll(ctx context.Context, e *engine.Engine, dest string, jobs []*putJob, total int64) error {
	// Decide where each file goes.
	asDir := len(jobs) > 1 || dest == "" || dest[len(dest)-1] == '/'
	d := storePath(dest)
	if !asDir {
		if a, err := e.Resolve(ctx, d); err == nil && isDir(a) {
			asDir = true
		}
	}
	seen := map[string]string{}
	for _, j := range jobs {
		if asDir {
			j.dir, j.name = d, filepath.Base(j.src)
		} else {
			j.dir, j.name = path.Dir(d), path.Base(d)
		}
		if j.name == "/" || j.name == "." || j.name == ".." {
			return usageErrorf("put %s: --dest %q does not name a file", j.src, dest)
		}
		if prev, ok := seen[j.target()]; ok {
			return usageErrorf("put: %s and %s would both be stored as %s", prev, j.src, j.target())
		}
		seen[j.target()] = j.src
	}

	bar := newProgress(total, "put")
	if len(jobs) == 1 && jobs[0].size < 0 {
		bar = newProgress(-1, "put")
	}
	var mu sync.Mutex // serialises the output lines
	grp, gctx := errgroup.WithContext(ctx)
	grp.SetLimit(putParallel)
	for _, j := range jobs {
		grp.Go(func() error {
			id, err := putFile(gctx, e, j, bar)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			bar.clear() // the bar redraws below the line on its next update
			fmt.Printf("%s %s\n", id, j.target())
			return nil
		})
	}
	if err := grp.Wait(); err != nil {
		bar.abort()
		return err
	}
	bar.finish()
	return nil
}

// putFile stores one file under a temporary name in its directory and
// renames it over the final name once it is durable. On failure it removes
// the temporary file. It returns the file ID.
func putFile(ctx context.Context, e *engine.Engine, j *putJob, bar *progress) (id string, err error) {
	fail := func(err error) error { return fmt.Errorf("put %s: %w", j.src, err) }
	var r *os.File
	if j.src == "-" {
		r = os.Stdin
	} else {
		if r, err = os.Open(j.src); err != nil {
			return "", fail(unwrapPathError(err))
		}
		defer r.Close()
	}
	dir, err := e.MkdirAll(ctx, j.dir, 0o755, uint32(os.Getuid()), uint32(os.Getgid()))
	if err != nil {
		return "", fail(err)
	}
	if !isDir(dir) {
		return "", fail(fmt.Errorf("%s: %w", j.dir, engine.ErrNotDir))
	}
	perm := uint32(0o644)
	if j.info != nil {
		perm = uint32(j.info.Mode().Perm())
	}
	tmp := tempName(j.name, "put")
	a, err := e.Create(ctx, dir.Ino, tmp, syscall.S_IFREG|perm, uint32(os.Getuid()), uint32(os.Getgid()), 0)
	if err != nil {
		return "", fail(fmt.Errorf("create %s: %w", path.Join(j.dir, tmp), err))
	}
	defer func() {
		if err != nil {
			// Clean up on a fresh context: ctx may be why we failed.
			if uerr := e.Unlink(context.WithoutCancel(ctx), dir.Ino, tmp); uerr != nil {
				err = fmt.Errorf("%w (and removing %s: %v)", err, path.Join(j.dir, tmp), uerr)
			}
		}
	}()
	h, err := e.OpenFile(ctx, a.Ino)
	if err != nil {
		return "", fail(err)
	}
	size, err := copyIn(ctx, h, r, j.size, bar)
	if err == nil {
		err = finishPut(ctx, e, h, size, j.info)
	}
	if rerr := h.Release(context.WithoutCancel(ctx)); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return "", fail(err)
	}
	if err := e.Rename(ctx, dir.Ino, tmp, dir.Ino, j.name, 0); err != nil {
		if errors.Is(err, engine.ErrIsDir) || errors.Is(err, engine.ErrNotEmpty) {
			err = fmt.Errorf("%s is a directory", j.target())
		}
		return "", fail(fmt.Errorf("rename into place: %w", err))
	}
	return a.ID.String(), nil
}

// finishPut sets the final size and mtime and makes the file durable.
func finishPut(ctx context.Context, e *engine.Engine, h *engine.Handle, size int64, fi os.FileInfo) error {
	in := engine.SetAttrIn{}
	sz := uint64(size)
	in.Size = &sz // covers a hole at the end
	if fi != nil {
		mt := fi.ModTime().UnixNano()
		in.Mtime = &mt
	}
	if _, err := e.SetAttr(ctx, h.Ino(), in); err != nil {
		return fmt.Errorf("set size and mtime: %w", err)
	}
	if err := h.Fsync(ctx); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	return nil
}

// copyIn copies r into h and returns the number of bytes copied. For a
// regular file (size >= 0) it visits only the data regions
// (SEEK_DATA/SEEK_HOLE); zero blocks are skipped in any case.
func copyIn(ctx context.Context, h *engine.Handle, r *os.File, size int64, bar *progress) (int64, error) {
	buf := make([]byte, copyBlock)
	if size < 0 { // a stream
		var off int64
		for {
			n, err := io.ReadFull(r, buf)
			if n > 0 {
				if werr := writeNonZero(ctx, h, buf[:n], off); werr != nil {
					return off, werr
				}
				off += int64(n)
				bar.add(int64(n))
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return off, nil
			}
			if err != nil {
				return off, fmt.Errorf("read: %w", err)
			}
		}
	}
	fd := int(r.Fd())
	for off := int64(0); off < size; {
		data, hole := dataRegion(fd, off, size)
		bar.add(data - off) // a hole counts as done
		for pos := data; pos < hole; {
			n := int(min(int64(len(buf)), hole-pos))
			if _, err := r.ReadAt(buf[:n], pos); err != nil {
				if err == io.EOF {
					return pos, fmt.Errorf("file shrank to %d bytes while reading", pos)
				}
				return pos, fmt.Errorf("read at %d: %w", pos, err)
			}
			if err := writeNonZero(ctx, h, buf[:n], pos); err != nil {
				return pos, err
			}
			pos += int64(n)
			bar.add(int64(n))
		}
		off = hole
	}
	return size, nil
}

// dataRegion returns the next data region [data, hole) at or after off,
// or (size, size) if only a hole follows. Filesystems without SEEK_DATA
// report the whole rest as data.
func dataRegion(fd int, off, size int64) (data, hole int64) {
	d, err := unix.Seek(fd, off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return size, size
	}
	if err != nil || d < off {
		return off, size
	}
	h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
	if err != nil || h <= d {
		h = size
	}
	return min(d, size), min(h, size)
}

var zeros = make([]byte, zeroBlock)

// writeNonZero writes the parts of p that are not all zeros at off, in as
// few WriteAt calls as possible. The target must read as zeros where it is
// not written (a new file, or one extended later by truncate).
func writeNonZero(ctx context.Context, h *engine.Handle, p []byte, off int64) error {
	return forNonZero(p, func(b []byte, at int) error {
		if _, err := h.WriteAt(ctx, b, off+int64(at)); err != nil {
			return fmt.Errorf("write at %d: %w", off+int64(at), err)
		}
		return nil
	})
}

// forNonZero calls fn for each maximal run of zeroBlock-sized blocks of p
// that are not all zeros, with the run's offset in p.
func forNonZero(p []byte, fn func(b []byte, at int) error) error {
	start := -1
	for i := 0; i < len(p); i += zeroBlock {
		end := min(i+zeroBlock, len(p))
		zero := bytes.Equal(p[i:end], zeros[:end-i])
		if !zero && start < 0 {
			start = i
		}
		if zero && start >= 0 {
			if err := fn(p[start:i], start); err != nil {
				return err
			}
			start = -1
		}
	}
	if start >= 0 {
		return fn(p[start:], start)
	}
	return nil
}

// tempName returns a hidden name next to name for a file being written.
func tempName(name, verb string) string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	if len(name) > 200 {
		name = name[:200]
	}
	return fmt.Sprintf(".%s.pfs-%s-%d-%s", name, verb, os.Getpid(), hex.EncodeToString(b[:]))
}

// unwrapPathError drops the *PathError's op ("open", "stat"), whose path
// the caller already prints: "put x: no such file or directory".
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
