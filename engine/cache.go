package engine

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/pfs-project/pfs/chunkstore"
	"github.com/pfs-project/pfs/registry"
)

// cacheTag identifies which committed version of a chunk an entry holds:
// the file's per-chunk commit counter and truncate counter when the load
// started. A reader whose tag differs reloads.
type cacheTag struct{ ver, epoch uint64 }

type cacheKey struct {
	ino Ino
	idx uint64
}

// cacheEntry is one chunk's committed content. data may be shorter than a
// chunk (the rest reads as zeros) or nil (a hole).
type cacheEntry struct {
	key   cacheKey
	tag   cacheTag
	data  []byte
	mem   int64         // bytes of the memory cap it holds
	pins  int           // readers copying out of data right now
	ready chan struct{} // closed when loaded (err set on failure)
	err   error
	elem  *list.Element // in lru when ready and unpinned-evictable
	gone  bool          // removed from the map; free when unpinned
	seq   int           // bytes of data sequential readers have copied out
}

// chunkCache holds recently read chunks under the memory cap. It gives
// memory back before writers are made to wait: Memory's reclaim hook calls
// evict, and a new entry evicts old ones while someone is waiting.
type chunkCache struct {
	e *Engine

	mu  sync.Mutex // protects the following
	m   map[cacheKey]*cacheEntry
	lru *list.List // front = most recently unpinned; ready, unpinned entries only
}

func newChunkCache(e *Engine) *chunkCache {
	return &chunkCache{e: e, m: map[cacheKey]*cacheEntry{}, lru: list.New()}
}

// get returns the chunk pinned; the caller must unpin it.
func (c *chunkCache) get(ctx context.Context, ino Ino, idx uint64, tag cacheTag) (*cacheEntry, error) {
	k := cacheKey{ino, idx}
	for {
		c.mu.Lock()
		ent := c.m[k]
		if ent != nil && ent.tag == tag {
			// A pinned entry leaves the LRU list: evict takes only what
			// nobody is copying out of, and the last unpin puts it back.
			ent.pins++
			if ent.elem != nil {
				c.lru.Remove(ent.elem)
				ent.elem = nil
			}
			c.mu.Unlock()
			select {
			case <-ent.ready:
			case <-ctx.Done():
				c.unpin(ent)
				return nil, ctx.Err()
			}
			if ent.err != nil {
				c.unpin(ent)
				if errors.Is(ent.err, errNoMemory) {
					continue // joined a read-ahead that gave up; load it ourselves
				}
				return nil, ent.err
			}
			return ent, nil
		}
		if ent != nil {
			c.removeLocked(ent)
		}
		ent = &cacheEntry{key: k, tag: tag, pins: 1, ready: make(chan struct{})}
		c.m[k] = ent
		c.mu.Unlock()
		c.fill(ctx, ent, true)
		if ent.err != nil {
			c.unpin(ent)
			return nil, ent.err
		}
		return ent, nil
	}
}

// prefetch loads a chunk in the background unless it is cached or loading.
func (c *chunkCache) prefetch(ino Ino, idx uint64, tag cacheTag) {
	k := cacheKey{ino, idx}
	c.mu.Lock()
	if ent := c.m[k]; ent != nil && ent.tag == tag {
		c.mu.Unlock()
		return
	}
	if ent := c.m[k]; ent != nil {
		c.removeLocked(ent)
	}
	ent := &cacheEntry{key: k, tag: tag, pins: 1, ready: make(chan struct{})}
	c.m[k] = ent
	c.mu.Unlock()
	c.e.bg.Add(1)
	go func() {
		defer c.e.bg.Done()
		c.fill(c.e.bgCtx, ent, false)
		c.unpin(ent)
	}()
}

// fill loads ent's chunk. With wait false (read-ahead) it gives up rather
// than wait for memory.
func (c *chunkCache) fill(ctx context.Context, ent *cacheEntry, wait bool) {
	data, mem, err := c.e.loadChunk(ctx, ent.key.ino, ent.key.idx, wait)
	c.mu.Lock()
	ent.data, ent.mem, ent.err = data, mem, err
	if err != nil {
		if c.m[ent.key] == ent {
			delete(c.m, ent.key)
		}
		ent.gone = true
	}
	c.mu.Unlock()
	close(ent.ready)
	if c.e.mem.Waiting() {
		c.evict(c.e.chunkSize)
	}
}

// unpin releases a pin; an entry no longer pinned becomes evictable.
func (c *chunkCache) unpin(ent *cacheEntry) { c.release(ent, 0) }

