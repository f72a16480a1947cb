package local_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pfs-project/pfs/chunkstore/backend"
	"github.com/pfs-project/pfs/chunkstore/backend/backendtest"
	"github.com/pfs-project/pfs/chunkstore/backend/local"
)

// layouts are the two ways objects are laid out, with where each puts
// the object of a key.
var layouts = []struct {
	name   string
	layout local.Layout
	path   func(dir, key string) string
}{
	{"one-level", local.OneLevel, func(dir, key string) string { return filepath.Join(dir, key[0:2], key) }},
	{"two-level", local.TwoLevel, func(dir, key string) string { return filepath.Join(dir, key[0:2], key[2:4], key) }},
}

func TestBackend(t *testing.T) {
	for _, lo := range layouts {
		t.Run(lo.name, func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) backend.Backend { return newLocal(t, t.TempDir(), lo.layout) })
		})
	}
}

func newLocal(t *testing.T, dir string, layout local.Layout) *local.Local {
	t.Helper()
	l, err := local.New(dir, layout)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLayoutAndModes(t *testing.T) {
	for _, lo := range layouts {
		t.Run(lo.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			l := newLocal(t, dir, lo.layout)
			key := backendtest.NewKey()
			if err := l.Save(context.Background(), key, []byte("hello")); err != nil {
				t.Fatal(err)
			}
			obj := lo.path(dir, key)
			want := map[string]fs.FileMode{obj: 0o600}
			for p := filepath.Dir(obj); len(p) >= len(dir); p = filepath.Dir(p) {
				want[p] = fs.ModeDir | 0o700 // the fan-out directories and dir
			}
			for p, mode := range want {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode() != mode {
					t.Errorf("%s: mode %v, want %v", p, fi.Mode(), mode)
				}
			}
			got, err := os.ReadFile(obj)
			if err != nil || string(got) != "hello" {
				t.Errorf("object file holds %q, %v", got, err)
			}
		})
	}
}

// TestOneLevelFanOutMadeAtOpen: the one-level layout's 256 directories
// exist once New returns, so saving objects makes no directory; New makes
// again the ones that went missing.
func TestOneLevelFanOutMadeAtOpen(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "objects")
	l := newLocal(t, dir, local.OneLevel)
	dirs := func() []string {
		t.Helper()
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			if e.IsDir() {
				names = append(names, e.Name())
			}
		}
		return names
	}
	before := dirs()
	if len(before) != 256 || before[0] != "00" || before[255] != "ff" {
		t.Fatalf("after New: %d fan-out directories (%v...), want 00 to ff", len(before), before[:min(len(before), 3)])
	}
	for range 50 {
		key := backendtest.NewKey()
		if err := l.Save(ctx, key, []byte(key)); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, key[0:2], key)); err != nil {
			t.Fatal(err)
		}
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.Count(strings.TrimPrefix(p, dir), "/") > 1 {
			t.Errorf("Save made a directory below the fan-out: %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "7f")); err != nil {
		t.Fatal(err)
	}
	newLocal(t, dir, local.OneLevel)
	if got := dirs(); len(got) != 256 {
		t.Errorf("after a fan-out directory went missing, New left %d, want 256", len(got))
	}
}

func TestTempFiles(t *testing.T) {
	for _, lo := range layouts {
		t.Run(lo.name, func(t *testing.T) { testTempFiles(t, lo.layout, lo.path) })
	}
}

