package registry

import (
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// Views share one read-only Badger transaction while no commit has
// happened since it began. Each Badger transaction marks its read
// timestamp in the oracle on begin and end, two hand-offs to Badger's
// watermark goroutine that wake it, and a begin waits for that watermark.
// A cold tar of the Go tree makes ~50 000 views with no commit between
// them (a stat, an open and a read per file, besides the listings); on the
// benchmark's VM, where waking a thread is dear, sharing one transaction
// took the daemon's CPU from 5.5 to 4.9 s. A read-only transaction only
// reads Badger's immutable structures, so views can use it concurrently.
//
// A view sees every commit that returned before it began: a commit bumps
// gen after Badger applied it, and a view takes the shared transaction only
// if gen has not moved since the transaction began.
type snapshots struct {
	db  *badger.DB
	gen uint64 // bumped after every commit attempt that may have written

	mu  sync.Mutex // protects gen, cur and every snapshot's refs
	cur *snapshot  // the newest shared transaction; nil after a commit
}

type snapshot struct {
	txn  *badger.Txn
	gen  uint64
	refs int

	// inodes holds the inodes read through this snapshot, which never
	// change: a cold tar reads each file's inode for its directory's
	// listing, its open and its fstat. A commit retires the snapshot and
	// them with it. Cleared when full, as reads of an inode come close
	// together.
	mu     sync.Mutex
	inodes map[Ino]Inode
}

// maxMemoInodes bounds a snapshot's inodes (~100 bytes each).
const maxMemoInodes = 8192

func (sn *snapshot) inode(ino Ino) (Inode, bool) {
	sn.mu.Lock()
	in, ok := sn.inodes[ino]
	sn.mu.Unlock()
	return in, ok
}

func (sn *snapshot) keepInode(in *Inode) {
	sn.mu.Lock()
	if sn.inodes == nil || len(sn.inodes) >= maxMemoInodes {
		sn.inodes = make(map[Ino]Inode)
	}
	sn.inodes[in.Ino] = *in
	sn.mu.Unlock()
}

// acquire returns a snapshot taken after every commit that has returned.
func (s *snapshots) acquire() *snapshot {
	s.mu.Lock()
	if c := s.cur; c != nil && c.gen == s.gen {
		c.refs++
		s.mu.Unlock()
		return c
	}
	gen := s.gen
	s.mu.Unlock()
	// Begin outside the lock: it waits for Badger's commit watermark.
	// Another view may have installed one meanwhile, or a commit made
	// this one stale: then it serves this view alone (see release).
	n := &snapshot{txn: s.db.NewTransaction(false), gen: gen, refs: 1}
	s.mu.Lock()
	if gen == s.gen && s.cur == nil {
		s.cur = n
	}
	s.mu.Unlock()
	return n
}

// release ends a view's use of sn; the last user of a snapshot that is no
// longer current discards it.
func (s *snapshots) release(sn *snapshot) {
	s.mu.Lock()
	sn.refs--
	done := sn.refs == 0 && s.cur != sn
	s.mu.Unlock()
	if done {
		sn.txn.Discard()
	}
}

// committed records a commit. An idle current snapshot is discarded at
// once: while it lived, Badger could not forget the commits after its read
// timestamp (the oracle keeps each one's conflict keys) nor drop the
// versions they replaced in compaction.
func (s *snapshots) committed() {
	var drop *snapshot
	s.mu.Lock()
	s.gen++
	if c := s.cur; c != nil {
		if c.refs == 0 {
			drop = c
		}
		s.cur = nil
	}
	s.mu.Unlock()
	if drop != nil {
		drop.txn.Discard()
	}
}

// close discards the idle current snapshot before the database closes.
func (s *snapshots) close() {
	s.committed()
}
