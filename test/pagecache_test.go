package test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommitKeepsPageCache: pfs is the only writer of its store and every
// change of a file's bytes goes through the mount, so the kernel keeps a
// file's cached pages when its own writes move the mtime. A database
// rereads its header after every commit; with the kernel's automatic
// invalidation each of those was a READ to the daemon. The bytes read
// must still be the ones written, also after a truncate that shrinks the
// file and a write that grows it again.
func TestCommitKeepsPageCache(t *testing.T) {
	mnt, store := mountPfs(t, "--debug")
	path := filepath.Join(mnt, "db")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB, four pages
	if _, err := f.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	reads := func() int {
		t.Helper()
		log, err := os.ReadFile(filepath.Join(store, "pfs.log"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(log), ": READ ")
	}
	before := reads()
	const commits = 20
	hdr := make([]byte, 16)
	for i := range commits {
		page := bytes.Repeat([]byte{byte('A' + i)}, 4096)
		if _, err := f.WriteAt(page, 8192); err != nil {
			t.Fatal(err)
		}
		copy(want[8192:], page)
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Stat(); err != nil { // the new mtime reaches the kernel
			t.Fatal(err)
		}
		if _, err := f.ReadAt(hdr, 24); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(hdr, want[24:40]) {
			t.Fatalf("commit %d: header read %q, want %q", i, hdr, want[24:40])
		}
	}
	if n := reads() - before; n > 1 {
		t.Errorf("%d READ requests reached the daemon for %d header reads between commits, want at most 1", n, commits)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the file read back differs from what was written")
	}

	// Shrink, then grow with a write past the old end: the cut pages
	// read as zeros, not as their old cached bytes.
	if err := f.Truncate(4096); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("tail"), 16380); err != nil {
		t.Fatal(err)
	}
	clear(want[4096:])
	copy(want[16380:], "tail")
	if got, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("after truncate and regrow the file reads old bytes")
	}
}
