package registry

import (
	"context"
	"fmt"
	"sync"
)

// inodeCacheSize bounds the inode cache: about 150 bytes an entry, so at
// most ~1.2 MiB. Metadata-heavy work touches a few inodes at a time (the
// file being written and its directory), which a small cache holds.
const inodeCacheSize = 8192

// inodeStripes is the number of generation counters; an inode's counter is
// gens[ino%inodeStripes].
const inodeStripes = 64

// inodeCache keeps inodes recently read with Registry.Inode. A Badger
// transaction, even a read-only one, costs four sends to Badger's watermark
// goroutines and wakes them; stat, setattr and open each read an inode, and
// during an untar those reads were a third of the daemon's transactions.
//
// Every commit that wrote an inode drops it after the commit and before
// Update returns. A read that a commit raced could have seen the state
// before it, so a read stores what it found only if no commit touched its
// stripe since the read began (gens).
type inodeCache struct {
	mu   sync.Mutex
	m    map[Ino]Inode
	gens [inodeStripes]uint64
}

func newInodeCache() *inodeCache {
	return &inodeCache{m: make(map[Ino]Inode)}
}

// get returns a copy of the cached inode, or the generation a read of it
// must present to store.
func (c *inodeCache) get(ino Ino) (in *Inode, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.m[ino]; ok {
		return &v, 0
	}
	return nil, c.gens[ino%inodeStripes]
}

// put stores in if no commit wrote its stripe since gen was taken.
func (c *inodeCache) put(in *Inode, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gens[in.Ino%inodeStripes] != gen {
		return
	}
	if len(c.m) >= inodeCacheSize {
		for k := range c.m { // Go picks a random start: random eviction
			delete(c.m, k)
			break
		}
	}
	c.m[in.Ino] = *in
}

// drop forgets inos and fails the stores of reads in flight on them.
func (c *inodeCache) drop(inos []Ino) {
	if len(inos) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ino := range inos {
		c.gens[ino%inodeStripes]++
		delete(c.m, ino)
	}
}

// Inode returns inode ino, or an error wrapping ErrNotFound, as a View
// calling Tx.GetInode would, served from a cache when it can be. The
// result is the caller's to change.
func (r *Registry) Inode(ctx context.Context, ino Ino) (*Inode, error) {
	in, gen := r.inodes.get(ino)
	if in != nil {
		return in, nil
	}
	err := r.View(ctx, func(tx *Tx) error {
		var err error
		in, err = tx.GetInode(ino)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	r.inodes.put(in, gen)
	return in, nil
}
