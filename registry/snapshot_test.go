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
// a snapshot older than a commit that returned reads the previous value.
func TestViewSeesEveryCommit(t *testing.T) {
	r, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
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
				if err := r.Update(ctx, func(tx *Tx) error { return tx.PutBlob(key, []byte(want)) }); err != nil {
					t.Error(err)
					return
				}
				var got []byte
				if err := r.View(ctx, func(tx *Tx) (err error) {
					got, err = tx.GetBlob(key)
					return err
				}); err != nil {
					t.Error(err)
					return
				}
				if string(got) != want {
					t.Errorf("%s: view after commit %s read %q", key, want, got)
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
	r, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
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
