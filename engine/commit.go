package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/pfs-project/pfs/chunkstore"
	"github.com/pfs-project/pfs/registry"
)

// flushChunk stores a dirty chunk as one new part and commits it:
// (1) record the part as pending, (2) save the object durably, (3) wait for
// the previous flush of the same chunk, (4) in one transaction append the
// slices to the chunk map, drop slices they hide, adjust reference counts
// and the file size, (5) delete parts nothing references any more. A crash
// before (4) leaves a pending part that the next mount collects; after it,
// the new content is in and the old parts are garbage. A part small enough
// to live in the registry skips (1) and (2): its bytes go into (4).
func (e *Engine) flushChunk(f *file, fl *flushing, prev *flushing) {
	ctx := e.bgCtx
	err := e.storeChunk(ctx, f, fl, prev)
	f.mu.Lock()
	q := f.inflight[fl.idx]
	for i, x := range q {
		if x == fl {
			q = append(q[:i:i], q[i+1:]...)
			break
		}
	}
	if len(q) == 0 {
		delete(f.inflight, fl.idx)
	} else {
		f.inflight[fl.idx] = q
	}
	if err != nil {
		// Keep the data: give it back to the dirty buffer (under anything
		// written since) so a later flush retries, and report the error on
		// the next flush/fsync/close.
		if f.err == nil {
			f.err = err
		}
		fl.dc.clip(fl.clip)
		if dc := f.dirty[fl.idx]; dc != nil {
			dc.mergeUnder(fl.dc)
			e.putBuf(fl.dc.buf)
		} else if len(fl.dc.ivs) > 0 {
			f.dirty[fl.idx] = fl.dc
		} else {
			e.putBuf(fl.dc.buf)
		}
	}
	cached := false
	if err == nil {
		// A cached copy of the chunk is brought up to date with what this
		// flush committed rather than dropped: a database that reads the
		// pages it just wrote would otherwise reload and re-verify the
		// whole chunk after every commit. Under f.mu, no other commit of
		// this chunk can come between (the next one waits for fl.done).
		old := cacheTag{ver: f.ver[fl.idx], epoch: f.epoch}
		f.ver[fl.idx]++
		if fl.committed {
			cached = e.cache.apply(f.ino, fl.idx, old, cacheTag{ver: f.ver[fl.idx], epoch: f.epoch}, fl.dc, fl.clip)
		}
		e.putBuf(fl.dc.buf)
	}
	fl.err = err
	f.mu.Unlock()
	e.flushing.Add(-1)
	if err == nil {
		if !cached {
			e.cache.dropFile2(f.ino, fl.idx)
		}
	} else {
		e.log.Error("flush failed", "ino", f.ino, "offset", int64(fl.idx)*e.chunkSize, "err", err)
		e.flushFailed(err)
	}
	close(fl.done)
}

