package engine

import (
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