// release is unpin for a reader that copied seq bytes out of ent as part of
// a sequential read. Once sequential reads have taken as many bytes as the
// chunk holds, the chunk goes to the evicting end of the LRU list rather
// than the front: a file streamed through the cache then pushes out its own
// chunks first, not the ones random readers come back to. It stays cached
// until memory is needed: the kernel's page cache has its pages, but not
// always all of them (on the benchmark's VM a reclaimer pages out single
// pages of files read seconds ago), and a page the kernel asks for again
// would otherwise cost loading and verifying the whole part.
//
// A small chunk (a small file's, cached at its size) read through is
// freed at once instead: loading it again costs a registry read, and
// keeping it grew the heap by every small file read (a cold tar of the Go
// tree cached 11 000 of them, ~150 MB of fresh pages at 5-15 µs of page
// fault each on the benchmark's VM: tar medians 4.77 -> 4.05 s, daemon
// CPU 4.29 -> 3.52 s, four interleaved rounds).
func (c *chunkCache) release(ent *cacheEntry, seq int) {
	c.mu.Lock()
	ent.pins--
	ent.seq += seq
	var free *cacheEntry
	if ent.pins == 0 {
		select {
		case <-ent.ready:
			switch {
			case ent.gone:
				free = ent
			case ent.elem != nil:
			case ent.seq > 0 && ent.seq >= len(ent.data) && ent.mem < c.e.chunkSize:
				c.removeLocked(ent) // not on the LRU list: leaves the free to us
				free = ent
			case ent.seq > 0 && ent.seq >= len(ent.data):
				ent.elem = c.lru.PushBack(ent)
			default:
				ent.elem = c.lru.PushFront(ent)
			}
		default:
		}
	}
	c.mu.Unlock()
	if free != nil {
		c.free(free)
	}
	if c.e.mem.Waiting() {
		c.evict(c.e.chunkSize)
	}
}

// removeLocked drops ent from the map; its memory is freed now if nobody
// holds it, else on the last unpin. Caller holds c.mu.
func (c *chunkCache) removeLocked(ent *cacheEntry) {
	if c.m[ent.key] == ent {
		delete(c.m, ent.key)
	}
	ent.gone = true
	if ent.elem != nil {
		c.lru.Remove(ent.elem)
		ent.elem = nil
		if ent.pins == 0 {
			go c.free(ent) // free takes Memory's lock; not under c.mu
		}
	}
}

func (c *chunkCache) free(ent *cacheEntry) {
	if ent.mem > 0 {
		c.e.putChunkData(ent.data, ent.mem)
		ent.data, ent.mem = nil, 0
	}
}

// evict frees unpinned entries, least recently used first, until need
// bytes came back or nothing evictable is left. It returns bytes freed.
func (c *chunkCache) evict(need int64) int64 {
	var victims []*cacheEntry
	var freed int64
	c.mu.Lock()
	for freed < need {
		back := c.lru.Back()
		if back == nil {
			break
		}
		ent := back.Value.(*cacheEntry)
		c.lru.Remove(back)
		ent.elem = nil
		if c.m[ent.key] == ent {
			delete(c.m, ent.key)
		}
		ent.gone = true
		freed += ent.mem
		victims = append(victims, ent)
	}
	c.mu.Unlock()
	for _, ent := range victims {
		c.free(ent)
	}
	return freed
}

// apply writes the ranges of dc (clipped at clip) that a flush just
// committed into the cached chunk idx of ino, and moves its tag from old to
// now. It reports whether the cache is now current: true also when nothing
// is cached. It declines (false: the caller drops the entry) when the entry
// is of another version, loading, pinned by a reader copying out of it, not
// a buffer of its own, or too short for the ranges and not a whole
// chunk's buffer.
func (c *chunkCache) apply(ino Ino, idx uint64, old, now cacheTag, dc *dirtyChunk, clip int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ent := c.m[cacheKey{ino, idx}]
	if ent == nil {
		return true
	}
	select {
	case <-ent.ready:
	default:
		return false
	}
	if ent.tag != old || ent.pins > 0 || ent.err != nil || ent.mem == 0 || ent.gone {
		return false
	}
	top := len(ent.data)
	for _, iv := range dc.ivs {
		if end := min(iv.end, clip); iv.start < end {
			top = max(top, end)
		}
	}
	if top > len(ent.data) {
		// A write past the cached end (a growing file): the buffer is a
		// whole chunk's, already counted in full; bytes between the old
		// end and the write read as zeros.
		if ent.mem != c.e.chunkSize || cap(ent.data) < top {
			return false
		}
		n := len(ent.data)
		ent.data = ent.data[:top]
		clear(ent.data[n:])
	}
	for _, iv := range dc.ivs {
		if end := min(iv.end, clip); iv.start < end {
			copy(ent.data[iv.start:end], dc.buf[iv.start:end])
		}
	}
	ent.tag = now
	return true
}

// dropFile forgets cached chunks of ino from index from on.
func (c *chunkCache) dropFile(ino Ino, from uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, ent := range c.m {
		if k.ino == ino && k.idx >= from {
			c.removeLocked(ent)
		}
	}
}