func testTempFiles(t *testing.T, layout local.Layout, path func(dir, key string) string) {
	ctx := context.Background()
	dir := t.TempDir()
	l := newLocal(t, dir, layout)
	key := backendtest.NewKey()
	if err := l.Save(ctx, key, []byte("object")); err != nil {
		t.Fatal(err)
	}
	// What a crash in the middle of Save leaves behind.
	fanout := filepath.Dir(path(dir, key))
	tmp := filepath.Join(fanout, ".tmp-"+key+"-123456")
	if err := os.WriteFile(tmp, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Strangers are neither listed nor removed.
	stranger := filepath.Join(fanout, "README")
	if err := os.WriteFile(stranger, []byte("not an object"), 0o600); err != nil {
		t.Fatal(err)
	}

	var listed []string
	if err := l.List(ctx, func(k string, _ int64) error { listed = append(listed, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0] != key {
		t.Errorf("List = %q, want [%s]", listed, key)
	}

	if err := l.CleanTemp(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temp file survived CleanTemp: %v", err)
	}
	if _, err := os.Stat(stranger); err != nil {
		t.Errorf("CleanTemp removed a non-temp file: %v", err)
	}

	// New cleans too.
	if err := os.WriteFile(tmp, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	newLocal(t, dir, layout)
	if _, err := os.Stat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temp file survived New: %v", err)
	}
	if got, err := l.Load(ctx, key, 0, -1); err != nil || string(got) != "object" {
		t.Errorf("Load after cleaning = %q, %v", got, err)
	}
}

func TestInvalidKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := newLocal(t, dir, local.OneLevel)
	before, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"", ".", "..", "abc", "ab/cd", "../../etc", "abcd/..", "ab..cd", "ab.c", "abcd\x00", "/abcd"} {
		if err := l.Save(ctx, key, []byte("x")); !errors.Is(err, backend.ErrInvalidKey) {
			t.Errorf("Save(%q) = %v, want ErrInvalidKey", key, err)
		}
		if _, err := l.Load(ctx, key, 0, -1); !errors.Is(err, backend.ErrInvalidKey) {
			t.Errorf("Load(%q) = %v, want ErrInvalidKey", key, err)
		}
		if _, err := l.Stat(ctx, key); !errors.Is(err, backend.ErrInvalidKey) {
			t.Errorf("Stat(%q) = %v, want ErrInvalidKey", key, err)
		}
		if err := l.Delete(ctx, key); !errors.Is(err, backend.ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(before) {
		t.Errorf("invalid keys created %d entries in %s", len(entries)-len(before), dir)
	}
}

// TestNoSpace fills a 1 MiB tmpfs. It needs root; it fails rather than
// skips without it, so a CI without privileges notices.
func TestNoSpace(t *testing.T) {
	ctx := context.Background()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	l := newLocal(t, mnt, local.OneLevel)

	small := backendtest.NewKey()
	if err := l.Save(ctx, small, []byte("fits")); err != nil {
		t.Fatal(err)
	}
	big := backendtest.NewKey()
	err := l.Save(ctx, big, bytes.Repeat([]byte("x"), 2<<20))
	if !errors.Is(err, backend.ErrNoSpace) {
		t.Fatalf("Save of 2 MiB into 1 MiB = %v, want ErrNoSpace", err)
	}
	t.Logf("Save: %v", err)
	if _, err := l.Stat(ctx, big); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Stat after failed Save = %v, want ErrNotFound", err)
	}
	// The temp file is gone, so the space is free again.
	err = filepath.WalkDir(mnt, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temp file left: %s", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Save(ctx, backendtest.NewKey(), bytes.Repeat([]byte("y"), 512<<10)); err != nil {
		t.Errorf("Save of 512 KiB after failure: %v", err)
	}
	if got, err := l.Load(ctx, small, 0, -1); err != nil || string(got) != "fits" {
		t.Errorf("Load(small) = %q, %v", got, err)
	}
}

// TestReserve: with a reserve, Save refuses what would leave less than the
// reserve free, before writing anything, and still stores what fits.
func TestReserve(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := newLocal(t, dir, local.OneLevel)
	_, free, err := l.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l.SetReserve(int64(free) - 64<<10) // room for less than 64 KiB more
	if err := l.Save(ctx, backendtest.NewKey(), []byte("small")); err != nil {
		t.Fatalf("Save of 5 bytes under the reserve: %v", err)
	}
	big := backendtest.NewKey()
	err = l.Save(ctx, big, bytes.Repeat([]byte("x"), 1<<20))
	if !errors.Is(err, backend.ErrNoSpace) {
		t.Fatalf("Save of 1 MiB past the reserve = %v, want ErrNoSpace", err)
	}
	if _, err := l.Stat(ctx, big); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Stat after refused Save = %v, want ErrNotFound", err)
	}
}

// TestFanOutDirRemovedBehindItsBack: Save remembers which fan-out
// directories exist; one removed meanwhile (by hand, by a cleanup) is made
// again rather than failing the save.
func TestFanOutDirRemovedBehindItsBack(t *testing.T) {
	for _, lo := range layouts {
		t.Run(lo.name, func(t *testing.T) { testFanOutDirRemoved(t, lo.layout) })
	}
}

func testFanOutDirRemoved(t *testing.T, layout local.Layout) {
	ctx := context.Background()
	dir := t.TempDir()
	l := newLocal(t, dir, layout)
	first := backendtest.NewKey()
	if err := l.Save(ctx, first, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, first[0:2])); err != nil {
		t.Fatal(err)
	}
	second := first[0:4] + backendtest.NewKey()[4:] // same fan-out directories
	if err := l.Save(ctx, second, []byte("two")); err != nil {
		t.Fatalf("save into a removed fan-out directory: %v", err)
	}
	got, err := l.Load(ctx, second, 0, -1)
	if err != nil || string(got) != "two" {
		t.Fatalf("load: %q, %v", got, err)
	}
}