func (e *Engine) storeChunk(ctx context.Context, f *file, fl *flushing, prev *flushing) error {
	dc := fl.dc
	// whole > 0: dc.buf[:whole] is the chunk's entire content (fillGaps),
	// stored as one part that replaces every older slice.
	whole := 0
	if len(dc.ivs) > maxSlices {
		if prev != nil {
			<-prev.done // fill from what the previous flush committed
		}
		whole = e.fillGaps(ctx, f.ino, fl.idx, dc)
	}
	// Otherwise the part holds the written ranges back to back; one range
	// (the common case: sequential writes) is stored straight from the
	// buffer.
	var payload []byte
	switch {
	case whole > 0:
		payload = dc.buf[:whole]
	case len(dc.ivs) == 1:
		payload = dc.buf[dc.ivs[0].start:dc.ivs[0].end]
	default:
		payload = make([]byte, 0, dc.written())
		for _, iv := range dc.ivs {
			payload = append(payload, dc.buf[iv.start:iv.end]...)
		}
	}
	// A small part lives in the registry under its ID. Time-ordered IDs
	// (UUIDv7) keep the parts written together side by side there, so
	// reading back a tree that was written together reads the registry's
	// tables in order rather than at random, and its LSM compactions only
	// touch the newest key range. Object parts keep random IDs: the local
	// backend fans objects out into directories by the ID's first digits.
	inline := len(payload) <= inlineMax
	id := uuid.New()
	if inline {
		if v7, err := uuid.NewV7(); err == nil {
			id = v7
		}
	}
	part := &registry.Part{ID: id, Key: id.String(), Status: registry.PartPending, Ino: f.ino, Chunk: fl.idx}
	var meta chunkstore.PartMeta
	// blob is a small part's bytes, which go into the registry in the
	// commit's own transaction: no pending record is needed (nothing can
	// be left behind), and a small file's close costs one transaction
	// instead of three.
	var blob []byte
	if inline {
		var err error
		if meta, blob, err = e.cs.Encode(ctx, part.Key, payload); err == nil {
			err = e.reg.Room()
		}
		if err != nil {
			return fmt.Errorf("flush ino %d chunk %d: %w", f.ino, fl.idx, err)
		}
	} else {
		if err := e.reg.Grow(ctx, func(tx *registry.Tx) error { return tx.PutPart(part) }); err != nil {
			return fmt.Errorf("flush ino %d chunk %d: record part: %w", f.ino, fl.idx, err)
		}
		var err error
		if meta, err = e.cs.Save(ctx, part.Key, payload); err != nil {
			e.dropPending(part)
			return fmt.Errorf("flush ino %d chunk %d: %w", f.ino, fl.idx, err)
		}
	}
	dropPending := func() {
		if !inline {
			e.dropPending(part)
		}
	}
	part.Size, part.PlainSize, part.MD5, part.Compression = meta.Size, meta.PlainSize, meta.MD5, uint8(meta.Compression)
	if prev != nil {
		<-prev.done
	}

	f.trunc.RLock()
	defer f.trunc.RUnlock()
	f.mu.Lock()
	clip := fl.clip
	mtime := f.mtime
	pend, pendGen := f.pend, f.pendGen
	f.mu.Unlock()
	var slices []registry.Slice
	if whole > 0 {
		if end := min(whole, clip); end > 0 {
			slices = append(slices, registry.Slice{Part: id, Len: uint32(end)})
		}
	} else {
		pos := uint32(0)
		for _, iv := range dc.ivs {
			if end := min(iv.end, clip); iv.start < end {
				slices = append(slices, registry.Slice{Part: id, PartOff: pos, Off: uint32(iv.start), Len: uint32(end - iv.start)})
			}
			pos += uint32(iv.end - iv.start)
		}
	}
	if len(slices) == 0 { // everything was truncated away meanwhile
		dropPending()
		return nil
	}
	var garbage []*registry.Part
	var compact bool
	err := e.updateFile(ctx, f.ino, func(tx *registry.Tx) error {
		garbage, compact = garbage[:0], false
		in, err := tx.GetInode(f.ino)
		if err != nil {
			return err
		}
		ch, err := tx.GetChunk(f.ino, fl.idx)
		if err != nil {
			return err
		}
		ch = append(ch[:len(ch):len(ch)], slices...)
		kept, dropped := pruneChunk(ch)
		part.Status, part.Refs = registry.PartStored, 0
		for _, s := range kept {
			if s.Part == id {
				part.Refs++
			}
		}
		if part.Refs == 0 { // cannot happen: new slices are never hidden
			return fmt.Errorf("new part %s hidden entirely", id)
		}
		if err := tx.PutPart(part); err != nil {
			return err
		}
		if inline {
			if err := tx.PutBlob(part.Key, blob); err != nil {
				return err
			}
		}
		if garbage, err = unref(tx, dropped); err != nil {
			return err
		}
		if err := tx.PutChunk(f.ino, fl.idx, kept); err != nil {
			return err
		}
		end := uint64(fl.idx)*uint64(e.chunkSize) + uint64(slices[len(slices)-1].Off+slices[len(slices)-1].Len)
		in.Size = max(in.Size, end)
		in.Mtime, in.Ctime = max(in.Mtime, mtime), max(in.Ctime, mtime)
		pend.applyTo(in)
		compact = len(kept) > maxSlices
		return tx.PutInode(in)
	})
	if errors.Is(err, registry.ErrNotFound) {
		// The file was deleted while its data was in flight.
		dropPending()
		return nil
	}
	if err != nil {
		dropPending()
		return fmt.Errorf("flush ino %d chunk %d: commit: %w", f.ino, fl.idx, err)
	}
	fl.committed = true
	f.mu.Lock()
	f.timesIn = max(f.timesIn, mtime)
	f.clearPendLocked(pendGen)
	f.mu.Unlock()
	e.deleteObjects(ctx, garbage)
	if compact {
		e.startCompaction(f.ino, fl.idx)
	}
	return nil
}

