package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pfs-project/pfs/chunkstore"
	"github.com/pfs-project/pfs/registry"
)

const testChunk = 128 << 10 // above inlineMax, so full chunks are object files

func openTest(t *testing.T, dir string, mem int64) *Engine {
	t.Helper()
	cfg := DefaultConfig(dir)
	cfg.ChunkSize = testChunk
	cfg.Memory = mem
	cfg.Workers = 4
	e, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func createFile(t *testing.T, e *Engine, name string) *Handle {
	t.Helper()
	ctx := context.Background()
	a, err := e.Create(ctx, RootIno, name, 0o644, 0, 0, 0)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	h, err := e.OpenFile(ctx, a.Ino)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	return h
}

// commitsOf runs fn, failing the test on its error, and returns how many
// registry commits it made.
func commitsOf(t *testing.T, e *Engine, fn func() error) uint64 {
	t.Helper()
	before := e.reg.Commits()
	if err := fn(); err != nil {
		t.Fatal(err)
	}
	return e.reg.Commits() - before
}

func readAll(t *testing.T, h *Handle) []byte {
	t.Helper()
	buf := make([]byte, h.Size()+10)
	n, err := h.ReadAt(context.Background(), buf, 0)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return buf[:n]
}

// TestRandomOpsAgainstModel writes, truncates, flushes and reads a file at
// random and compares every read with a plain byte slice, then reopens the
// store and compares again, so data must come back from parts.
func TestRandomOpsAgainstModel(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openTest(t, dir, 8*testChunk)
	h := createFile(t, e, "f")
	ino := h.Ino()
	rng := rand.New(rand.NewPCG(7, 9))
	var model []byte
	for op := 0; op < 600; op++ {
		switch r := rng.IntN(10); {
		case r < 6:
			off := rng.IntN(6 * testChunk)
			n := 1 + rng.IntN(testChunk*2)
			if rng.IntN(3) == 0 {
				n = 1 + rng.IntN(4096)
			}
			model = writeRandom(t, h, rng, model, off, n)
		case r < 7:
			size := rng.IntN(7 * testChunk)
			s := uint64(size)
			if _, err := e.SetAttr(ctx, ino, SetAttrIn{Size: &s}); err != nil {
				t.Fatal(err)
			}
			if size < len(model) {
				model = model[:size]
			} else {
				model = append(model, make([]byte, size-len(model))...)
			}
		case r < 8:
			if err := h.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		default:
			off := rng.IntN(len(model) + 1)
			n := rng.IntN(3 * testChunk)
			buf := make([]byte, n)
			got, err := h.ReadAt(ctx, buf, int64(off))
			if err != nil {
				t.Fatal(err)
			}
			want := model[off:min(off+n, len(model))]
			if !bytes.Equal(buf[:got], want) {
				t.Fatalf("op %d: read %d@%d: mismatch (got %d bytes, want %d)", op, n, off, got, len(want))
			}
		}
	}
	checkReopened(t, e, h, dir, 8*testChunk, model)
}

// writeRandom writes n random bytes at off through h and into model, and
// returns model.
func writeRandom(t *testing.T, h *Handle, rng *rand.Rand, model []byte, off, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	if _, err := h.WriteAt(context.Background(), p, int64(off)); err != nil {
		t.Fatal(err)
	}
	if off+n > len(model) {
		model = append(model, make([]byte, off+n-len(model))...)
	}
	copy(model[off:], p)
	return model
}

// checkReopened checks that h reads model, closes h and e, reopens the
// store so the data must come back from parts, reads model again and runs
// fsck.
func checkReopened(t *testing.T, e *Engine, h *Handle, dir string, mem int64, model []byte) {
	t.Helper()
	ctx := context.Background()
	if got := readAll(t, h); !bytes.Equal(got, model) {
		t.Fatalf("read mismatch: %d vs %d bytes", len(got), len(model))
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openTest(t, dir, mem)
	h2, err := e2.OpenFile(ctx, h.Ino())
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Release(ctx)
	if got := readAll(t, h2); !bytes.Equal(got, model) {
		t.Fatalf("after reopen: mismatch: %d vs %d bytes", len(got), len(model))
	}
	if rep, err := e2.Fsck(ctx, FsckOptions{}); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("fsck: %+v %v", rep, err)
	}
}

// TestMemoryCapBackpressure writes a file 40 times the cap and checks the
// cap is never exceeded and the content survives.
func TestMemoryCapBackpressure(t *testing.T) {
	ctx := context.Background()
	const mem = 4 * testChunk
	e := openTest(t, t.TempDir(), mem)
	h := createFile(t, e, "big")
	block := make([]byte, 48<<10)
	var peak int64
	for i := 0; i < 40*mem/len(block); i++ {
		for j := range block {
			block[j] = byte(i + j)
		}
		if _, err := h.WriteAt(ctx, block, int64(i*len(block))); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, e.MemoryUsed())
	}
	if err := h.Fsync(ctx); err != nil {
		t.Fatal(err)
	}
	if peak > mem {
		t.Fatalf("memory used %d exceeds the cap %d", peak, mem)
	}
	buf := make([]byte, len(block))
	for i := 0; i < 40*mem/len(block); i++ {
		if _, err := h.ReadAt(ctx, buf, int64(i*len(block))); err != nil {
			t.Fatal(err)
		}
		for j := range buf {
			if buf[j] != byte(i+j) {
				t.Fatalf("block %d byte %d: got %d want %d", i, j, buf[j], byte(i+j))
			}
		}
		if u := e.MemoryUsed(); u > mem {
			t.Fatalf("memory used %d exceeds the cap %d while reading", u, mem)
		}
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentWriters has several goroutines write disjoint files and
// shared-file regions at once (run with -race).
func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 6*testChunk)
	shared := createFile(t, e, "shared")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := e.Create(ctx, RootIno, "own"+string(rune('a'+w)), 0o644, 0, 0, 0)
			if err != nil {
				errs <- err
				return
			}
			h, err := e.OpenFile(ctx, a.Ino)
			if err != nil {
				errs <- err
				return
			}
			p := bytes.Repeat([]byte{byte(w)}, 3*testChunk+17)
			if _, err := h.WriteAt(ctx, p, 0); err != nil {
				errs <- err
			}
			if _, err := shared.WriteAt(ctx, p[:testChunk/2], int64(w*testChunk/2)); err != nil {
				errs <- err
			}
			got := make([]byte, len(p))
			if n, err := h.ReadAt(ctx, got, 0); err != nil || n != len(p) || !bytes.Equal(got, p) {
				errs <- errors.New("own file read back wrong")
			}
			errs <- h.Release(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got := readAll(t, shared)
	for w := 0; w < 8; w++ {
		seg := got[w*testChunk/2 : (w+1)*testChunk/2]
		if !bytes.Equal(seg, bytes.Repeat([]byte{byte(w)}, len(seg))) {
			t.Fatalf("shared segment %d wrong", w)
		}
	}
	if err := shared.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptPartIsEIONotBytes flips one byte of a stored object: reads of
// that chunk fail with ErrChecksum, other chunks still read, fsck reports
// the file.
func TestCorruptPartIsEIONotBytes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openTest(t, dir, 8*testChunk)
	h := createFile(t, e, "victim")
	data := make([]byte, 3*testChunk)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if _, err := h.WriteAt(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	parts, err := e.FileParts(ctx, h.Ino())
	if err != nil || len(parts) != 3 {
		t.Fatalf("parts: %v %v", parts, err)
	}
	ino := h.Ino()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	key := parts[1].Key
	obj := filepath.Join(dir, "objects", key[:2], key)
	b, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	b[100] ^= 1
	if err := os.WriteFile(obj, b, 0o600); err != nil {
		t.Fatal(err)
	}
	e2 := openTest(t, dir, 8*testChunk)
	h2, err := e2.OpenFile(ctx, ino)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Release(ctx)
	buf := make([]byte, 10)
	if _, err := h2.ReadAt(ctx, buf, testChunk+5); !errors.Is(err, chunkstore.ErrChecksum) {
		t.Fatalf("read of corrupt chunk: got %v, want ErrChecksum", err)
	}
	if n, err := h2.ReadAt(ctx, buf, 2*testChunk); err != nil || n != 10 || !bytes.Equal(buf, data[2*testChunk:2*testChunk+10]) {
		t.Fatalf("read of healthy chunk: %d %v", n, err)
	}
	rep, err := e2.Fsck(ctx, FsckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != "checksum" || rep.Problems[0].Path != "/victim" || rep.Problems[0].Offset != testChunk {
		t.Fatalf("fsck problems: %v", rep.Problems)
	}
}

// TestUnlinkOpenFile keeps an unlinked file readable until its last
// handle closes, then frees its parts.
func TestUnlinkOpenFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openTest(t, dir, 8*testChunk)
	h := createFile(t, e, "tmp")
	data := bytes.Repeat([]byte("x"), 2*testChunk)
	if _, err := h.WriteAt(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Unlink(ctx, RootIno, "tmp"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Lookup(ctx, RootIno, "tmp"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup after unlink: %v", err)
	}
	if got := readAll(t, h); !bytes.Equal(got, data) {
		t.Fatal("unlinked open file not readable")
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := e.cs.Backend().List(ctx, func(string, int64) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d objects left after the last close of an unlinked file", n)
	}
}

// TestUnlinkClosedFiles: unlinking a closed file deletes its data and its
// inode: a file of up to removeChunks chunks in the unlink's own
// transaction (plus one dropping the records of deleted object parts), a
// bigger one in more transactions after it. Nothing is left for fsck.
func TestUnlinkClosedFiles(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 8*testChunk)
	for _, c := range []struct {
		size    int
		commits uint64
	}{
		{1000, 1},                             // a small part, kept in the registry
		{removeChunks*testChunk - 100, 2},     // object parts: their records go after the objects
		{(removeChunks+3)*testChunk - 100, 3}, // a bigger file is purged apart
	} {
		name := fmt.Sprint("f", c.size)
		h := createFile(t, e, name)
		if _, err := h.WriteAt(ctx, bytes.Repeat([]byte("y"), c.size), 0); err != nil {
			t.Fatal(err)
		}
		if err := h.Release(ctx); err != nil {
			t.Fatal(err)
		}
		ino := h.Ino()
		if n := commitsOf(t, e, func() error { return e.Unlink(ctx, RootIno, name) }); n != c.commits {
			t.Errorf("%d bytes: unlink made %d registry commits, want %d", c.size, n, c.commits)
		}
		if _, err := e.GetAttr(ctx, ino); !errors.Is(err, ErrNotFound) {
			t.Errorf("%d bytes: inode after unlink: %v, want ErrNotFound", c.size, err)
		}
		left := 0
		if err := e.cs.Backend().List(ctx, func(string, int64) error { left++; return nil }); err != nil {
			t.Fatal(err)
		}
		if left != 0 {
			t.Errorf("%d bytes: %d parts left after unlink", c.size, left)
		}
	}
	if rep, err := e.Fsck(ctx, FsckOptions{}); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("fsck after the unlinks: %+v %v", rep, err)
	}
}

// TestUnlinkManySlicedChunks deletes a file whose chunks each hold
// maxSlices small parts, more chunks than one purge transaction takes, with
// the registry's smallest memory budget: each batch of chunkBatch chunk
// maps, with all their parts and bytes, has to fit in one Badger
// transaction (ErrTooBig otherwise).
func TestUnlinkManySlicedChunks(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 2*testChunk) // the registry gets its minimum
	h := createFile(t, e, "db")
	const chunks = chunkBatch + 2
	model := make([]byte, chunks*testChunk)
	for c := range chunks {
		writePages(t, h, model, c*testChunk, testChunk/maxSlices)
	}
	waitCompactions(e)
	slices := 0
	if err := e.reg.View(ctx, func(tx *registry.Tx) error {
		return tx.Chunks(h.Ino(), 0, func(_ uint64, ch registry.Chunk) error {
			slices += len(ch)
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if slices != chunks*maxSlices {
		t.Fatalf("%d slices in %d chunks, want %d each", slices, chunks, maxSlices)
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Unlink(ctx, RootIno, "db"); err != nil {
		t.Fatal(err)
	}
	parts := 0
	if err := e.reg.View(ctx, func(tx *registry.Tx) error {
		return tx.Parts(func(*registry.Part) error { parts++; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	if parts != 0 {
		t.Errorf("%d part records left after the unlink", parts)
	}
	if rep, err := e.Fsck(ctx, FsckOptions{}); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("fsck after the unlink: %+v %v", rep, err)
	}
}

func TestNamespace(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 8*testChunk)
	d, err := e.Mkdir(ctx, RootIno, "d", 0o755, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Mkdir(ctx, RootIno, "d", 0o755, 0, 0); !errors.Is(err, ErrExists) {
		t.Fatalf("mkdir twice: %v", err)
	}
	f, err := e.Create(ctx, d.Ino, "f", 0o600, 1, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Link(ctx, f.Ino, RootIno, "hard"); err != nil {
		t.Fatal(err)
	}
	if a, _ := e.GetAttr(ctx, f.Ino); a.Nlink != 2 {
		t.Fatalf("nlink %d want 2", a.Nlink)
	}
	if err := e.Rmdir(ctx, RootIno, "d"); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("rmdir non-empty: %v", err)
	}
	if err := e.Rename(ctx, d.Ino, "f", RootIno, "hard", 0); err != nil {
		t.Fatalf("rename onto own hard link: %v", err)
	}
	if _, err := e.Symlink(ctx, RootIno, "s", "/target", 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.Rename(ctx, RootIno, "s", d.Ino, "f", RenameExchange); err != nil {
		t.Fatal(err)
	}
	if a, err := e.Resolve(ctx, "/d/f"); err != nil || a.Target != "/target" {
		t.Fatalf("exchange: %v %v", a, err)
	}
	if a, err := e.Resolve(ctx, "/s"); err != nil || a.Ino != f.Ino {
		t.Fatalf("exchange: %v %v", a, err)
	}
	if err := e.Rename(ctx, RootIno, "s", RootIno, "hard", RenameNoReplace); !errors.Is(err, ErrExists) {
		t.Fatalf("noreplace: %v", err)
	}
	if err := e.SetXattr(ctx, f.Ino, "user.k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := e.GetXattr(ctx, f.Ino, "user.k"); err != nil || string(v) != "v" {
		t.Fatalf("xattr: %q %v", v, err)
	}
	if _, err := e.GetXattr(ctx, f.Ino, "user.none"); !errors.Is(err, ErrNoAttr) {
		t.Fatalf("missing xattr: %v", err)
	}
	var names []string
	if err := e.Walk(ctx, "/", func(p string, a *Attr) error { names = append(names, p); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []string{"/", "/d", "/d/f", "/hard", "/s"}
	if len(names) != len(want) {
		t.Fatalf("walk: %v want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("walk: %v want %v", names, want)
		}
	}
	if _, err := e.Create(ctx, RootIno, string(bytes.Repeat([]byte("n"), 256)), 0o644, 0, 0, 0); !errors.Is(err, ErrNameTooLong) {
		t.Fatalf("long name: %v", err)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir, 8*testChunk)
	cfg := DefaultConfig(dir)
	_, err := Open(context.Background(), cfg)
	var le *LockedError
	if !errors.As(err, &le) || le.Pid != os.Getpid() {
		t.Fatalf("second open: %v", err)
	}
}

func TestSeekDataHole(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 8*testChunk)
	h := createFile(t, e, "sparse")
	defer h.Release(ctx)
	if _, err := h.WriteAt(ctx, []byte("x"), 3*testChunk+5); err != nil {
		t.Fatal(err)
	}
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(ctx, []byte("y"), 5*testChunk); err != nil {
		t.Fatal(err)
	}
	if off, err := h.SeekData(ctx, 0); err != nil || off != 3*testChunk {
		t.Fatalf("SeekData(0) = %d, %v", off, err)
	}
	if off, err := h.SeekHole(ctx, 3*testChunk); err != nil || off != 4*testChunk {
		t.Fatalf("SeekHole = %d, %v", off, err)
	}
	if off, err := h.SeekData(ctx, 4*testChunk); err != nil || off != 5*testChunk {
		t.Fatalf("SeekData(4c) = %d, %v", off, err)
	}
	if off, err := h.SeekHole(ctx, 5*testChunk); err != nil || off != 5*testChunk+1 {
		t.Fatalf("SeekHole(5c) = %d, %v", off, err)
	}
	if _, err := h.SeekData(ctx, 6*testChunk); !errors.Is(err, ErrNoData) {
		t.Fatalf("SeekData past end: %v", err)
	}
}

// TestSmallPartsInline checks that parts of small writes live in the
// registry (no object file), read back after a reopen, pass fsck, and go
// away with their file.
func TestSmallPartsInline(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openTest(t, dir, 8*testChunk)
	h := createFile(t, e, "small")
	data := []byte("a small file that fits in the registry")
	if _, err := h.WriteAt(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	parts, err := e.FileParts(ctx, h.Ino())
	if err != nil || len(parts) != 1 || parts[0].Status != "stored" {
		t.Fatalf("parts: %+v %v", parts, err)
	}
	objs, _ := filepath.Glob(filepath.Join(dir, "objects", "*", "*", "*"))
	if len(objs) != 0 {
		t.Fatalf("small part written as object files: %v", objs)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openTest(t, dir, 8*testChunk)
	h2, err := e2.OpenFile(ctx, h.Ino())
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, h2); !bytes.Equal(got, data) {
		t.Fatalf("read back %q", got)
	}
	if err := h2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if rep, err := e2.Fsck(ctx, FsckOptions{}); err != nil || len(rep.Problems) != 0 || rep.Parts != 1 {
		t.Fatalf("fsck: %+v %v", rep, err)
	}
	if err := e2.Unlink(ctx, RootIno, "small"); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := e2.cs.Backend().List(ctx, func(string, int64) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("%d parts left after unlink (%v)", n, err)
	}
}

// TestConcurrentFlushesOfOneFile: an fsync of a file with many dirty
// chunks starts a flush per chunk, and they all commit at once; each
// commit rewrites the file's inode. They must not fail for conflicting
// with each other (under fio's random writes they once ran out of retries
// and the writes failed with EIO), and the file must hold every write.
func TestConcurrentFlushesOfOneFile(t *testing.T) {
	ctx := context.Background()
	const chunks = 512
	e := openTest(t, t.TempDir(), 2*chunks*testChunk)
	h := createFile(t, e, "f")
	want := make([]byte, chunks*testChunk)
	for round := 0; round < 5; round++ {
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for c := w; c < chunks; c += 4 { // a 4 KiB block in every chunk
					off := int64(c)*testChunk + int64(round)*4096
					p := bytes.Repeat([]byte{byte(1 + round*4 + w)}, 4096)
					if _, err := h.WriteAt(ctx, p, off); err != nil {
						errs <- fmt.Errorf("write at %d: %w", off, err)
						return
					}
					copy(want[off:], p)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if err := h.Fsync(ctx); err != nil {
			t.Fatalf("round %d: fsync of %d dirty chunks: %v", round, chunks, err)
		}
	}
	got := readAll(t, h)
	if !bytes.Equal(got, want[:len(got)]) || len(got) != (chunks-1)*testChunk+5*4096 {
		t.Fatalf("the file does not hold every write (%d bytes)", len(got))
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestFragmentedFlushStoresWholeChunk: a flush of a chunk with more
// scattered writes than maxSlices stores the chunk's whole content as one
// part, filled from what was committed before (older slices, and zeros
// for holes and past the old end), instead of one slice per write.
func TestFragmentedFlushStoresWholeChunk(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openTest(t, dir, 16*testChunk)
	h := createFile(t, e, "f")
	ino := h.Ino()
	rng := rand.New(rand.NewPCG(3, 4))
	var model []byte
	write := func(off, n int) { model = writeRandom(t, h, rng, model, off, n) }
	flush := func() {
		if err := h.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 2*testChunk) // chunks 0 and 1 stored whole
	flush()
	for i := 0; i < 3; i++ { // chunk 1 gets slices of its own
		write(testChunk+rng.IntN(testChunk-100), 100)
		flush()
	}
	// Chunk 2 is a hole up to 2.5 chunks; chunk 3 does not exist yet.
	size := uint64(2*testChunk + testChunk/2)
	if _, err := e.SetAttr(ctx, ino, SetAttrIn{Size: &size}); err != nil {
		t.Fatal(err)
	}
	model = append(model, make([]byte, int(size)-len(model))...)
	// More scattered writes than maxSlices in each of chunks 1, 2 and 3.
	const n = maxSlices + 20
	for _, c := range []int{1, 2, 3} {
		for i := 0; i < n; i++ {
			write(c*testChunk+i*(testChunk/n)+rng.IntN(100), 1+rng.IntN(200))
		}
	}
	flush()
	for _, c := range []uint64{1, 2, 3} {
		var ch []int
		if err := e.reg.View(ctx, func(tx *registry.Tx) error {
			chunk, err := tx.GetChunk(ino, c)
			for _, s := range chunk {
				ch = append(ch, int(s.Len))
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if len(ch) != 1 {
			t.Errorf("chunk %d: %d slices %v, want the whole chunk as one", c, len(ch), ch)
		}
	}
	checkReopened(t, e, h, dir, 16*testChunk, model)
}

// TestSmallChunksCachedAtTheirSize: a cached chunk with little content
// takes memory of its size from the cap, not a whole chunk's, so the cache
// holds many more small files than cap/chunk size.
func TestSmallChunksCachedAtTheirSize(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 8*testChunk)
	const files, size = 100, 1000
	var inos []Ino
	for i := range files {
		h := createFile(t, e, fmt.Sprintf("f%d", i))
		if _, err := h.WriteAt(ctx, bytes.Repeat([]byte{byte(i)}, size), 0); err != nil {
			t.Fatal(err)
		}
		if err := h.Release(ctx); err != nil {
			t.Fatal(err)
		}
		inos = append(inos, h.Ino())
	}
	if used := e.mem.Used(); used != 0 {
		t.Fatalf("%d bytes of the cap in use before reading", used)
	}
	// Half of each file: a small chunk read through leaves the cache
	// (TestSmallChunksReadThroughFreed).
	for i, ino := range inos {
		h, err := e.OpenFile(ctx, ino)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, size/2)
		if n, err := h.ReadAt(ctx, got, 0); err != nil || n != size/2 || !bytes.Equal(got, bytes.Repeat([]byte{byte(i)}, size/2)) {
			t.Fatalf("file %d reads back wrong: %d bytes, %v", i, n, err)
		}
		if err := h.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// 100 files of 1000 bytes: 100 000 bytes, where chunk-sized buffers
	// would have needed 100 chunks, 12 times the cap.
	if used := e.mem.Used(); used != files*size {
		t.Fatalf("cache holds %d bytes of the cap, want %d", used, files*size)
	}
}

// TestSmallChunksReadThroughFreed checks that a small file read to its end,
// in one read or in several, leaves the cache at once, that a chunk-sized
// one stays, and that both read back right again.
func TestSmallChunksReadThroughFreed(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 8*testChunk)
	small := bytes.Repeat([]byte("s"), 3000)
	big := bytes.Repeat([]byte("b"), testChunk)
	var inos []Ino
	for i, data := range [][]byte{small, small, big} {
		h := createFile(t, e, fmt.Sprintf("f%d", i))
		if _, err := h.WriteAt(ctx, data, 0); err != nil {
			t.Fatal(err)
		}
		if err := h.Release(ctx); err != nil {
			t.Fatal(err)
		}
		inos = append(inos, h.Ino())
	}
	read := func(ino Ino, want []byte, pieces int) {
		t.Helper()
		h, err := e.OpenFile(ctx, ino)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Release(ctx)
		step := len(want) / pieces
		for off := 0; off < len(want); off += step {
			got := make([]byte, min(step, len(want)-off))
			if n, err := h.ReadAt(ctx, got, int64(off)); err != nil || n != len(got) || !bytes.Equal(got, want[off:off+n]) {
				t.Fatalf("ino %d at %d: read %d bytes, %v", ino, off, n, err)
			}
		}
	}
	read(inos[0], small, 1)
	read(inos[1], small, 3)
	if used := e.mem.Used(); used != 0 {
		t.Fatalf("small files read through hold %d bytes of the cap", used)
	}
	read(inos[2], big, 4)
	if used := e.mem.Used(); used != testChunk {
		t.Fatalf("a chunk-sized file read through holds %d bytes of the cap, want %d", used, testChunk)
	}
	read(inos[0], small, 2)
	read(inos[2], big, 1)
}

// TestRenameOverOpenFile: a file replaced by a rename while open stays
// readable through its handle, and its parts go with its last close.
func TestRenameOverOpenFile(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 8*testChunk)
	old := createFile(t, e, "old")
	data := bytes.Repeat([]byte("o"), 2*testChunk)
	if _, err := old.WriteAt(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := old.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	second, err := e.OpenFile(ctx, old.Ino())
	if err != nil {
		t.Fatal(err)
	}
	h := createFile(t, e, "new")
	if _, err := h.WriteAt(ctx, []byte("new"), 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Rename(ctx, RootIno, "new", RootIno, "old", 0); err != nil {
		t.Fatal(err)
	}
	countParts := func() int {
		n := 0
		if err := e.cs.Backend().List(ctx, func(string, int64) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := second.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, old); !bytes.Equal(got, data) {
		t.Fatal("replaced file not readable through the handle still open")
	}
	if n := countParts(); n != 3 { // two chunks of the replaced file, one of the new
		t.Fatalf("%d parts while the replaced file is still open, want 3", n)
	}
	if err := old.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countParts(); n != 1 {
		t.Fatalf("%d parts after the replaced file's last close, want 1", n)
	}
}

// TestReclaimFlushesFullestOnly: when a writer waits for memory, only the
// fullest dirty buffers are flushed, as many as it waits for plus one per
// worker, not every dirty buffer of every file (that turned random writes
// into a storm of small parts).
func TestReclaimFlushesFullestOnly(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 8*testChunk) // 8 buffers; 4 workers
	var hs []*Handle
	for i := range 8 { // file i has (i+1) 4 KiB blocks buffered
		h := createFile(t, e, fmt.Sprintf("f%d", i))
		for b := 0; b <= i; b++ {
			if _, err := h.WriteAt(ctx, bytes.Repeat([]byte{byte(i)}, 4096), int64(b)*8192); err != nil {
				t.Fatal(err)
			}
		}
		hs = append(hs, h)
	}
	h := createFile(t, e, "writer") // needs a ninth buffer: waits, reclaims
	if _, err := h.WriteAt(ctx, []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	for i, fh := range hs {
		fh.f.mu.Lock()
		dirty := len(fh.f.dirty) > 0
		fh.f.mu.Unlock()
		// 1 buffer waited for + 4 workers: the 5 fullest (files 3 to 7) go.
		if want := i < 3; dirty != want {
			t.Errorf("file %d (%d blocks): still buffered %v, want %v", i, i+1, dirty, want)
		}
	}
	for _, fh := range append(hs, h) {
		if err := fh.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEvictSparesPinnedChunks: a chunk a reader is copying out of stays
// intact however hard the cache is pressed for memory. Eviction used to
// take pinned entries from the LRU list and hand their buffers to the next
// load, so a sequential reader under a small cap returned bytes of another
// chunk (or zeros).
func TestEvictSparesPinnedChunks(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 4*testChunk)
	want := bytes.Repeat([]byte("pinned"), testChunk/6)
	h := createFile(t, e, "f")
	if _, err := h.WriteAt(ctx, want, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// A first read caches the chunk and leaves it unpinned in the LRU
	// list; the second pins it again, as a reader copying out does.
	if got := readAll(t, h); !bytes.Equal(got, want) {
		t.Fatal("first read differs from what was written")
	}
	f := h.f
	f.mu.Lock()
	tag := cacheTag{ver: f.ver[0], epoch: f.epoch}
	f.mu.Unlock()
	ent, err := e.cache.get(ctx, h.Ino(), 0, tag)
	if err != nil {
		t.Fatal(err)
	}
	if freed := e.cache.evict(1 << 40); freed != 0 {
		t.Errorf("evict freed %d bytes while the only cached chunk was pinned", freed)
	}
	buf, err := e.getBuf(ctx) // the buffer a freed entry would have gone to
	if err != nil {
		t.Fatal(err)
	}
	clear(buf)
	if !bytes.Equal(ent.data, want) {
		t.Fatalf("pinned chunk changed under its reader (%d bytes, mem %d)", len(ent.data), ent.mem)
	}
	e.putBuf(buf)
	e.cache.unpin(ent)
	if freed := e.cache.evict(1 << 40); freed != testChunk {
		t.Errorf("after unpinning, evict freed %d bytes, want the chunk's %d", freed, testChunk)
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentReadersUnderSmallCap: sequential readers of several files
// share a cache far smaller than the files, with read-ahead and eviction
// running all the time; every byte read must be the file's.
func TestConcurrentReadersUnderSmallCap(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 4*testChunk)
	const files, size = 3, 6*testChunk + 777
	contents := make([][]byte, files)
	handles := make([]*Handle, files)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range files {
		contents[i] = make([]byte, size)
		for j := range contents[i] {
			contents[i][j] = byte(rng.Uint32())
		}
		handles[i] = createFile(t, e, fmt.Sprintf("f%d", i))
		if _, err := handles[i].WriteAt(ctx, contents[i], 0); err != nil {
			t.Fatal(err)
		}
		if err := handles[i].Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*files)
	for r := range 2 * files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			i := r % files
			buf := make([]byte, 32<<10)
			for pass := range 5 {
				for off := 0; off < size; off += len(buf) {
					n, err := handles[i].ReadAt(ctx, buf, int64(off))
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(buf[:n], contents[i][off:off+n]) {
						errs <- fmt.Errorf("reader %d pass %d: file %d differs at %d+%d", r, pass, i, off, n)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, h := range handles {
		if err := h.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// compactionFile creates a file whose chunk 0 is one stored part of
// dots, and returns it with the content it should read as.
func compactionFile(t *testing.T) (*Engine, *Handle, []byte) {
	t.Helper()
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 8*testChunk)
	h := createFile(t, e, "db")
	model := bytes.Repeat([]byte{'.'}, testChunk)
	if _, err := h.WriteAt(ctx, model, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return e, h, model
}

// writePages writes and flushes maxSlices small pages into h, from first
// on every step bytes, as a database commits: each adds a slice, so a
// chunk that had one before is taken past maxSlices. model follows.
func writePages(t *testing.T, h *Handle, model []byte, first, step int) {
	t.Helper()
	ctx := context.Background()
	for i := range maxSlices {
		off := first + i*step
		p := []byte(fmt.Sprintf("page %d", i))
		copy(model[off:], p)
		if _, err := h.WriteAt(ctx, p, int64(off)); err != nil {
			t.Fatal(err)
		}
		if err := h.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// waitCompactions waits until no compaction runs.
func waitCompactions(e *Engine) {
	for {
		e.mu.Lock()
		n := len(e.compacting)
		e.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCompactionKeepsCachedChunk: compacting a chunk leaves its content as
// it was, so a cached copy stays in the cache and reads go on from it
// (a database's hot chunk used to be reloaded and re-verified whole
// after every compaction); the data read is still the data written.
func TestCompactionKeepsCachedChunk(t *testing.T) {
	ctx := context.Background()
	e, h, model := compactionFile(t)
	readAll(t, h) // caches the chunk; the flushes below keep it current
	writePages(t, h, model, 0, testChunk/maxSlices)
	key := cacheKey{h.Ino(), 0}
	e.cache.mu.Lock()
	ent := e.cache.m[key]
	e.cache.mu.Unlock()
	if ent == nil {
		t.Fatal("the chunk is not cached after its flushes")
	}
	// Compaction runs in the background after the commit that took the
	// chunk past maxSlices.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ch, _, err := e.chunkParts(ctx, h.Ino(), 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(ch) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chunk still has %d slices", len(ch))
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.cache.mu.Lock()
	after := e.cache.m[key]
	e.cache.mu.Unlock()
	if after != ent {
		t.Error("compaction dropped the cached chunk")
	}
	if got := readAll(t, h); !bytes.Equal(got, model) {
		t.Errorf("read after compaction differs from what was written (%d bytes)", len(got))
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentCreatesInOneDirectory: creates, renames and removes
// racing in one directory (as pfs put's workers do) all succeed. Each
// rewrites the directory's inode; without the directory's commit lock they
// conflicted and retried, and under load some ran out of retries.
func TestConcurrentCreatesInOneDirectory(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 8*testChunk)
	const workers, files = 16, 150
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range files {
				tmp, name := fmt.Sprintf(".tmp-%d-%d", w, i), fmt.Sprintf("f-%d-%d", w, i)
				if _, err := e.Create(ctx, RootIno, tmp, 0o644, 0, 0, 0); err != nil {
					errs <- fmt.Errorf("create %s: %w", tmp, err)
					return
				}
				if err := e.Rename(ctx, RootIno, tmp, RootIno, name, 0); err != nil {
					errs <- fmt.Errorf("rename %s: %w", tmp, err)
					return
				}
				if i%3 == 0 {
					if err := e.Unlink(ctx, RootIno, name); err != nil {
						errs <- fmt.Errorf("unlink %s: %w", name, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n := 0
	if err := e.reg.View(ctx, func(tx *registry.Tx) error {
		return tx.ReadDir(RootIno, "", func(registry.Dirent) error { n++; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	if want := workers * (files - (files+2)/3); n != want {
		t.Errorf("directory has %d entries, want %d", n, want)
	}
}

// TestCloseCommitsOnce: closing a written file costs one registry
// transaction, the chunk's commit, which also carries the write's times;
// it used to be followed by a second one that wrote the same times again.
// A write the commit did not carry still gets its times stored.
func TestCloseCommitsOnce(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 8*testChunk)
	h := createFile(t, e, "f")
	if _, err := h.WriteAt(ctx, []byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	if n := commitsOf(t, e, func() error { return h.Flush(ctx) }); n != 1 {
		t.Errorf("flush of one written chunk made %d registry commits, want 1", n)
	}
	h.f.mu.Lock()
	mtime := h.f.mtime
	h.f.mu.Unlock()
	a, err := e.GetAttr(ctx, h.Ino())
	if err != nil {
		t.Fatal(err)
	}
	if a.Mtime < mtime || a.Ctime < mtime {
		t.Errorf("stored mtime %d ctime %d, before the write's %d", a.Mtime, a.Ctime, mtime)
	}
	if n := commitsOf(t, e, func() error { return h.Release(ctx) }); n != 0 {
		t.Errorf("close with nothing new made %d registry commits, want 0", n)
	}
}

// TestSmallPartsFreedInCommit: a small part that loses its last slice is
// deleted in the transaction that drops the slice (a database's commits
// replace small parts all the time): an overwrite costs one commit, an
// unlink two (the name, then the data), and neither leaves the part's
// record or bytes behind.
func TestSmallPartsFreedInCommit(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 8*testChunk)
	h := createFile(t, e, "f")
	parts := func() []registry.Slice {
		t.Helper()
		var ch registry.Chunk
		if err := e.reg.View(ctx, func(tx *registry.Tx) error {
			var err error
			ch, err = tx.GetChunk(h.Ino(), 0)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return ch
	}
	gone := func(what string, ss []registry.Slice) {
		t.Helper()
		if err := e.reg.View(ctx, func(tx *registry.Tx) error {
			for _, s := range ss {
				if _, err := tx.GetPart(s.Part); !errors.Is(err, registry.ErrNotFound) {
					t.Errorf("%s: part %s: record still there (err %v)", what, s.Part, err)
				}
				if _, ok, err := tx.HasBlob(s.Part.String()); err != nil || ok {
					t.Errorf("%s: part %s: bytes still there (err %v)", what, s.Part, err)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.WriteAt(ctx, []byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	first := parts()
	if _, err := h.WriteAt(ctx, []byte("HELLO"), 0); err != nil {
		t.Fatal(err)
	}
	if n := commitsOf(t, e, func() error { return h.Flush(ctx) }); n != 1 {
		t.Errorf("an overwrite's flush made %d registry commits, want 1", n)
	}
	gone("overwritten", first)
	if got := readAll(t, h); string(got) != "HELLO" {
		t.Errorf("read %q, want HELLO", got)
	}
	second := parts()
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := commitsOf(t, e, func() error { return e.Unlink(ctx, RootIno, "f") }); n != 1 {
		t.Errorf("unlinking a closed small file made %d registry commits, want 1 (the purge rides in the unlink's)", n)
	}
	gone("unlinked", second)
}

// TestCorruptInlinePartIsEIO: a part kept in the registry is verified like
// an object when the chunk's read brings its bytes along: a changed byte
// is ErrChecksum for that chunk only, and the part is marked corrupt.
func TestCorruptInlinePartIsEIO(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 8*testChunk)
	h := createFile(t, e, "victim")
	data := bytes.Repeat([]byte("inline "), (2*testChunk+7000)/7)
	if _, err := h.WriteAt(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The tail chunk is small enough for the registry.
	tail := testChunk * uint64(len(data)/testChunk)
	ch, parts, err := e.chunkParts(ctx, h.Ino(), uint64(len(data)/testChunk), nil)
	if err != nil || len(ch) != 1 {
		t.Fatalf("tail chunk: %v %v", ch, err)
	}
	p := parts[ch[0].Part]
	if err := e.reg.Update(ctx, func(tx *registry.Tx) error {
		b, err := tx.GetBlob(p.Key)
		if err != nil {
			return err
		}
		b[3] ^= 0x20
		return tx.PutBlob(p.Key, b)
	}); err != nil {
		t.Fatalf("the tail part is not in the registry: %v", err)
	}
	e.cache.dropFile(h.Ino(), 0)
	buf := make([]byte, 10)
	if _, err := h.ReadAt(ctx, buf, int64(tail)); !errors.Is(err, chunkstore.ErrChecksum) {
		t.Fatalf("read of the corrupt inline part: got %v, want ErrChecksum", err)
	}
	if n, err := h.ReadAt(ctx, buf, 5); err != nil || n != 10 || !bytes.Equal(buf, data[5:15]) {
		t.Fatalf("read of a healthy chunk: %d %v", n, err)
	}
	var status registry.PartStatus
	if err := e.reg.View(ctx, func(tx *registry.Tx) error {
		q, err := tx.GetPart(p.ID)
		if err == nil {
			status = q.Status
		}
		return err
	}); err != nil || status != registry.PartCorrupt {
		t.Errorf("part status %v (%v), want corrupt", status, err)
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := e.Fsck(ctx, FsckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != "checksum" || rep.Problems[0].Path != "/victim" || rep.Problems[0].Offset != int64(tail) {
		t.Fatalf("fsck problems: %+v", rep.Problems)
	}
}

// TestStreamedChunksEvictedFirst: a file read from start to end does not
// push the chunks random readers use out of the cache: its chunks, once
// read through, are the first to go. Chunks read out of order are kept,
// and both passes over the streamed file read right (the second one with
// read-ahead again, from the start of the open file).
func TestStreamedChunksEvictedFirst(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 16*testChunk)
	write := func(name string, size int, seed uint64) (*Handle, []byte) {
		content := make([]byte, size)
		rng := rand.New(rand.NewPCG(seed, seed))
		for i := range content {
			content[i] = byte(rng.Uint32())
		}
		h := createFile(t, e, name)
		if _, err := h.WriteAt(ctx, content, 0); err != nil {
			t.Fatal(err)
		}
		if err := h.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		return h, content
	}
	hot, hotContent := write("hot", 12*testChunk, 1)
	stream, content := write("stream", 40*testChunk+999, 3)
	// Writes leave their committed chunks cached; start from a cold cache.
	e.cache.evict(e.mem.Size())

	buf := make([]byte, testChunk)
	for _, idx := range []int64{5, 2, 9} {
		if _, err := hot.ReadAt(ctx, buf, idx*testChunk); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, hotContent[idx*testChunk:(idx+1)*testChunk]) {
			t.Fatalf("hot chunk %d differs", idx)
		}
	}
	waitCacheIdle(t, e)
	for pass := range 2 {
		buf := make([]byte, 32<<10)
		for off := 0; off < len(content); off += len(buf) {
			n, err := stream.ReadAt(ctx, buf, int64(off))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf[:n], content[off:off+n]) {
				t.Fatalf("pass %d: differs at %d+%d", pass, off, n)
			}
		}
		waitCacheIdle(t, e)
		e.cache.mu.Lock()
		for _, idx := range []uint64{5, 2, 9} {
			if e.cache.m[cacheKey{hot.Ino(), idx}] == nil {
				t.Errorf("pass %d: hot chunk %d was evicted by a file streamed through the cache", pass, idx)
			}
		}
		e.cache.mu.Unlock()
	}
	for _, h := range []*Handle{hot, stream} {
		if err := h.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// waitCacheIdle waits until no chunk is loading or pinned (read-ahead runs
// in the background; e.bg also counts the idle flusher, which never ends).
func waitCacheIdle(t *testing.T, e *Engine) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		busy := 0
		e.cache.mu.Lock()
		for _, ent := range e.cache.m {
			if ent.pins > 0 {
				busy++
			}
		}
		e.cache.mu.Unlock()
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d chunks still loading or pinned", busy)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStampMatchesGetAttr: an open file's Stamp (what the FUSE layer's
// open compares to keep the page cache, without a registry read) reports
// the size and mtime GetAttr does, after writes, a truncate, an explicit
// mtime and a flush, and on a second handle.
func TestStampMatchesGetAttr(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 16*testChunk)
	h := createFile(t, e, "f")
	check := func(what string, h *Handle) {
		t.Helper()
		a, err := e.GetAttr(ctx, h.Ino())
		if err != nil {
			t.Fatal(err)
		}
		size, mtime := h.Stamp()
		if uint64(size) != a.Size || mtime != a.Mtime {
			t.Errorf("%s: Stamp %d, %d; GetAttr %d, %d", what, size, mtime, a.Size, a.Mtime)
		}
	}
	check("new", h)
	if _, err := h.WriteAt(ctx, bytes.Repeat([]byte{1}, testChunk+5), 0); err != nil {
		t.Fatal(err)
	}
	check("buffered write", h)
	sz := uint64(100)
	if _, err := e.SetAttr(ctx, h.Ino(), SetAttrIn{Size: &sz}); err != nil {
		t.Fatal(err)
	}
	check("truncate", h)
	old := time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC).UnixNano()
	if _, err := e.SetAttr(ctx, h.Ino(), SetAttrIn{Mtime: &old}); err != nil {
		t.Fatal(err)
	}
	check("mtime set back", h)
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	check("flushed", h)
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	h2, err := e.OpenFile(ctx, h.Ino())
	if err != nil {
		t.Fatal(err)
	}
	check("reopened", h2)
	if err := h2.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestNoopChownOfOpenFile: a chown or chmod that changes nothing, on an
// open file with nothing buffered (sqlite's fchown of each new journal, as
// root), makes no commit of its own: its ctime rides the next commit. One
// that changes something still commits at once.
func TestNoopChownOfOpenFile(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), 8*testChunk)
	h := createFile(t, e, "journal")
	a, err := e.GetAttr(ctx, h.Ino())
	if err != nil {
		t.Fatal(err)
	}
	uid, gid, mode := a.Uid, a.Gid, a.Mode&07777
	if n := commitsOf(t, e, func() error {
		_, err := e.SetAttr(ctx, h.Ino(), SetAttrIn{Uid: &uid, Gid: &gid})
		return err
	}); n != 0 {
		t.Errorf("a chown to the same owner of an open file made %d commits, want 0", n)
	}
	got, err := e.GetAttr(ctx, h.Ino())
	if err != nil {
		t.Fatal(err)
	}
	if got.Ctime <= a.Ctime {
		t.Errorf("ctime after the chown %d, want after %d", got.Ctime, a.Ctime)
	}
	if _, err := h.WriteAt(ctx, []byte("page"), 0); err != nil {
		t.Fatal(err)
	}
	if n := commitsOf(t, e, func() error { return h.Fsync(ctx) }); n != 1 {
		t.Errorf("fsync after the chown made %d commits, want 1 (data and ctime together)", n)
	}
	stored, err := e.getInode(ctx, h.Ino())
	if err != nil {
		t.Fatal(err)
	}
	if stored.Ctime < got.Ctime {
		t.Errorf("stored ctime %d, want at least the chown's %d", stored.Ctime, got.Ctime)
	}
	other, newMode := uid+1, mode^0o004
	for _, in := range []SetAttrIn{{Uid: &other}, {Mode: &newMode}} {
		if n := commitsOf(t, e, func() error { _, err := e.SetAttr(ctx, h.Ino(), in); return err }); n != 1 {
			t.Errorf("a setattr %+v that changes the file made %d commits, want 1", in, n)
		}
	}
	stored, err = e.getInode(ctx, h.Ino())
	if err != nil {
		t.Fatal(err)
	}
	if stored.Uid != other || stored.Mode&07777 != newMode {
		t.Errorf("stored uid %d mode %o, want %d %o", stored.Uid, stored.Mode&07777, other, newMode)
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestAttrsRideWithTheWrites: chmod, chown and utimens of a file with
// buffered writes (what tar and rsync -a do before each close) are shown
// at once and committed with the writes: write, three setattrs and the
// close make one registry commit, and the stored inode has them all.
// Later changes win over earlier ones also when they race with a commit,
// and a write after a utimens, or a truncate, sets the mtime again.
func TestAttrsRideWithTheWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openTest(t, dir, 8*testChunk)
	h := createFile(t, e, "f")
	if _, err := h.WriteAt(ctx, []byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	mode, uid, gid := uint32(0o640), uint32(1234), uint32(5678)
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC).UnixNano()
	before := e.reg.Commits()
	for _, in := range []SetAttrIn{{Uid: &uid, Gid: &gid}, {Mode: &mode}, {Atime: &old, Mtime: &old}} {
		a, err := e.SetAttr(ctx, h.Ino(), in)
		if err != nil {
			t.Fatal(err)
		}
		if in.Mode != nil && a.Mode&07777 != mode {
			t.Errorf("setattr reply mode %o, want %o", a.Mode&07777, mode)
		}
	}
	if n := e.reg.Commits() - before; n != 0 {
		t.Errorf("setattrs of a file with buffered writes made %d commits, want 0", n)
	}
	check := func(what string, a *Attr) {
		t.Helper()
		if a.Mode&07777 != mode || a.Uid != uid || a.Gid != gid || a.Mtime != old || a.Atime != old || a.Size != 5 {
			t.Errorf("%s: mode %o uid %d gid %d mtime %d atime %d size %d; want %o %d %d %d %d 5",
				what, a.Mode&07777, a.Uid, a.Gid, a.Mtime, a.Atime, a.Size, mode, uid, gid, old, old)
		}
	}
	a, err := e.GetAttr(ctx, h.Ino())
	if err != nil {
		t.Fatal(err)
	}
	check("getattr while open", a)
	if a, err = e.Lookup(ctx, RootIno, "f"); err != nil {
		t.Fatal(err)
	}
	check("lookup while open", a)
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.reg.Commits() - before; n != 1 {
		t.Errorf("write, three setattrs and close made %d commits, want 1", n)
	}
	in, err := e.getInode(ctx, h.Ino())
	if err != nil {
		t.Fatal(err)
	}
	check("stored", in)

	// A write after the utimens moves the mtime on; a later chmod wins
	// over a pending one, also when a commit carrying the older one is in
	// flight (the commit leaves what came after its snapshot pending).
	h, err = e.OpenFile(ctx, h.Ino())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(ctx, []byte("x"), 10); err != nil {
		t.Fatal(err)
	}
	m1, m2 := uint32(0o600), uint32(0o604)
	if _, err := e.SetAttr(ctx, h.Ino(), SetAttrIn{Mode: &m1, Mtime: &old}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(ctx, []byte("y"), 11); err != nil {
		t.Fatal(err)
	}
	h.f.mu.Lock()
	snap := h.f.pendGen
	h.f.mu.Unlock()
	if _, err := e.SetAttr(ctx, h.Ino(), SetAttrIn{Mode: &m2}); err != nil {
		t.Fatal(err)
	}
	h.f.mu.Lock()
	h.f.clearPendLocked(snap) // as a commit that snapshotted before the second chmod
	h.f.mu.Unlock()
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	in, err = e.getInode(ctx, h.Ino())
	if err != nil {
		t.Fatal(err)
	}
	if in.Mode&07777 != m2 || in.Mtime <= old || in.Size != 12 {
		t.Errorf("after write, chmod, write, chmod: mode %o mtime %d size %d; want %o, after %d, 12", in.Mode&07777, in.Mtime, in.Size, m2, old)
	}

	// A truncate after a pending utimens sets the mtime to its own time.
	h, err = e.OpenFile(ctx, h.Ino())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(ctx, []byte("z"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.SetAttr(ctx, h.Ino(), SetAttrIn{Mtime: &old}); err != nil {
		t.Fatal(err)
	}
	size := uint64(3)
	if _, err := e.SetAttr(ctx, h.Ino(), SetAttrIn{Size: &size}); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	in, err = e.getInode(ctx, h.Ino())
	if err != nil {
		t.Fatal(err)
	}
	if in.Mtime <= old || in.Size != 3 || in.Mode&07777 != m2 {
		t.Errorf("after utimens then truncate: mtime %d size %d mode %o; want after %d, 3, %o", in.Mtime, in.Size, in.Mode&07777, old, m2)
	}

	// Everything above survives a reopen of the store.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openTest(t, dir, 8*testChunk)
	a, err = e2.Lookup(ctx, RootIno, "f")
	if err != nil {
		t.Fatal(err)
	}
	if a.Mode&07777 != m2 || a.Uid != uid || a.Gid != gid || a.Size != 3 {
		t.Errorf("reopened: mode %o uid %d gid %d size %d", a.Mode&07777, a.Uid, a.Gid, a.Size)
	}
}

// TestNewBuffersAreMapped: a chunk buffer the engine allocates has all its
// pages mapped before the first write touches it (populate), so writes and
// loads into it take no page faults.
func TestNewBuffersAreMapped(t *testing.T) {
	e := openTest(t, t.TempDir(), 16*testChunk)
	var bufs [][]byte
	for range 2 * freeBufs(e.cfg.Memory, e.chunkSize) { // past the few kept idle
		b, err := e.getBuf(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		bufs = append(bufs, b)
	}
	defer func() {
		for _, b := range bufs {
			e.putBuf(b)
		}
	}()
	page := os.Getpagesize()
	for i, b := range bufs {
		// mincore wants a page-aligned start: check the whole pages inside b.
		start := (page - int(uintptr(unsafe.Pointer(&b[0])))%page) % page
		n := (len(b) - start) / page
		vec := make([]byte, n)
		if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[start])), uintptr(n*page), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
			t.Fatal(errno)
		}
		for p, v := range vec {
			if v&1 == 0 {
				t.Fatalf("buffer %d: page %d of %d is not mapped", i, p, n)
			}
		}
	}
}

// TestCompactionUnderCommits: a database commits while its chunk is being
// compacted. The compaction still lands, under the new commit's slice
// (it used to be given up, and most of a database's compactions were),
// the commit's request for another compaction of the chunk is not
// started while one runs, and the file reads back as written.
func TestCompactionUnderCommits(t *testing.T) {
	ctx := context.Background()
	e, h, model := compactionFile(t)
	var hooks atomic.Int32
	hookErr := make(chan error, 1)
	e.compactHook = func() {
		if hooks.Add(1) != 1 {
			return
		}
		// A commit lands between the compaction's read and its commit.
		p := []byte("committed during the compaction")
		copy(model[100:], p)
		_, err := h.WriteAt(ctx, p, 100)
		if err == nil {
			err = h.Flush(ctx)
		}
		hookErr <- err
	}
	writePages(t, h, model, 1000, testChunk/(maxSlices+1))
	if err := <-hookErr; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ch, _, err := e.chunkParts(ctx, h.Ino(), 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(ch) <= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chunk still has %d slices: the compaction was given up", len(ch))
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitCompactions(e) // and a second one, if one was started
	if n := hooks.Load(); n != 1 {
		t.Errorf("%d compactions of the chunk ran, want 1", n)
	}
	ch, _, err := e.chunkParts(ctx, h.Ino(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch) != 2 || ch[1].Off != 100 {
		t.Errorf("chunk map after the compaction: %+v, want the compacted part and the commit's slice at 100", ch)
	}
	e.cache.dropFile(h.Ino(), 0) // read from the store, not the cache
	if got := readAll(t, h); !bytes.Equal(got, model) {
		t.Errorf("read after compaction differs from what was written (%d bytes)", len(got))
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestCompactionUnderTruncate: a truncate that cuts a chunk while it is
// being compacted wins: the compacted part, which holds the bytes the
// truncate removed, is not committed, and when the file grows again the
// removed range reads as zeros.
func TestCompactionUnderTruncate(t *testing.T) {
	ctx := context.Background()
	e, h, model := compactionFile(t)
	const cut = testChunk / 2
	var hooks atomic.Int32
	hookErr := make(chan error, 1)
	e.compactHook = func() {
		if hooks.Add(1) != 1 {
			return
		}
		// Cut the file and grow it back: the bytes past cut are zeros now.
		clear(model[cut:])
		small, full := uint64(cut), uint64(testChunk)
		_, err := e.SetAttr(ctx, h.Ino(), SetAttrIn{Size: &small})
		if err == nil {
			_, err = e.SetAttr(ctx, h.Ino(), SetAttrIn{Size: &full})
		}
		hookErr <- err
	}
	writePages(t, h, model, 1000, testChunk/(maxSlices+1))
	if err := <-hookErr; err != nil {
		t.Fatal(err)
	}
	waitCompactions(e)
	e.cache.dropFile(h.Ino(), 0) // read from the store, not the cache
	if got := readAll(t, h); !bytes.Equal(got, model) {
		i := 0
		for i < min(len(got), len(model)) && got[i] == model[i] {
			i++
		}
		t.Errorf("read after compaction differs from the file's content at byte %d of %d (got %d bytes)", i, len(model), len(got))
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestNewInodeKnownXattrless: a new inode is known to have no extended
// attributes, so the kernel's security.capability queries before a new
// file's first write and chown need no registry read; an attribute set
// later is still seen.
func TestNewInodeKnownXattrless(t *testing.T) {
	e := openTest(t, t.TempDir(), 8*testChunk)
	ctx := context.Background()
	f, err := e.Create(ctx, RootIno, "f", 0o644, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Mkdir(ctx, RootIno, "d", 0o755, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.Symlink(ctx, RootIno, "s", "f", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []*Attr{f, d, s} {
		if _, known := e.xattrless.has(a.Ino); !known {
			t.Errorf("new inode %d (mode %o) not known to have no xattrs", a.Ino, a.Mode)
		}
		if _, err := e.GetXattr(ctx, a.Ino, "security.capability"); !errors.Is(err, ErrNoAttr) {
			t.Errorf("inode %d: security.capability: %v, want ErrNoAttr", a.Ino, err)
		}
	}
	if err := e.SetXattr(ctx, f.Ino, "user.k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := e.GetXattr(ctx, f.Ino, "user.k"); err != nil || string(v) != "v" {
		t.Fatalf("xattr set after create: %q %v", v, err)
	}
}