// loadChunk assembles the committed content of a chunk from its slices,
// loading and verifying each part. It returns the content, the bytes of the
// memory cap it holds, and on a bad part an error naming file, offset and
// part (and marks the part corrupt).
func (e *Engine) loadChunk(ctx context.Context, ino Ino, idx uint64, wait bool) ([]byte, int64, error) {
	data, mem, _, err := e.loadChunkMap(ctx, ino, idx, wait)
	return data, mem, err
}

// loadChunkMap is loadChunk that also returns the chunk map the content
// was assembled from.
func (e *Engine) loadChunkMap(ctx context.Context, ino Ino, idx uint64, wait bool) ([]byte, int64, registry.Chunk, error) {
	for attempt := 0; ; attempt++ {
		data, mem, ch, err := e.loadChunkOnce(ctx, ino, idx, wait)
		if err == nil || !errors.Is(err, chunkstore.ErrNotFound) || attempt == 3 {
			return data, mem, ch, err
		}
		// A commit may have replaced the chunk's map and deleted the part
		// between our read of the map and the load: only a part that is
		// still in the current map is really missing.
		var now registry.Chunk
		if verr := e.reg.View(ctx, func(tx *registry.Tx) error {
			var err error
			now, err = tx.GetChunk(ino, idx)
			return err
		}); verr != nil || sameChunk(now, ch) {
			return nil, 0, nil, e.reportMissing(ctx, err)
		}
	}
}

// missingPart carries a missing part's details from loadChunkOnce to the
// caller, which logs it only once it knows the part is really gone.
type missingPart struct {
	ino Ino
	idx uint64
	s   registry.Slice
	p   *registry.Part
	err error
}

func (m *missingPart) Error() string { return m.err.Error() }
func (m *missingPart) Unwrap() error { return m.err }

func (e *Engine) reportMissing(ctx context.Context, err error) error {
	var m *missingPart
	if errors.As(err, &m) {
		return e.partFailed(ctx, m.ino, m.idx, m.s, m.p, m.err)
	}
	return err
}

// chunkParts reads chunk idx of ino and the records of the parts its
// slices name, in one snapshot. With blobs non-nil it also reads there the
// bytes of the parts kept in the registry, saving each its own read.
func (e *Engine) chunkParts(ctx context.Context, ino Ino, idx uint64, blobs map[[16]byte][]byte) (registry.Chunk, map[[16]byte]*registry.Part, error) {
	var ch registry.Chunk
	parts := map[[16]byte]*registry.Part{}
	err := e.reg.View(ctx, func(tx *registry.Tx) error {
		var err error
		if ch, err = tx.GetChunk(ino, idx); err != nil {
			return err
		}
		for _, s := range ch {
			if parts[s.Part] != nil {
				continue
			}
			p, err := tx.GetPart(s.Part)
			if err != nil {
				return fmt.Errorf("chunk %d: part %s: %w", idx, s.Part, err)
			}
			parts[s.Part] = p
			if blobs != nil && p.Size <= inlineMax {
				// Not found: in the backend after all; loadPart reads it
				// there.
				if b, err := tx.GetBlob(p.Key); err == nil {
					blobs[s.Part] = b
				} else if !errors.Is(err, registry.ErrNotFound) {
					return err
				}
			}
		}
		return nil
	})
	return ch, parts, err
}

// loadPart returns part p's verified plain bytes: from blob when
// chunkParts read it, else from the store (into dst if it fits). A blob
// that fails verification is read again from the store, as Load retries.
func (e *Engine) loadPart(ctx context.Context, p *registry.Part, blob, dst []byte) ([]byte, error) {
	meta := partMeta(p)
	if blob != nil {
		data, err := e.cs.Decode(ctx, meta, blob)
		if err == nil || !errors.Is(err, chunkstore.ErrChecksum) {
			return data, err
		}
	}
	if dst != nil {
		return e.cs.LoadInto(ctx, meta, dst)
	}
	return e.cs.Load(ctx, meta)
}