// startCompaction compacts a chunk in the background unless a compaction
// of it is running: a database commits every few milliseconds, each commit
// over the limit asked for one, and all but one of those compacting the
// same chunk at once did the whole work (read, verify and hash 4 MiB) for
// nothing. The next commit asks again if the chunk is still over the limit.
func (e *Engine) startCompaction(ino Ino, idx uint64) {
	k := cacheKey{ino, idx}
	e.mu.Lock()
	if e.compacting[k] {
		e.mu.Unlock()
		return
	}
	e.compacting[k] = true
	e.mu.Unlock()
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		if err := e.compact(e.bgCtx, ino, idx); err != nil && !errors.Is(err, context.Canceled) {
			e.log.Warn("compaction failed; the chunk stays as it is", "ino", ino, "chunk", idx, "err", err)
		}
		e.mu.Lock()
		delete(e.compacting, k)
		e.mu.Unlock()
	}()
}

// fillGaps completes a fragmented dirty chunk into the chunk's whole
// content: the bytes its writes did not cover are filled in dc.buf from
// the committed slices (zeros where nothing was ever written), and it
// returns the content's length. Stored as one part, that replaces every
// older slice; storing the scattered writes as slices instead would put
// the chunk over maxSlices and have it compacted, read and rewritten
// whole, right after. dc.ivs stays as it is: readers and the cache only
// look at those bytes, and the filled ones equal what they already see.
//
// It returns 0 when it cannot (a part does not load); the flush then
// stores slices as usual and a reader meets the bad part. Each fill holds
// one loaded part outside the memory cap, so e.fills bounds how many run.
// The caller has waited for the chunk's previous flush.
func (e *Engine) fillGaps(ctx context.Context, ino Ino, idx uint64, dc *dirtyChunk) int {
	e.fills <- struct{}{}
	defer func() { <-e.fills }()
	blobs := map[[16]byte][]byte{}
	ch, parts, err := e.chunkParts(ctx, ino, idx, blobs)
	if err != nil {
		return 0
	}
	end := dc.ivs[len(dc.ivs)-1].end
	for _, s := range ch {
		end = max(end, int(s.Off+s.Len))
	}
	// Newest slice first: what neither the writes nor a newer slice
	// covers comes from this one.
	type segment struct{ off, partOff, n int }
	from := map[[16]byte][]segment{}
	covered := dirtyChunk{ivs: slices.Clone(dc.ivs)}
	for i := len(ch) - 1; i >= 0; i-- {
		s := ch[i]
		for _, g := range covered.gaps(int(s.Off), int(s.Off+s.Len)) {
			from[s.Part] = append(from[s.Part], segment{g.start, int(s.PartOff) + g.start - int(s.Off), g.end - g.start})
		}
		covered.add(int(s.Off), int(s.Off+s.Len))
	}
	for _, g := range covered.gaps(0, end) {
		clear(dc.buf[g.start:g.end]) // a hole
	}
	for id, segs := range from {
		data, err := e.loadPart(ctx, parts[id], blobs[id], nil)
		if err != nil {
			e.log.Debug("flush: cannot fill a fragmented chunk; storing its writes as slices", "ino", ino, "chunk", idx, "err", err)
			return 0
		}
		for _, sg := range segs {
			if sg.partOff+sg.n > len(data) {
				return 0
			}
			copy(dc.buf[sg.off:sg.off+sg.n], data[sg.partOff:])
		}
	}
	return end
}

// dropCache for a committed chunk. A separate name keeps flushChunk readable.
func (c *chunkCache) dropFile2(ino Ino, idx uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ent := c.m[cacheKey{ino, idx}]; ent != nil {
		c.removeLocked(ent)
	}
}

