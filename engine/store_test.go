package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestCheckDir: a directory is accepted while another process creates a
// store in it (its files appear in any order, format.json last through a
// temp file), and refused once it holds anything else.
func TestCheckDir(t *testing.T) {
	dir := t.TempDir()
	steps := []string{lockFile, "pfs.log", registryDir + "/", objectsDir + "/", formatFile + ".tmp"}
	for _, name := range steps {
		path := filepath.Join(dir, name)
		var err error
		if name[len(name)-1] == '/' {
			err = os.Mkdir(path, 0o700)
		} else {
			err = os.WriteFile(path, nil, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := checkDir(dir); err != nil {
			t.Errorf("after %s: %v", name, err)
		}
	}
	if err := os.Rename(filepath.Join(dir, formatFile+".tmp"), filepath.Join(dir, formatFile)); err != nil {
		t.Fatal(err)
	}
	if err := checkDir(dir); err != nil {
		t.Errorf("a store: %v", err)
	}

	foreign := t.TempDir()
	for _, name := range []string{formatFile + ".tmp", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(foreign, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkDir(foreign); err == nil {
		t.Error("a directory with a file of someone else's: accepted")
	}
}

// TestObjectLayoutByFormat: a new store is of the current format and keeps
// its objects one fan-out level down; a store of format 1 keeps the two
// levels it was made with, and reads, writes and checks as before.
func TestObjectLayoutByFormat(t *testing.T) {
	for _, c := range []struct {
		name    string
		version int
		path    func(objects, key string) string
	}{
		{"new store", FormatVersion, func(objects, key string) string { return filepath.Join(objects, key[0:2], key) }},
		{"format 1", 1, func(objects, key string) string { return filepath.Join(objects, key[0:2], key[2:4], key) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			if c.version != FormatVersion {
				makeOldStore(t, dir, c.version)
			}
			e := openTest(t, dir, 8*testChunk)
			h := createFile(t, e, "f")
			data := bytes.Repeat([]byte("0123456789abcdef"), 2*testChunk/16)
			if _, err := h.WriteAt(ctx, data, 0); err != nil {
				t.Fatal(err)
			}
			if err := h.Release(ctx); err != nil {
				t.Fatal(err)
			}
			parts, err := e.FileParts(ctx, h.Ino())
			if err != nil || len(parts) != 2 {
				t.Fatalf("parts: %v %v", parts, err)
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			if v := e.Format().Version; v != c.version {
				t.Errorf("format version %d, want %d", v, c.version)
			}
			objects := filepath.Join(dir, objectsDir)
			for _, p := range parts {
				if _, err := os.Stat(c.path(objects, p.Key)); err != nil {
					t.Errorf("part %s is not where its format keeps it: %v", p.Key, err)
				}
			}

			e2 := openTest(t, dir, 8*testChunk)
			if v := e2.Format().Version; v != c.version {
				t.Errorf("after reopening: format version %d, want %d", v, c.version)
			}
			h2, err := e2.OpenFile(ctx, h.Ino())
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, h2); !bytes.Equal(got, data) {
				t.Errorf("read back %d bytes, not what was written", len(got))
			}
			if err := h2.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if rep, err := e2.Fsck(ctx, FsckOptions{}); err != nil || len(rep.Problems) != 0 {
				t.Errorf("fsck: %v, %+v", err, rep)
			}
		})
	}
}

// makeOldStore makes an empty store in dir as a pfs writing that format
// version would have: its format.json says so, and objects/ is empty.
func makeOldStore(t *testing.T, dir string, version int) {
	t.Helper()
	e := openTest(t, dir, 8*testChunk)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	f := e.Format()
	f.Version = version
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, formatFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	objects := filepath.Join(dir, objectsDir)
	if err := os.RemoveAll(objects); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(objects, 0o700); err != nil {
		t.Fatal(err)
	}
}
