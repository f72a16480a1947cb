package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"
)

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var root *Inode
	p := &Part{ID: uuid.New(), Key: "k", Status: PartPending}
	update(t, r, func(tx *Tx) (err error) {
		if root, err = tx.GetInode(RootIno); err != nil {
			return err
		}
		if err := tx.PutDirent(RootIno, Dirent{Name: "f", Ino: 2}); err != nil {
			return err
		}
		if err := tx.PutChunk(2, 3, Chunk{{Part: p.ID, Len: 5}}); err != nil {
			return err
		}
		return tx.PutPart(p)
	})
	if err := r.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	check := func(r *Registry) {
		t.Helper()
		view(t, r, func(tx *Tx) error {
			got, err := tx.GetInode(RootIno)
			if err != nil {
				return err
			}
			if *got != *root {
				t.Errorf("root changed on reopen: %+v, was %+v", got, root)
			}
			if _, err := tx.Lookup(RootIno, "f"); err != nil {
				return err
			}
			if c, err := tx.GetChunk(2, 3); err != nil || len(c) != 1 {
				t.Errorf("GetChunk = %v, %v", c, err)
			}
			if ids := garbage(t, r); len(ids) != 1 || ids[0] != p.ID {
				t.Errorf("garbage = %v", ids)
			}
			return nil
		})
	}
	r, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	check(r)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	r, err = Open(Options{Dir: dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	check(r)
	if err := r.Update(context.Background(), func(*Tx) error { return nil }); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Update on a read-only registry = %v, want ErrReadOnly", err)
	}
	if err := r.Sync(); err != nil {
		t.Errorf("Sync on a read-only registry = %v", err)
	}
}