// dropPending deletes a part that never got committed: object first, then
// the record, so a crash in between leaves a record the next mount
// collects.
func (e *Engine) dropPending(p *registry.Part) {
	ctx := context.Background()
	if err := e.cs.Delete(ctx, p.Key); err != nil {
		e.log.Warn("could not delete uncommitted part; the next mount collects it", "part", p.Key, "err", err)
		return
	}
	_ = e.reg.Update(ctx, func(tx *registry.Tx) error {
		err := tx.DeletePart(p.ID)
		if errors.Is(err, registry.ErrNotFound) {
			return nil
		}
		return err
	})
}

// pruneChunk drops the slices that later slices hide entirely.
func pruneChunk(ch registry.Chunk) (kept registry.Chunk, dropped []registry.Slice) {
	var cover []interval // union of newer slices, sorted
	keep := make([]bool, len(ch))
	for i := len(ch) - 1; i >= 0; i-- {
		s := ch[i]
		start, end := int(s.Off), int(s.Off+s.Len)
		hidden := false
		for _, c := range cover {
			if c.start <= start && end <= c.end {
				hidden = true
				break
			}
		}
		keep[i] = !hidden && s.Len > 0
		if !hidden {
			d := dirtyChunk{ivs: cover}
			d.add(start, end)
			cover = d.ivs
		}
	}
	for i, s := range ch {
		if keep[i] {
			kept = append(kept, s)
		} else {
			dropped = append(dropped, s)
		}
	}
	return kept, dropped
}

// unref lowers the reference counts of the parts of dropped slices. A
// part that reached zero and lives in the registry (a small part) is
// deleted right there, in the same transaction: nothing outside the
// registry is left to order, and a database's commits, which replace
// small parts all the time, then cost no second transaction each. The
// others (object parts) are returned marked deleting, so a crash before
// their objects are gone leaves them collectable.
func unref(tx *registry.Tx, dropped []registry.Slice) ([]*registry.Part, error) {
	counts := map[uuid.UUID]uint32{}
	var order []uuid.UUID
	for _, s := range dropped {
		if counts[s.Part] == 0 {
			order = append(order, s.Part)
		}
		counts[s.Part]++
	}
	var garbage []*registry.Part
	for _, id := range order {
		p, err := tx.GetPart(id)
		if errors.Is(err, registry.ErrNotFound) {
			continue // already gone: nothing to free
		}
		if err != nil {
			return nil, err
		}
		if p.Refs > counts[id] {
			p.Refs -= counts[id]
			if err := tx.PutPart(p); err != nil {
				return nil, err
			}
			continue
		}
		switch err := tx.DeleteBlob(p.Key); {
		case err == nil:
			if err := tx.RemovePart(p); err != nil {
				return nil, err
			}
			continue
		case !errors.Is(err, registry.ErrNotFound):
			return nil, err
		}
		p.Refs = 0
		p.Status = registry.PartDeleting
		if err := tx.PutPart(p); err != nil {
			return nil, err
		}
		garbage = append(garbage, p)
	}
	return garbage, nil
}

// deleteGarbage deletes unreferenced parts found in the registry (by the
// collection at mount and by fsck), small and object parts alike.
func (e *Engine) deleteGarbage(ctx context.Context, parts []*registry.Part) {
	e.deleteObjects(ctx, e.deleteInline(ctx, parts))
}

// deleteObjects deletes the objects of unreferenced object parts (as unref
// returns them), then their records. Failures are left for the next
// mount's collection.
func (e *Engine) deleteObjects(ctx context.Context, parts []*registry.Part) {
	if len(parts) == 0 {
		return
	}
	var done []uuid.UUID
	for _, p := range parts {
		if err := e.cs.Delete(ctx, p.Key); err != nil {
			e.log.Warn("could not delete unreferenced part; the next mount retries", "part", p.Key, "err", err)
			continue
		}
		done = append(done, p.ID)
	}
	for len(done) > 0 {
		n := min(len(done), 1000)
		batch := done[:n]
		done = done[n:]
		err := e.reg.Update(ctx, func(tx *registry.Tx) error {
			for _, id := range batch {
				if err := tx.DeletePart(id); err != nil && !errors.Is(err, registry.ErrNotFound) {
					return err
				}
			}
			return nil
		})
		if err != nil {
			e.log.Warn("could not drop records of deleted parts; the next mount retries", "err", err)
		}
	}
}

