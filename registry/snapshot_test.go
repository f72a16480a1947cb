package registry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestViewSeesEveryCommit has writers each read back their own commit in a
// view at once, while readers keep shared snapshots in use: a view handed
// a snapshot older than a commit that returned, or an inode remembered
// from one, reads the previous value.
func TestViewSeesEveryCommit(t *testing.T) {
	r := newRegistry(t)
	ctx := context.Background()
	stop := make(chan struct{})
	var readers, writers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := r.View(ctx, func(tx *Tx) error {
					for w := range 4 {
						if _, err := tx.GetInode(Ino(100 + w)); err != nil && !errors.Is(err, ErrNotFound) {
							return err
						}
					}
					_, err := tx.GetInode(RootIno)
					return err
				}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for w := range 4 {
		writers.Go(func() {
			key := fmt.Sprintf("w%d", w)
			for i := range 300 {
				want := strconv.Itoa(i)
				ino := Ino(100 + w)
				if err := r.Update(ctx, func(tx *Tx) error {
					if err := tx.PutInode(&Inode{Ino: ino, Mode: 0o100644, Nlink: 1, Size: uint64(i)}); err != nil {
						return err
					}
					return tx.PutBlob(key, []byte(want))
				}); err != nil {
					t.Error(err)
					return
				}
				var got []byte
				var in *Inode
				if err := r.View(ctx, func(tx *Tx) (err error) {
					if in, err = tx.GetInode(ino); err != nil {
						return err
					}
					got, err = tx.GetBlob(key)
					return err
				}); err != nil {
					t.Error(err)
					return
				}
				if string(got) != want || in.Size != uint64(i) {
					t.Errorf("%s: view after commit %s read %q and size %d", key, want, got, in.Size)
					return
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()
}

// TestSnapshotLifetime checks that views share a transaction until a
// commit, that a commit discards an idle one at once (an open Badger read
// transaction holds back the oracle's cleanup and compaction), and that one
// in use at the commit lives until its last view ends.
func TestSnapshotLifetime(t *testing.T) {
	r := newRegistry(t)
	ctx := context.Background()
	discarded := func(sn *snapshot) bool {
		_, err := sn.txn.Get(inodeKey(RootIno))
		return errors.Is(err, badger.ErrDiscardedTxn)
	}
	commit := func() {
		t.Helper()
		if err := r.Update(ctx, func(tx *Tx) error { return tx.PutBlob("k", []byte("v")) }); err != nil {
			t.Fatal(err)
		}
	}

	a := r.views.acquire()
	b := r.views.acquire()
	if a != b {
		t.Fatal("two views with no commit between them took two transactions")
	}
	r.views.release(a)
	r.views.release(b)
	if discarded(a) {
		t.Fatal("the current snapshot was discarded when its views ended")
	}
	commit()
	if !discarded(a) {
		t.Fatal("an idle snapshot outlived a commit")
	}

	c := r.views.acquire()
	if c == a {
		t.Fatal("a view after a commit took the snapshot from before it")
	}
	commit()
	if discarded(c) {
		t.Fatal("a commit discarded a snapshot still in use")
	}
	d := r.views.acquire()
	if d == c {
		t.Fatal("a view after a commit took the snapshot from before it")
	}
	r.views.release(c)
	if !discarded(c) {
		t.Fatal("a replaced snapshot outlived its last view")
	}
	r.views.release(d)
	if discarded(d) {
		t.Fatal("the current snapshot was discarded when its view ended")
	}
}

// TestSnapshotInodes checks that an inode read twice through one snapshot
// is read from Badger once, and that a caller changing the copy it got
// does not change what the next view reads.
func TestSnapshotInodes(t *testing.T) {
	r := newRegistry(t)
	ctx := context.Background()
	var first, second *Inode
	view(t, r, func(tx *Tx) (err error) {
		first, err = tx.GetInode(RootIno)
		return err
	})
	sn := r.views.acquire()
	defer r.views.release(sn)
	if _, ok := sn.inode(RootIno); !ok {
		t.Fatal("an inode read in a view is not kept with its snapshot")
	}
	first.Mode, first.Size = 0, 12345
	view(t, r, func(tx *Tx) (err error) {
		second, err = tx.GetInode(RootIno)
		return err
	})
	if second.Size == 12345 || second.Mode == 0 {
		t.Fatalf("a change to a returned inode reached the next view: %+v", second)
	}
	if err := r.Update(ctx, func(tx *Tx) error { return tx.PutBlob("k", nil) }); err != nil {
		t.Fatal(err)
	}
	next := r.views.acquire()
	defer r.views.release(next)
	if _, ok := next.inode(RootIno); ok {
		t.Fatal("a snapshot taken after a commit starts with inodes read before it")
	}
}
