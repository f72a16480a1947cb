package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"testing"

	"github.com/google/uuid"
)

func newRegistry(t *testing.T) *Registry {
	t.Helper()
	r, err := Open(Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

func update(t *testing.T, r *Registry, fn func(*Tx) error) {
	t.Helper()
	if err := r.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func view(t *testing.T, r *Registry, fn func(*Tx) error) {
	t.Helper()
	if err := r.View(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func TestTx(t *testing.T) {
	for name, fn := range map[string]func(*testing.T, *Registry){
		"Root": testRoot, "NextIno": testNextIno, "Inode": testInode, "Orphans": testOrphans,
		"Dirent": testDirent, "ReadDir": testReadDir, "Chunk": testChunk, "Part": testPart,
		"Xattr": testXattr, "ReadOnlyTx": testReadOnlyTx,
	} {
		t.Run(name, func(t *testing.T) { fn(t, newRegistry(t)) })
	}
}

func testRoot(t *testing.T, r *Registry) {
	view(t, r, func(tx *Tx) error {
		root, err := tx.GetInode(RootIno)
		if err != nil {
			return err
		}
		if root.Mode != syscall.S_IFDIR|0o755 || root.Nlink != 2 || root.ID == uuid.Nil || root.Mtime == 0 {
			t.Errorf("root = %+v", root)
		}
		empty, err := tx.DirEmpty(RootIno)
		if err != nil || !empty {
			t.Errorf("DirEmpty(root) = %v, %v", empty, err)
		}
		return nil
	})
}

func testNextIno(t *testing.T, r *Registry) {
	var a, b Ino
	update(t, r, func(tx *Tx) (err error) {
		if a, err = tx.NextIno(); err != nil {
			return err
		}
		b, err = tx.NextIno()
		return err
	})
	if a != RootIno+1 || b != RootIno+2 {
		t.Errorf("NextIno gave %d, %d; want %d, %d", a, b, RootIno+1, RootIno+2)
	}
}

func testInode(t *testing.T, r *Registry) {
	in := &Inode{Ino: 5, ID: uuid.New(), Mode: syscall.S_IFLNK | 0o777, Nlink: 1, Target: "t", Size: 1}
	view(t, r, func(tx *Tx) error {
		if _, err := tx.GetInode(5); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetInode(missing) = %v, want ErrNotFound", err)
		}
		return nil
	})
	update(t, r, func(tx *Tx) error {
		if err := tx.PutInode(in); err != nil {
			return err
		}
		return tx.SetXattr(5, "user.a", []byte("v"))
	})
	view(t, r, func(tx *Tx) error {
		got, err := tx.GetInode(5)
		if err != nil {
			return err
		}
		if *got != *in {
			t.Errorf("got %+v, want %+v", got, in)
		}
		var inos []Ino
		err = tx.Inodes(func(in *Inode) error {
			inos = append(inos, in.Ino)
			return nil
		})
		if !slices.Equal(inos, []Ino{RootIno, 5}) {
			t.Errorf("Inodes = %v, %v", inos, err)
		}
		return nil
	})
	update(t, r, func(tx *Tx) error { return tx.DeleteInode(5) })
	view(t, r, func(tx *Tx) error {
		if _, err := tx.GetInode(5); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetInode(deleted) = %v, want ErrNotFound", err)
		}
		if names, err := tx.ListXattr(5); err != nil || len(names) != 0 {
			t.Errorf("xattrs of deleted inode: %v, %v", names, err)
		}
		return nil
	})
}

func orphans(t *testing.T, r *Registry) []Ino {
	t.Helper()
	var inos []Ino
	view(t, r, func(tx *Tx) error {
		return tx.Orphans(func(in *Inode) error {
			if in.Status != StatusDeleting {
				t.Errorf("orphan %d has status %v", in.Ino, in.Status)
			}
			inos = append(inos, in.Ino)
			return nil
		})
	})
	return inos
}

func testOrphans(t *testing.T, r *Registry) {
	for ino := Ino(2); ino <= 4; ino++ {
		update(t, r, func(tx *Tx) error { return tx.PutInode(&Inode{Ino: ino, Status: StatusDeleting}) })
	}
	if got := orphans(t, r); !slices.Equal(got, []Ino{2, 3, 4}) {
		t.Fatalf("orphans = %v, want [2 3 4]", got)
	}
	update(t, r, func(tx *Tx) error { return tx.PutInode(&Inode{Ino: 3, Status: StatusReady}) })
	update(t, r, func(tx *Tx) error { return tx.DeleteInode(4) })
	if got := orphans(t, r); !slices.Equal(got, []Ino{2}) {
		t.Fatalf("orphans = %v, want [2]", got)
	}
	// ErrStop ends the iteration without an error.
	update(t, r, func(tx *Tx) error { return tx.PutInode(&Inode{Ino: 3, Status: StatusDeleting}) })
	n := 0
	view(t, r, func(tx *Tx) error {
		return tx.Orphans(func(*Inode) error { n++; return ErrStop })
	})
	if n != 1 {
		t.Errorf("callback ran %d times after ErrStop", n)
	}
}

func testDirent(t *testing.T, r *Registry) {
	de := Dirent{Name: "file", Ino: 9, Mode: syscall.S_IFREG}
	update(t, r, func(tx *Tx) error { return tx.PutDirent(RootIno, de) })
	view(t, r, func(tx *Tx) error {
		got, err := tx.Lookup(RootIno, "file")
		if err != nil || got != de {
			t.Errorf("Lookup = %+v, %v; want %+v", got, err, de)
		}
		if _, err := tx.Lookup(RootIno, "fil"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Lookup(missing) = %v, want ErrNotFound", err)
		}
		if empty, err := tx.DirEmpty(RootIno); err != nil || empty {
			t.Errorf("DirEmpty = %v, %v", empty, err)
		}
		return nil
	})
	// Replace, then delete.
	de.Ino = 10
	update(t, r, func(tx *Tx) error { return tx.PutDirent(RootIno, de) })
	update(t, r, func(tx *Tx) error {
		if got, err := tx.Lookup(RootIno, "file"); err != nil || got.Ino != 10 {
			t.Errorf("Lookup after replace = %+v, %v", got, err)
		}
		return tx.DeleteDirent(RootIno, "file")
	})
	err := r.Update(context.Background(), func(tx *Tx) error { return tx.DeleteDirent(RootIno, "file") })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteDirent(missing) = %v, want ErrNotFound", err)
	}
	err = r.Update(context.Background(), func(tx *Tx) error { return tx.PutDirent(RootIno, Dirent{Ino: 3}) })
	if err == nil {
		t.Error("PutDirent accepted an empty name")
	}
}

func readDir(t *testing.T, r *Registry, parent Ino, after string) []string {
	t.Helper()
	var names []string
	view(t, r, func(tx *Tx) error {
		return tx.ReadDir(parent, after, func(de Dirent) error {
			names = append(names, de.Name)
			return nil
		})
	})
	return names
}

func testReadDir(t *testing.T, r *Registry) {
	const n = 10000
	var want []string
	for i := 0; i < n; i += 1000 {
		update(t, r, func(tx *Tx) error {
			for j := i; j < i+1000; j++ {
				name := fmt.Sprintf("f%05d", n-1-j) // inserted in reverse order
				if err := tx.PutDirent(RootIno, Dirent{Name: name, Ino: Ino(j + 100), Mode: syscall.S_IFREG}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for i := range n {
		want = append(want, fmt.Sprintf("f%05d", i))
	}
	// Neighbours must not leak in: parent 256's key extends parent 1's
	// prefix bytes only past the fixed-width ino.
	update(t, r, func(tx *Tx) error {
		if err := tx.PutDirent(256, Dirent{Name: "other", Ino: 5}); err != nil {
			return err
		}
		return tx.PutDirent(0, Dirent{Name: "zzz", Ino: 6})
	})

	if got := readDir(t, r, RootIno, ""); !slices.Equal(got, want) {
		t.Fatalf("ReadDir gave %d names (first %v), want %d in order", len(got), got[:min(3, len(got))], n)
	}
	if got := readDir(t, r, RootIno, "f04999"); !slices.Equal(got, want[5000:]) {
		t.Errorf("ReadDir after f04999 gave %d names, want %d", len(got), n-5000)
	}
	// after need not exist; names are strictly after it.
	if got := readDir(t, r, RootIno, "f04999a"); !slices.Equal(got, want[5000:]) {
		t.Errorf("ReadDir after f04999a gave %d names, want %d", len(got), n-5000)
	}
	if got := readDir(t, r, RootIno, "f09999"); len(got) != 0 {
		t.Errorf("ReadDir after the last name gave %v", got)
	}
	if got := readDir(t, r, 256, ""); !slices.Equal(got, []string{"other"}) {
		t.Errorf("ReadDir(256) = %v", got)
	}
	var got []string
	view(t, r, func(tx *Tx) error {
		return tx.ReadDir(RootIno, "", func(de Dirent) error {
			got = append(got, de.Name)
			if len(got) == 3 {
				return ErrStop
			}
			return nil
		})
	})
	if !slices.Equal(got, want[:3]) {
		t.Errorf("ReadDir with ErrStop gave %v", got)
	}
	boom := errors.New("boom")
	err := r.View(context.Background(), func(tx *Tx) error {
		return tx.ReadDir(RootIno, "", func(Dirent) error { return boom })
	})
	if !errors.Is(err, boom) {
		t.Errorf("ReadDir returned %v, want the callback's error", err)
	}
}

func testChunk(t *testing.T, r *Registry) {
	part := uuid.New()
	chunk := func(i uint64) Chunk { return Chunk{{Part: part, PartOff: uint32(i), Len: 1}} }
	view(t, r, func(tx *Tx) error {
		c, err := tx.GetChunk(7, 0)
		if err != nil || c != nil {
			t.Errorf("GetChunk(hole) = %v, %v; want nil, nil", c, err)
		}
		if _, ok, err := tx.LastChunk(7); err != nil || ok {
			t.Errorf("LastChunk(no chunks) = %v, %v", ok, err)
		}
		return nil
	})
	idxs := []uint64{0, 3, 255, 256, 1 << 33}
	update(t, r, func(tx *Tx) error {
		for _, i := range idxs {
			if err := tx.PutChunk(7, i, chunk(i)); err != nil {
				return err
			}
		}
		// Neighbouring inodes must not show up.
		if err := tx.PutChunk(6, 1<<40, chunk(1)); err != nil {
			return err
		}
		return tx.PutChunk(8, 0, chunk(1))
	})
	chunks := func(from uint64) []uint64 {
		var got []uint64
		view(t, r, func(tx *Tx) error {
			return tx.Chunks(7, from, func(idx uint64, c Chunk) error {
				if !slices.Equal(c, chunk(idx)) {
					t.Errorf("chunk %d = %+v", idx, c)
				}
				got = append(got, idx)
				return nil
			})
		})
		return got
	}
	if got := chunks(0); !slices.Equal(got, idxs) {
		t.Errorf("Chunks(0) = %v, want %v", got, idxs)
	}
	if got := chunks(4); !slices.Equal(got, idxs[2:]) {
		t.Errorf("Chunks(4) = %v, want %v", got, idxs[2:])
	}
	view(t, r, func(tx *Tx) error {
		if idx, ok, err := tx.LastChunk(7); err != nil || !ok || idx != 1<<33 {
			t.Errorf("LastChunk = %d, %v, %v", idx, ok, err)
		}
		if c, err := tx.GetChunk(7, 255); err != nil || !slices.Equal(c, chunk(255)) {
			t.Errorf("GetChunk = %v, %v", c, err)
		}
		n := 0
		err := tx.Chunks(7, 0, func(uint64, Chunk) error { n++; return ErrStop })
		if err != nil || n != 1 {
			t.Errorf("Chunks with ErrStop: %d calls, %v", n, err)
		}
		return nil
	})
	update(t, r, func(tx *Tx) error { return tx.PutChunk(7, 1<<33, nil) })
	view(t, r, func(tx *Tx) error {
		if idx, ok, err := tx.LastChunk(7); err != nil || !ok || idx != 256 {
			t.Errorf("LastChunk after delete = %d, %v, %v", idx, ok, err)
		}
		if c, err := tx.GetChunk(7, 1<<33); err != nil || c != nil {
			t.Errorf("GetChunk(deleted) = %v, %v", c, err)
		}
		return nil
	})
}

func garbage(t *testing.T, r *Registry) []uuid.UUID {
	t.Helper()
	var ids []uuid.UUID
	view(t, r, func(tx *Tx) error {
		return tx.Garbage(func(p *Part) error {
			if p.Status != PartPending && p.Status != PartDeleting {
				t.Errorf("garbage part %s has status %v", p.ID, p.Status)
			}
			ids = append(ids, p.ID)
			return nil
		})
	})
	return ids
}

func testPart(t *testing.T, r *Registry) {
	p := &Part{ID: uuid.New(), Key: "k", Size: 10, PlainSize: 20, Status: PartPending, Ino: 3}
	view(t, r, func(tx *Tx) error {
		if _, err := tx.GetPart(p.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetPart(missing) = %v, want ErrNotFound", err)
		}
		return nil
	})
	update(t, r, func(tx *Tx) error { return tx.PutPart(p) })
	view(t, r, func(tx *Tx) error {
		got, err := tx.GetPart(p.ID)
		if err != nil || *got != *p {
			t.Errorf("GetPart = %+v, %v; want %+v", got, err, p)
		}
		return nil
	})
	if got := garbage(t, r); !slices.Equal(got, []uuid.UUID{p.ID}) {
		t.Errorf("pending part: garbage = %v", got)
	}
	for _, s := range []PartStatus{PartStored, PartCorrupt} {
		p.Status = s
		update(t, r, func(tx *Tx) error { return tx.PutPart(p) })
		if got := garbage(t, r); len(got) != 0 {
			t.Errorf("%v part: garbage = %v", s, got)
		}
	}
	p.Status = PartDeleting
	update(t, r, func(tx *Tx) error { return tx.PutPart(p) })
	if got := garbage(t, r); !slices.Equal(got, []uuid.UUID{p.ID}) {
		t.Errorf("deleting part: garbage = %v", got)
	}
	other := &Part{ID: uuid.New(), Status: PartStored}
	update(t, r, func(tx *Tx) error { return tx.PutPart(other) })
	var all int
	view(t, r, func(tx *Tx) error { return tx.Parts(func(*Part) error { all++; return nil }) })
	if all != 2 {
		t.Errorf("Parts saw %d parts, want 2", all)
	}
	update(t, r, func(tx *Tx) error { return tx.DeletePart(p.ID) })
	if got := garbage(t, r); len(got) != 0 {
		t.Errorf("after delete: garbage = %v", got)
	}
	view(t, r, func(tx *Tx) error {
		if _, err := tx.GetPart(p.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetPart(deleted) = %v, want ErrNotFound", err)
		}
		return nil
	})
}

func testXattr(t *testing.T, r *Registry) {
	update(t, r, func(tx *Tx) error {
		for _, name := range []string{"user.b", "user.a", "trusted.x"} {
			if err := tx.SetXattr(5, name, []byte(name+"-value")); err != nil {
				return err
			}
		}
		if err := tx.SetXattr(5, "user.empty", nil); err != nil {
			return err
		}
		return tx.SetXattr(256, "user.other", []byte("o"))
	})
	view(t, r, func(tx *Tx) error {
		v, err := tx.GetXattr(5, "user.a")
		if err != nil || string(v) != "user.a-value" {
			t.Errorf("GetXattr = %q, %v", v, err)
		}
		if v, err := tx.GetXattr(5, "user.empty"); err != nil || len(v) != 0 {
			t.Errorf("GetXattr(empty value) = %q, %v", v, err)
		}
		if _, err := tx.GetXattr(5, "user.c"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetXattr(missing) = %v, want ErrNotFound", err)
		}
		names, err := tx.ListXattr(5)
		want := []string{"trusted.x", "user.a", "user.b", "user.empty"}
		if err != nil || !slices.Equal(names, want) {
			t.Errorf("ListXattr = %v, %v; want %v", names, err, want)
		}
		return nil
	})
	update(t, r, func(tx *Tx) error { return tx.RemoveXattr(5, "user.a") })
	err := r.Update(context.Background(), func(tx *Tx) error { return tx.RemoveXattr(5, "user.a") })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("RemoveXattr(missing) = %v, want ErrNotFound", err)
	}
}

func testReadOnlyTx(t *testing.T, r *Registry) {
	err := r.View(context.Background(), func(tx *Tx) error {
		return tx.PutDirent(RootIno, Dirent{Name: "x", Ino: 2})
	})
	if !errors.Is(err, ErrReadOnly) {
		t.Errorf("write in View = %v, want ErrReadOnly", err)
	}
}