// deleteInline deletes the parts kept in the registry, each with its
// record in the same transaction (nothing to order: both go at once), and
// returns the others. Deleting a file of small parts then costs one
// transaction, not two per part.
func (e *Engine) deleteInline(ctx context.Context, parts []*registry.Part) []*registry.Part {
	var rest []*registry.Part
	for len(parts) > 0 {
		batch := parts[:min(len(parts), 1000)]
		parts = parts[len(batch):]
		var out []*registry.Part
		err := e.reg.Update(ctx, func(tx *registry.Tx) error {
			out = out[:0]
			for _, p := range batch {
				if err := tx.DeleteBlob(p.Key); errors.Is(err, registry.ErrNotFound) {
					out = append(out, p) // an object part
					continue
				} else if err != nil {
					return err
				}
				if err := tx.DeletePart(p.ID); err != nil && !errors.Is(err, registry.ErrNotFound) {
					return err
				}
			}
			return nil
		})
		if err != nil {
			// The caller's per-part path deletes them one by one.
			e.log.Debug("could not delete small parts in one transaction", "err", err)
			out = batch
		}
		rest = append(rest, out...)
	}
	return rest
}

// compact rewrites a chunk with many slices as one part, under the slices
// committed meanwhile (see rebase); it gives up if the chunk changed in
// another way.
func (e *Engine) compact(ctx context.Context, ino Ino, idx uint64) error {
	var n int
	if err := e.reg.View(ctx, func(tx *registry.Tx) error {
		ch, err := tx.GetChunk(ino, idx)
		n = len(ch)
		return err
	}); err != nil || n <= maxSlices {
		return err // compacted or rewritten since it was asked for
	}
	// The map compared with the one at commit is the one the content was
	// loaded from: read apart, a truncate between the two reads could put
	// bytes it had removed back under the file.
	data, mem, before, err := e.loadChunkMap(ctx, ino, idx, true)
	if err != nil {
		return err
	}
	defer e.putChunkData(data, mem)
	if len(before) <= maxSlices {
		return nil
	}
	id := uuid.New()
	part := &registry.Part{ID: id, Key: id.String(), Status: registry.PartPending, Ino: ino, Chunk: idx}
	if err := e.reg.Grow(ctx, func(tx *registry.Tx) error { return tx.PutPart(part) }); err != nil {
		return err
	}
	meta, err := e.cs.Save(ctx, part.Key, data)
	if err != nil {
		e.dropPending(part)
		return err
	}
	part.Size, part.PlainSize, part.MD5, part.Compression = meta.Size, meta.PlainSize, meta.MD5, uint8(meta.Compression)
	if e.compactHook != nil {
		e.compactHook()
	}
	var garbage []*registry.Part
	changed := false
	whole := registry.Slice{Part: id, Off: 0, Len: uint32(len(data))}
	err = e.updateFile(ctx, ino, func(tx *registry.Tx) error {
		garbage, changed = nil, false
		now, err := tx.GetChunk(ino, idx)
		if err != nil {
			return err
		}
		after, replaced, ok := rebase(before, now, whole)
		if !ok {
			changed = true
			return nil
		}
		part.Status, part.Refs = registry.PartStored, 1
		if err := tx.PutPart(part); err != nil {
			return err
		}
		if garbage, err = unref(tx, replaced); err != nil {
			return err
		}
		return tx.PutChunk(ino, idx, after)
	})
	if err != nil || changed {
		e.dropPending(part)
		return err
	}
	// The chunk's content is what it was, so its version and a cached
	// copy stay as they are: a database compacting its hot chunk would
	// otherwise reload and re-verify it right after. A load that read the
	// old map and meets a deleted part retries (loadChunk).
	e.deleteObjects(ctx, garbage)
	return nil
}