func (e *Engine) loadChunkOnce(ctx context.Context, ino Ino, idx uint64, wait bool) ([]byte, int64, registry.Chunk, error) {
	blobs := map[[16]byte][]byte{}
	ch, parts, err := e.chunkParts(ctx, ino, idx, blobs)
	if err != nil {
		return nil, 0, nil, err
	}
	if len(ch) == 0 {
		return nil, 0, nil, nil
	}
	end := 0
	for _, s := range ch {
		end = max(end, int(s.Off+s.Len))
	}
	// A chunk with little content (a small file) gets a buffer of its
	// size, counted at its size: a chunk-sized one would let the cache hold
	// only cap/chunk-size small files, and keep the heap at the memory
	// limit, where the Go runtime collects garbage without pause.
	var buf []byte
	mem := e.chunkSize
	switch {
	case int64(end) <= e.chunkSize/8:
		mem = int64(end)
		if wait {
			if err := e.mem.Acquire(ctx, mem); err != nil {
				return nil, 0, nil, err
			}
		} else if !e.mem.TryAcquire(mem) {
			return nil, 0, nil, errNoMemory
		}
		buf = make([]byte, end)
	case wait:
		if buf, err = e.getBuf(ctx); err != nil {
			return nil, 0, nil, err
		}
	default:
		if buf = e.tryGetBuf(); buf == nil {
			return nil, 0, nil, errNoMemory
		}
	}
	if len(ch) == 1 && ch[0].PartOff == 0 && ch[0].Off == 0 {
		// The common case (a chunk written in one go): the part is the
		// chunk, read straight into the cache's buffer.
		s, p := ch[0], parts[ch[0].Part]
		data, err := e.loadPart(ctx, p, blobs[s.Part], buf)
		if err == nil && int(s.Len) > len(data) {
			err = fmt.Errorf("part %s: slice of %d bytes beyond its %d bytes: %w", p.Key, s.Len, len(data), chunkstore.ErrChecksum)
		}
		if err != nil {
			e.putChunkData(buf, mem)
			if errors.Is(err, chunkstore.ErrNotFound) {
				return nil, 0, ch, &missingPart{ino, idx, s, p, err}
			}
			return nil, 0, ch, e.partFailed(ctx, ino, idx, s, p, err)
		}
		if &data[0] != &buf[0] {
			copy(buf[:s.Len], data[:s.Len]) // compressed, or a backend that allocates
		}
		return buf[:s.Len], mem, ch, nil
	}
	buf = buf[:end]
	clear(buf)
	loaded := map[[16]byte][]byte{}
	for _, s := range ch {
		data, ok := loaded[s.Part]
		if !ok {
			p := parts[s.Part]
			data, err = e.loadPart(ctx, p, blobs[s.Part], nil)
			if err != nil {
				e.putChunkData(buf, mem)
				if errors.Is(err, chunkstore.ErrNotFound) {
					return nil, 0, ch, &missingPart{ino, idx, s, p, err}
				}
				return nil, 0, ch, e.partFailed(ctx, ino, idx, s, p, err)
			}
			if int(s.PartOff+s.Len) > len(data) {
				e.putChunkData(buf, mem)
				return nil, 0, ch, e.partFailed(ctx, ino, idx, s, p,
					fmt.Errorf("part %s: slice %d+%d beyond its %d bytes: %w", p.Key, s.PartOff, s.Len, len(data), chunkstore.ErrChecksum))
			}
			loaded[s.Part] = data
		}
		copy(buf[s.Off:s.Off+s.Len], data[s.PartOff:s.PartOff+s.Len])
	}
	return buf, mem, ch, nil
}

// errNoMemory tells read-ahead that the cap was full; it is never returned
// to a reader.
var errNoMemory = errors.New("no memory for read-ahead")

// putChunkData returns a chunk buffer held by the cache.
func (e *Engine) putChunkData(b []byte, mem int64) {
	if mem == e.chunkSize && cap(b) == int(e.chunkSize) {
		e.putBuf(b)
		return
	}
	e.mem.Release(mem)
}

// partFailed logs a failed part load with file, offset and part, marks the
// part corrupt when its bytes were wrong, and returns the error to give
// the reader.
func (e *Engine) partFailed(ctx context.Context, ino Ino, idx uint64, s registry.Slice, p *registry.Part, err error) error {
	off := int64(idx)*e.chunkSize + int64(s.Off)
	if errors.Is(err, context.Canceled) {
		return err
	}
	e.log.Error("part failed to load: the range reads as EIO", "ino", ino, "offset", off, "length", s.Len, "part", p.Key, "err", err)
	if errors.Is(err, chunkstore.ErrChecksum) || errors.Is(err, chunkstore.ErrNotFound) {
		if uerr := e.reg.Update(ctx, func(tx *registry.Tx) error {
			q, err := tx.GetPart(p.ID)
			if err != nil {
				return err
			}
			if q.Status == registry.PartStored {
				q.Status = registry.PartCorrupt
				return tx.PutPart(q)
			}
			return nil
		}); uerr != nil && !e.cfg.ReadOnly {
			e.log.Warn("could not mark part corrupt", "part", p.Key, "err", uerr)
		}
	}
	return fmt.Errorf("file offset %d: %w", off, err)
}

func partMeta(p *registry.Part) chunkstore.PartMeta {
	return chunkstore.PartMeta{Key: p.Key, Size: p.Size, PlainSize: p.PlainSize, MD5: p.MD5, Compression: chunkstore.Compression(p.Compression)}
}
