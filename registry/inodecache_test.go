package registry

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

func putSize(t *testing.T, r *Registry, ino Ino, size uint64) {
	t.Helper()
	update(t, r, func(tx *Tx) error {
		return tx.PutInode(&Inode{Ino: ino, Mode: 0o100644, Nlink: 1, Size: size})
	})
}

func inodeSize(t *testing.T, r *Registry, ino Ino) uint64 {
	t.Helper()
	in, err := r.Inode(context.Background(), ino)
	if err != nil {
		t.Fatal(err)
	}
	return in.Size
}

// A commit that writes an inode is seen by the next Inode, whether it
// wrote, replaced or deleted it, and a caller changing its copy changes
// nothing else.
func TestInodeCacheFollowsCommits(t *testing.T) {
	r := newRegistry(t)
	ctx := context.Background()
	putSize(t, r, 5, 1)
	if got := inodeSize(t, r, 5); got != 1 {
		t.Fatalf("size %d, want 1", got)
	}
	in, _ := r.Inode(ctx, 5) // cached now
	in.Size = 99
	if got := inodeSize(t, r, 5); got != 1 {
		t.Errorf("a caller's change to its copy reached the cache: size %d, want 1", got)
	}
	putSize(t, r, 5, 2)
	if got := inodeSize(t, r, 5); got != 2 {
		t.Errorf("after a commit wrote size 2, Inode says %d", got)
	}
	update(t, r, func(tx *Tx) error { return tx.DeleteInode(5) })
	if _, err := r.Inode(ctx, 5); !errors.Is(err, ErrNotFound) {
		t.Errorf("after the inode was deleted, Inode = %v; want ErrNotFound", err)
	}
	// A transaction that fails writes nothing and leaves the cache right.
	putSize(t, r, 6, 1)
	_ = inodeSize(t, r, 6)
	boom := errors.New("boom")
	if err := r.Update(ctx, func(tx *Tx) error {
		if err := tx.PutInode(&Inode{Ino: 6, Size: 7}); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if got := inodeSize(t, r, 6); got != 1 {
		t.Errorf("after a failed transaction, size %d, want 1", got)
	}
}

// A read that began before a commit may have read the state before it; it
// must not store that after the commit dropped the inode.
func TestInodeCacheRacingRead(t *testing.T) {
	r := newRegistry(t)
	putSize(t, r, 5, 1)
	_, gen := r.inodes.get(5) // a read begins
	stale := &Inode{Ino: 5, Mode: 0o100644, Nlink: 1, Size: 1}
	putSize(t, r, 5, 2) // a commit lands meanwhile
	r.inodes.put(stale, gen)
	if got := inodeSize(t, r, 5); got != 2 {
		t.Errorf("a read that raced a commit stored what it read: size %d, want 2", got)
	}
}

// Concurrent writers and readers: a read never returns a state older than
// one whose commit had returned before the read began.
func TestInodeCacheLinearizable(t *testing.T) {
	r := newRegistry(t)
	const inos, writes = 4, 300
	var done [inos]atomic.Uint64
	for ino := range Ino(inos) {
		putSize(t, r, 100+ino, 0)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for ino := range Ino(inos) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= writes; i++ {
				if err := r.Update(context.Background(), func(tx *Tx) error {
					return tx.PutInode(&Inode{Ino: 100 + ino, Mode: 0o100644, Nlink: 1, Size: i})
				}); err != nil {
					t.Error(err)
					return
				}
				done[ino].Store(i)
			}
		}()
	}
	var readers sync.WaitGroup
	var stale atomic.Int64
	for range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				ino := Ino(n % inos)
				min := done[ino].Load()
				in, err := r.Inode(context.Background(), 100+ino)
				if err != nil {
					t.Error(err)
					return
				}
				if in.Size < min {
					stale.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if n := stale.Load(); n > 0 {
		t.Errorf("%d reads returned a size older than a commit that had returned before them", n)
	}
	for ino := range Ino(inos) {
		if got := inodeSize(t, r, 100+ino); got != writes {
			t.Errorf("inode %d: size %d after all writes, want %d", 100+ino, got, writes)
		}
	}
}

// The cache stays within its bound.
func TestInodeCacheBounded(t *testing.T) {
	c := newInodeCache()
	for i := range Ino(2 * inodeCacheSize) {
		_, gen := c.get(i)
		c.put(&Inode{Ino: i}, gen)
	}
	if n := len(c.m); n > inodeCacheSize {
		t.Errorf("%d inodes cached, bound %d", n, inodeCacheSize)
	}
}