// rebase returns the chunk map that puts whole, the compacted content of
// the map before, under the slices committed since (now holds before's
// slices, minus those the new ones hide, followed by the new ones), and
// the slices of before it replaces. A database commits while its chunk is
// being compacted; giving the work up then wasted most compactions. It
// refuses (ok false) when the chunk changed in any other way: a truncate
// clipped or removed slices, or a compaction replaced them, so bytes of
// before may no longer be the file's, or the new slices hide whole.
func rebase(before, now registry.Chunk, whole registry.Slice) (after, replaced registry.Chunk, ok bool) {
	old := make(map[registry.Slice]bool, len(before))
	oldParts := make(map[uuid.UUID]bool, len(before))
	for _, s := range before {
		old[s], oldParts[s.Part] = true, true
	}
	var covered dirtyChunk
	after = registry.Chunk{whole}
	for _, s := range now {
		switch {
		case old[s] && len(after) == 1:
			replaced = append(replaced, s)
		case !oldParts[s.Part]:
			after = append(after, s)
		default:
			return nil, nil, false // an old slice changed, or one after a new one
		}
		covered.add(int(s.Off), int(s.Off+s.Len))
	}
	for _, s := range before {
		if !covered.covers(int(s.Off), int(s.Off+s.Len)) {
			return nil, nil, false // removed, not hidden: a truncate
		}
	}
	after, dropped := pruneChunk(after)
	if len(dropped) > 0 {
		return nil, nil, false // the new slices hide the compacted part
	}
	return after, replaced, true
}

func sameChunk(a, b registry.Chunk) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// truncateLocked cuts or extends ino to size in the registry: chunks past
// the end are deleted in batches (after the size moved, so they are
// invisible) and the boundary chunk is clipped. Caller holds f.trunc if
// the file is open.
func (e *Engine) truncateStored(ctx context.Context, ino Ino, size uint64, ctime int64) error {
	cs := uint64(e.chunkSize)
	boundary := size / cs // first chunk index that is cut (partly or wholly)
	within := uint32(size % cs)
	var garbage []*registry.Part
	more := false
	err := e.reg.Update(ctx, func(tx *registry.Tx) error {
		garbage, more = nil, false
		in, err := tx.GetInode(ino)
		if err != nil {
			return err
		}
		shrink := size < in.Size
		in.Size = size
		in.Mtime, in.Ctime = ctime, ctime
		if err := tx.PutInode(in); err != nil {
			return err
		}
		if !shrink {
			return nil
		}
		if within > 0 {
			ch, err := tx.GetChunk(ino, boundary)
			if err != nil {
				return err
			}
			var kept registry.Chunk
			var dropped []registry.Slice
			for _, s := range ch {
				switch {
				case s.Off >= within:
					dropped = append(dropped, s)
				case s.Off+s.Len > within:
					s.Len = within - s.Off
					kept = append(kept, s)
				default:
					kept = append(kept, s)
				}
			}
			if g, err := unref(tx, dropped); err != nil {
				return err
			} else {
				garbage = append(garbage, g...)
			}
			if err := tx.PutChunk(ino, boundary, kept); err != nil {
				return err
			}
			boundary++
		}
		g, m, err := deleteChunks(tx, ino, boundary)
		garbage, more = append(garbage, g...), m
		return err
	})
	if err != nil {
		return fmt.Errorf("truncate ino %d to %d: %w", ino, size, err)
	}
	e.deleteObjects(ctx, garbage)
	for more {
		err := e.reg.Update(ctx, func(tx *registry.Tx) error {
			var err error
			garbage, more, err = deleteChunks(tx, ino, boundary)
			return err
		})
		if err != nil {
			return fmt.Errorf("truncate ino %d to %d: %w", ino, size, err)
		}
		e.deleteObjects(ctx, garbage)
	}
	return nil
}

// deleteChunks deletes a batch of ino's chunk maps from index from on (see
// chunkBatch), unreferencing their parts, and returns the parts to delete;
// more says whether chunks remain.
func deleteChunks(tx *registry.Tx, ino Ino, from uint64) (garbage []*registry.Part, more bool, err error) {
	idxs, dropped, more, err := chunksOf(tx, ino, from, chunkBatch)
	if err != nil {
		return nil, false, err
	}
	garbage, err = dropChunks(tx, ino, idxs, dropped)
	return garbage, more, err
}