func TestOpenDamaged(t *testing.T) {
	for _, pattern := range []string{"MANIFEST", "*.sst", "*.vlog", "KEYREGISTRY"} {
		t.Run(pattern, func(t *testing.T) {
			dir := t.TempDir()
			r, err := Open(Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			update(t, r, func(tx *Tx) error { return tx.PutDirent(RootIno, Dirent{Name: "f", Ino: 2}) })
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			files, _ := filepath.Glob(filepath.Join(dir, pattern))
			if len(files) == 0 {
				t.Skipf("no %s file", pattern)
			}
			for _, f := range files {
				garbage := make([]byte, 4096)
				for i := range garbage {
					garbage[i] = byte(i*7 + 3)
				}
				if err := os.WriteFile(f, garbage, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r, err = Open(Options{Dir: dir})
			if err != nil {
				t.Logf("open: %v", err)
				return
			}
			// Badger may recover from some damage (e.g. a truncated WAL);
			// then the registry must still work.
			t.Logf("opened despite damaged %s", pattern)
			_ = r.View(context.Background(), func(tx *Tx) error { _, err := tx.GetInode(RootIno); return err })
			_ = r.Close()
		})
	}
}

func TestOpenOptions(t *testing.T) {
	for name, opts := range map[string]Options{
		"NoDir":              {},
		"TinyBudget":         {InMemory: true, MemoryBudget: 1 << 20},
		"InMemoryReadOnly":   {InMemory: true, ReadOnly: true},
		"ReadOnlyMissingDir": {Dir: filepath.Join(t.TempDir(), "missing"), ReadOnly: true},
	} {
		if r, err := Open(opts); err == nil {
			r.Close()
			t.Errorf("%s: Open succeeded", name)
		}
	}
	r, err := Open(Options{InMemory: true, MemoryBudget: MinMemoryBudget})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}

func TestConcurrentNextIno(t *testing.T) {
	r := newRegistry(t)
	const workers, per = 4, 300
	got := make([][]Ino, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range per {
				var ino Ino
				err := r.Update(context.Background(), func(tx *Tx) (err error) {
					ino, err = tx.NextIno()
					return err
				})
				if err != nil {
					errs[w] = err
					return
				}
				got[w] = append(got[w], ino)
			}
		})
	}
	wg.Wait()
	seen := map[Ino]bool{RootIno: true}
	for w := range workers {
		if errs[w] != nil {
			t.Fatalf("worker %d: %v", w, errs[w])
		}
		for _, ino := range got[w] {
			if seen[ino] {
				t.Fatalf("ino %d allocated twice", ino)
			}
			seen[ino] = true
		}
	}
	if len(seen) != workers*per+1 {
		t.Errorf("%d inos, want %d", len(seen)-1, workers*per)
	}
}

func TestUpdateConflict(t *testing.T) {
	r := newRegistry(t)
	ctx := context.Background()
	attempts := 0
	err := r.Update(ctx, func(tx *Tx) error {
		attempts++
		if _, err := tx.NextIno(); err != nil {
			return err
		}
		// A concurrent writer commits the counter before every commit.
		return r.Update(ctx, func(tx *Tx) error { _, err := tx.NextIno(); return err })
	})
	if !errors.Is(err, ErrConflict) {
		t.Errorf("Update = %v, want ErrConflict", err)
	}
	if attempts != maxAttempts {
		t.Errorf("%d attempts, want %d", attempts, maxAttempts)
	}

	ctx, cancel := context.WithCancel(ctx)
	attempts = 0
	err = r.Update(ctx, func(tx *Tx) error {
		attempts++
		cancel()
		if _, err := tx.NextIno(); err != nil {
			return err
		}
		return r.Update(context.Background(), func(tx *Tx) error { _, err := tx.NextIno(); return err })
	})
	if !errors.Is(err, context.Canceled) || attempts != 1 {
		t.Errorf("cancelled Update = %v after %d attempts, want context.Canceled after 1", err, attempts)
	}
	if err := r.View(ctx, func(*Tx) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled View = %v", err)
	}
}

func TestUpdateTooBig(t *testing.T) {
	r := newRegistry(t)
	c := Chunk{{Part: uuid.New(), Len: 1}}
	attempts := 0
	err := r.Update(context.Background(), func(tx *Tx) error {
		attempts++
		for i := range uint64(1_000_000) {
			if err := tx.PutChunk(2, i, c); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, ErrTooBig) {
		t.Fatalf("Update = %v, want ErrTooBig", err)
	}
	if attempts != 1 {
		t.Errorf("too big transaction ran %d times", attempts)
	}
	view(t, r, func(tx *Tx) error {
		if _, ok, err := tx.LastChunk(2); ok || err != nil {
			t.Errorf("a failed transaction left chunks: %v, %v", ok, err)
		}
		return nil
	})
}

func TestSyncInMemory(t *testing.T) {
	r := newRegistry(t)
	done := make(chan error, 1)
	go func() { done <- r.Sync() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sync hung")
	}
}

// copyDir copies the files of a Badger directory, as a kill -9 would leave
// them if taken while the registry is open.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestCrash(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	update(t, r, func(tx *Tx) error { return tx.PutDirent(RootIno, Dirent{Name: "f", Ino: 2}) })

	// Without Sync or Close, a committed transaction is in the files.
	crashed := copyDir(t, dir)
	r2, err := Open(Options{Dir: crashed})
	if err != nil {
		t.Fatal(err)
	}
	view(t, r2, func(tx *Tx) error { _, err := tx.Lookup(RootIno, "f"); return err })
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}

	// A damaged write-ahead log is an error or is truncated, never a panic.
	damaged := copyDir(t, dir)
	mems, _ := filepath.Glob(filepath.Join(damaged, "*.mem"))
	if len(mems) == 0 {
		t.Fatal("no memtable WAL in an open registry")
	}
	for _, f := range mems {
		fh, err := os.OpenFile(f, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.WriteAt(make([]byte, 64), 20); err != nil {
			t.Fatal(err)
		}
		fh.Close()
	}
	if r3, err := Open(Options{Dir: damaged}); err != nil {
		t.Logf("open: %v", err)
	} else {
		_ = r3.View(context.Background(), func(tx *Tx) error { _, err := tx.Lookup(RootIno, "f"); return err })
		r3.Close()
	}
}

// TestGrowMinFree: below MinFree, Grow refuses with ErrNoSpace and Update
// (deletes, commits of stored parts) still works.
func TestGrowMinFree(t *testing.T) {
	ctx := context.Background()
	r, err := Open(Options{Dir: t.TempDir(), MinFree: 1 << 62})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	put := func(tx *Tx) error { return tx.PutDirent(RootIno, Dirent{Name: "f", Ino: 2}) }
	if err := r.Grow(ctx, put); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Grow with MinFree above the free space = %v, want ErrNoSpace", err)
	}
	if err := r.Update(ctx, put); err != nil {
		t.Fatalf("Update with MinFree above the free space: %v", err)
	}
	r.minFree = 1
	if err := r.Grow(ctx, func(tx *Tx) error { return tx.PutDirent(RootIno, Dirent{Name: "g", Ino: 3}) }); err != nil {
		t.Fatalf("Grow with room: %v", err)
	}
}

// TestRoomNearFull: Room may reuse a recent statfs only while the disk has
// far more room than MinFree; near MinFree it asks the disk every time.
func TestRoomNearFull(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(Options{Dir: dir, MinFree: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	r.minFree = max(free-roomSlack/2, 1) // near full: less than roomSlack left
	r.roomUntil.Store(0)                 // forget what Open may have learnt
	if err := r.Room(); err != nil {
		t.Fatalf("Room with %d bytes above MinFree: %v", free-r.minFree, err)
	}
	r.minFree = 1 << 62 // the disk filled up meanwhile
	if err := r.Room(); !errors.Is(err, ErrNoSpace) {
		t.Errorf("Room near MinFree answered from its last statfs: %v, want ErrNoSpace", err)
	}
}

// TestMustExist: a registry that should exist is never created afresh,
// and one whose MANIFEST lost a table it wrote is refused, not opened
// without it (Badger would delete the table).
func TestMustExist(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(Options{Dir: dir, MustExist: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open(MustExist) of an empty dir = %v, want ErrCorrupt", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("Open(MustExist) of an empty dir left %d files", len(ents))
	}
	r, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	update(t, r, func(tx *Tx) error { return tx.PutDirent(RootIno, Dirent{Name: "f", Ino: 2}) })
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r, err = Open(Options{Dir: dir, MustExist: true})
	if err != nil {
		t.Fatalf("Open(MustExist) of a registry: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	// A torn last MANIFEST record after a clean close: the change that
	// added the table is lost, and no memtable log explains it.
	mf := filepath.Join(dir, "MANIFEST")
	m, err := os.ReadFile(mf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mf, m[:len(m)-3], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: dir, MustExist: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with a MANIFEST that lost a table = %v, want ErrCorrupt", err)
	}
	if tables, _ := filepath.Glob(filepath.Join(dir, "*.sst")); len(tables) == 0 {
		t.Errorf("the table missing from the MANIFEST was deleted")
	}
}

// TestSyncCoversCommits: Sync fdatasyncs the memtable logs itself (not
// Badger's Sync, which also flushes the empty value log), so check that a
// commit's bytes are in a log it synced, also across memtable rotations;
// and that a value big enough for the value log makes Sync use Badger's.
func TestSyncCoversCommits(t *testing.T) {
	r, err := Open(Options{Dir: t.TempDir(), MemoryBudget: MinMemoryBudget})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	seen := map[string]bool{}
	filler := bytes.Repeat([]byte{0xa5}, 30<<10)
	for i := 0; len(seen) < 3; i++ {
		if i == 2000 {
			t.Fatalf("no third memtable log after %d commits of %d bytes", i, len(filler))
		}
		marker := fmt.Appendf(nil, "commit-%06d", i)
		if err := r.Update(ctx, func(tx *Tx) error {
			return tx.PutBlob(fmt.Sprintf("blob-%d", i), append(marker, filler...))
		}); err != nil {
			t.Fatal(err)
		}
		r.syncMu.Lock()
		names, err := r.syncWAL()
		r.syncMu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, name := range names {
			seen[name] = true
			b, err := os.ReadFile(filepath.Join(r.dir, name))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			found = found || bytes.Contains(b, marker)
		}
		if !found {
			t.Fatalf("commit %d is in none of the logs Sync synced (%v)", i, names)
		}
	}
	if r.vlogUsed.Load() {
		t.Fatal("blobs below the value threshold marked the value log used")
	}
	big := make([]byte, r.valueThreshold)
	if err := r.Update(ctx, func(tx *Tx) error { return tx.PutBlob("big", big) }); err != nil {
		t.Fatal(err)
	}
	if !r.vlogUsed.Load() {
		t.Fatal("a value at the threshold did not mark the value log used")
	}
	if err := r.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestSyncWALSealed: a memtable log synced while a newer one exists takes
// no more writes (Badger writes only to the newest), so later syncs skip
// it instead of paying the disk's cache flush again; logs are ordered by
// number, not name, and a log that is gone is forgotten.
func TestSyncWALSealed(t *testing.T) {
	dir := t.TempDir()
	r := &Registry{dir: dir, wals: map[string]*walFile{}}
	defer func() {
		for _, w := range r.wals {
			w.f.Close()
		}
		if r.logDir != nil {
			r.logDir.Close()
		}
	}()
	touch := func(name string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte("log"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	step := func(want ...string) {
		t.Helper()
		got, err := r.syncWAL()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("synced %q, want %q", got, want)
		}
	}
	touch("99999.mem")
	touch("MANIFEST")
	step("99999.mem")
	step("99999.mem") // still the newest: it may have taken writes since
	touch("100000.mem")
	step("99999.mem", "100000.mem") // writes before the rotation
	step("100000.mem")
	touch("100001.mem")
	if err := os.Remove(filepath.Join(dir, "99999.mem")); err != nil {
		t.Fatal(err)
	}
	step("100000.mem", "100001.mem")
	if _, ok := r.wals["99999.mem"]; ok {
		t.Error("a removed log is still held open")
	}
	step("100001.mem")
	touch("junk.mem")
	if _, err := r.syncWAL(); err == nil {
		t.Error("a .mem file with no log number was taken for a log")
	}
}

// TestCloseCompactsLevelZero: a registry reopened after Close has fewer
// level-0 tables than start a compaction (it had four before Close merged
// them; Badger's merge at Close sometimes leaves the newest one).
func TestCloseCompactsLevelZero(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(Options{Dir: dir, MemoryBudget: MinMemoryBudget})
	if err != nil {
		t.Fatal(err)
	}
	// 64 blobs of 64 KiB: 4 MiB through memtables of 1 MiB.
	blob := bytes.Repeat([]byte("0123456789abcdef"), 4<<10)
	for i := range 64 {
		update(t, r, func(tx *Tx) error { return tx.PutBlob(fmt.Sprintf("blob-%d", i), blob) })
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r, err = Open(Options{Dir: dir, MemoryBudget: MinMemoryBudget})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tables := 0
	for _, l := range r.db.Levels() {
		if l.Level == 0 {
			tables = l.NumTables
		}
	}
	if tables >= levelZeroTables {
		t.Errorf("%d level-0 tables after reopening, want fewer than %d", tables, levelZeroTables)
	}
	view(t, r, func(tx *Tx) error {
		for i := range 64 {
			got, err := tx.GetBlob(fmt.Sprintf("blob-%d", i))
			if err != nil {
				return err
			}
			if !bytes.Equal(got, blob) {
				return fmt.Errorf("blob-%d differs", i)
			}
		}
		return nil
	})
}

// TestReopenNeedsNoCompaction: a registry of some tens of MB, written as
// a tree of small files is (each file's inode and bytes), is left by Close
// with no level over its target, so the next mount does not begin by
// compacting it under the reads it serves (see baseLevelSize).
func TestReopenNeedsNoCompaction(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(Options{Dir: dir, MemoryBudget: MinMemoryBudget})
	if err != nil {
		t.Fatal(err)
	}
	blob := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB: 40 MB in all
	const files = 640
	for i := range files {
		update(t, r, func(tx *Tx) error {
			if err := tx.PutInode(&Inode{Ino: Ino(100 + i), Mode: 0o100644, Nlink: 1, Size: uint64(len(blob))}); err != nil {
				return err
			}
			return tx.PutBlob(fmt.Sprintf("blob-%06d", i), blob)
		})
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r, err = Open(Options{Dir: dir, MemoryBudget: MinMemoryBudget, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, l := range r.db.Levels() {
		if l.Score > 1 {
			t.Errorf("level %d: %d tables, %d bytes, target %d: over its target after reopening",
				l.Level, l.NumTables, l.Size, l.TargetSize)
		}
	}
}
