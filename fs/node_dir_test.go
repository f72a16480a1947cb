package fs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/pfs-project/pfs/engine"
)

// TestDirHandleSeek lists a directory of several pages through dirHandle
// directly (no mount) and seeks to every offset in random order: each
// seek must resume at exactly the entry after that offset.
func TestDirHandleSeek(t *testing.T) {
	ctx := context.Background()
	cfg := engine.DefaultConfig(t.TempDir())
	cfg.Memory = 64 << 20
	e, err := engine.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	const count = 3*dirPage + 17
	for i := range count {
		if _, err := e.Create(ctx, engine.RootIno, fmt.Sprintf("f%05d", i), syscall.S_IFREG|0644, 0, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	root := &Node{fsys: &fsys{e: e}, ino: engine.RootIno}

	d := &dirHandle{n: root}
	var all []fuse.DirEntry
	for {
		de, errno := d.Readdirent(ctx)
		if errno != 0 {
			t.Fatal(errno)
		}
		if de == nil {
			break
		}
		all = append(all, *de)
	}
	if len(all) != count+2 || all[0].Name != "." || all[1].Name != ".." || all[2].Name != "f00000" {
		t.Fatalf("listing: %d entries, want %d starting with . .. f00000", len(all), count+2)
	}
	for i, de := range all {
		if de.Off != uint64(i+1) {
			t.Fatalf("entry %d (%s): Off %d, want %d", i, de.Name, de.Off, i+1)
		}
	}

	// A fresh handle, so seeks backwards use marks recorded on the way.
	d = &dirHandle{n: root}
	for _, i := range rand.Perm(len(all) + 1) {
		if errno := d.Seekdir(ctx, uint64(i)); errno != 0 {
			t.Fatalf("Seekdir(%d): %v", i, errno)
		}
		de, errno := d.Readdirent(ctx)
		if errno != 0 {
			t.Fatalf("Readdirent after Seekdir(%d): %v", i, errno)
		}
		if i == len(all) {
			if de != nil {
				t.Errorf("Seekdir(end): got %q, want end", de.Name)
			}
			continue
		}
		if de == nil || de.Name != all[i].Name || de.Off != all[i].Off {
			t.Errorf("Seekdir(%d): got %v, want %v", i, de, all[i])
		}
	}
}

// TestIgnoresInterrupt calls handlers with the context of an interrupted
// request: they must still do the work, not fail with EINTR (see
// "Interrupts" in the package comment).
func TestIgnoresInterrupt(t *testing.T) {
	cfg := engine.DefaultConfig(t.TempDir())
	cfg.Memory = 64 << 20
	e, err := engine.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	root := &Node{fsys: &fsys{e: e}, ino: engine.RootIno}

	cancel := make(chan struct{})
	close(cancel)
	ctx := &fuse.Context{Caller: fuse.Caller{Owner: fuse.Owner{Uid: 0, Gid: 0}}, Cancel: cancel}
	if ctx.Err() == nil {
		t.Fatal("context not canceled")
	}
	if errno := root.Setxattr(ctx, "user.a", []byte("b"), 0); errno != 0 {
		t.Errorf("Setxattr: %v", errno)
	}
	if _, errno := root.Getxattr(ctx, "user.a", make([]byte, 10)); errno != 0 {
		t.Errorf("Getxattr: %v", errno)
	}
	var out fuse.AttrOut
	if errno := root.Getattr(ctx, nil, &out); errno != 0 {
		t.Errorf("Getattr: %v", errno)
	}
	d := &dirHandle{n: root}
	if de, errno := d.Readdirent(ctx); errno != 0 || de == nil {
		t.Errorf("Readdirent: %v, %v", de, errno)
	}
}