// chunksOf returns the indexes of up to limit chunk maps of ino from index
// from on, and their slices, stopping before the maps whose deletion
// would take the transaction past batchWrites (but returning one map at
// least); more says whether chunks remain.
func chunksOf(tx *registry.Tx, ino Ino, from uint64, limit int) (idxs []uint64, slices []registry.Slice, more bool, err error) {
	writes := 0
	err = tx.Chunks(ino, from, func(idx uint64, ch registry.Chunk) error {
		w := chunkWrites(ch)
		if len(idxs) == limit || (len(idxs) > 0 && writes+w > batchWrites) {
			more = true
			return registry.ErrStop
		}
		writes += w
		idxs = append(idxs, idx)
		slices = append(slices, ch...)
		return nil
	})
	if err != nil {
		return nil, nil, false, err
	}
	return idxs, slices, more, nil
}

// dropChunks deletes the chunk maps idxs of ino and unreferences slices,
// their slices (as chunksOf returns them).
func dropChunks(tx *registry.Tx, ino Ino, idxs []uint64, slices []registry.Slice) ([]*registry.Part, error) {
	for _, idx := range idxs {
		if err := tx.PutChunk(ino, idx, nil); err != nil {
			return nil, err
		}
	}
	return unref(tx, slices)
}

// purge deletes an unlinked inode's data and record. It runs when the last
// link and the last handle are gone, and at mount for inodes a crash left
// behind.
func (e *Engine) purge(ctx context.Context, ino Ino) error {
	for {
		var garbage []*registry.Part
		more := false
		err := e.reg.Update(ctx, func(tx *registry.Tx) error {
			var err error
			garbage, more, err = deleteChunks(tx, ino, 0)
			if err != nil || more {
				return err
			}
			return tx.DeleteInode(ino)
		})
		if err != nil && !errors.Is(err, registry.ErrNotFound) {
			return fmt.Errorf("delete ino %d: %w", ino, err)
		}
		e.deleteObjects(ctx, garbage)
		if !more {
			e.cache.dropFile(ino, 0)
			return nil
		}
	}
}

// purgeIfUnlinked purges ino if it has no links and no open handle. An
// open file is marked, so that its last Release calls again.
func (e *Engine) purgeIfUnlinked(ctx context.Context, ino Ino) error {
	if f := e.openFile(ino); f != nil {
		f.mu.Lock()
		open := f.opens > 0
		if open {
			f.unlinked = true
		}
		f.mu.Unlock()
		if open {
			return nil
		}
	}
	in, err := e.getInode(ctx, ino)
	if errors.Is(err, registry.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if in.Nlink > 0 || in.Status != registry.StatusDeleting {
		return nil
	}
	return e.purge(ctx, ino)
}

// collect finishes what a crash interrupted: parts recorded but never
// committed, parts whose deletion did not finish, and unlinked inodes.
func (e *Engine) collect(ctx context.Context) error {
	start := time.Now()
	var parts []*registry.Part
	var orphans []Ino
	err := e.reg.View(ctx, func(tx *registry.Tx) error {
		if err := tx.Garbage(func(p *registry.Part) error {
			parts = append(parts, p)
			return nil
		}); err != nil {
			return err
		}
		return tx.Orphans(func(in *registry.Inode) error {
			orphans = append(orphans, in.Ino)
			return nil
		})
	})
	if err != nil {
		return err
	}
	e.deleteGarbage(ctx, parts)
	for _, ino := range orphans {
		if err := e.purge(ctx, ino); err != nil {
			return err
		}
	}
	if len(parts)+len(orphans) > 0 {
		e.log.Info("collected what an earlier run left behind", "parts", len(parts), "unlinked_files", len(orphans), "took", time.Since(start))
	}
	return nil
}

// chunkBatch bounds the chunk maps one transaction deletes, and
// batchWrites the writes that takes: Badger refuses a transaction of more
// than about 3 200 writes with the smallest memory budget the engine gives
// the registry (8 MiB: a memtable of 2 MiB, 15 % of it, 96 bytes a
// write). Deleting a chunk map writes the map and up to two keys a slice
// (a small part's record and bytes, or an object part's record and
// garbage index key; see chunkWrites), so 40 maps of 65 slices took 5 200
// and failed (TestUnlinkManySlicedChunks). The rest of the budget is for
// the transaction's other writes: a truncate also cuts one chunk (up to
// 2×maxSlices+1 more), an unlink or purge deletes the inode.
const (
	chunkBatch  = 40
	batchWrites = 2800
)

// chunkWrites is at most what deleting chunk map ch writes.
func chunkWrites(ch registry.Chunk) int { return 1 + 2*len(ch) }
