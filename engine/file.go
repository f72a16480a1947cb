package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pfs-project/pfs/chunkstore"
	"github.com/pfs-project/pfs/registry"
)

// maxFileSize keeps chunk offsets inside uint32 slices and int64 sizes.
const maxFileSize = 1 << 50

// file is the in-memory state of an inode that is open or has data in
// flight. Every handle of the inode shares it.
//
// Lock order: trunc before mu. trunc is held shared by a flush while it
// commits, and exclusively by a truncate from its in-memory cut through
// its registry transaction, so a flush snapshot taken before the truncate
// can never commit bytes past the new end.
type file struct {
	e   *Engine
	ino Ino

	trunc sync.RWMutex

	mu       sync.Mutex // protects the following
	refs     int        // handles plus transient users (SetAttr)
	opens    int        // handles only
	size     int64
	mtime    int64
	ctime    int64
	attrDirt bool // mtime/ctime changed since the last commit
	// timesIn is the latest write time a chunk commit has put into the
	// inode (its mtime and ctime are at least this): a close whose writes
	// were all committed after their times needs no second transaction.
	timesIn  int64
	unlinked bool // lost its last link while open: the last Release purges it
	// pend holds attribute changes (chmod, chown, utimens) made while the
	// file had buffered writes, not yet in the registry: the commit that
	// stores those writes carries them. tar and rsync -a set the mode,
	// owner and times of each file between its last write and its close,
	// which cost three transactions per file. pendGen counts changes to
	// pend, so a commit clears only what it carried.
	pend     pendingAttrs
	pendGen  uint64
	dirty    map[uint64]*dirtyChunk
	inflight map[uint64][]*flushing // per chunk, in commit order
	ver      map[uint64]uint64      // bumped whenever a chunk's committed map changes
	epoch    uint64                 // bumped by every truncate
	err      error                  // write-back error not yet reported
	raNext   uint64                 // next chunk read-ahead would fetch
	raLast   int64                  // end of the last read, to detect sequential reads
}

// pendingAttrs are attribute changes of an open file waiting for the
// commit of its buffered writes. nil fields are unchanged; ctime 0 is none.
type pendingAttrs struct {
	mode, uid, gid *uint32
	atime, mtime   *int64
	ctime          int64
}

func (p *pendingAttrs) empty() bool {
	return p.mode == nil && p.uid == nil && p.gid == nil && p.atime == nil && p.mtime == nil && p.ctime == 0
}

// applyTo sets the changes on in. An explicit mtime replaces in's, as
// utimens does; the caller has already merged in the times of writes
// (a write after the utimens clears the pending mtime).
func (p *pendingAttrs) applyTo(in *registry.Inode) {
	if p.mode != nil {
		in.Mode = in.Mode&sIFMT | *p.mode&07777
	}
	if p.uid != nil {
		in.Uid = *p.uid
	}
	if p.gid != nil {
		in.Gid = *p.gid
	}
	if p.atime != nil {
		in.Atime = *p.atime
	}
	if p.mtime != nil {
		in.Mtime = *p.mtime
	}
	in.Ctime = max(in.Ctime, p.ctime)
}

// clearPendLocked forgets the pending changes a commit carried, unless
// more came since its snapshot (gen): those are newer and stay for the
// next commit. Caller holds f.mu.
func (f *file) clearPendLocked(gen uint64) {
	if f.pendGen == gen {
		f.pend = pendingAttrs{}
	}
}

// flushing is a dirty chunk on its way into the store. Reads still see its
// bytes until its commit has landed.
type flushing struct {
	idx  uint64
	dc   *dirtyChunk
	clip int           // bytes at or beyond clip were truncated away meanwhile
	done chan struct{} // closed after commit (or failure)
	err  error         // set before done is closed

	committed bool // its slices are in the registry (storeChunk may drop them instead)
}

// acquireFile returns the shared state of ino, loading it from the
// registry on first use. Pair with releaseFile.
func (e *Engine) acquireFile(ctx context.Context, ino Ino) (*file, error) {
	if f := e.holdOpen(ino); f != nil {
		return f, nil
	}
	in, err := e.getInode(ctx, ino)
	if err != nil {
		return nil, err
	}
	if in.Mode&sIFMT != sIFREG {
		return nil, fmt.Errorf("inode %d: %w", ino, ErrIsDir)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if f := e.files[ino]; f != nil { // lost a race with another opener
		f.mu.Lock()
		f.refs++
		f.mu.Unlock()
		return f, nil
	}
	f := &file{e: e, ino: ino, refs: 1, size: int64(in.Size), mtime: in.Mtime, ctime: in.Ctime,
		dirty: map[uint64]*dirtyChunk{}, inflight: map[uint64][]*flushing{}, ver: map[uint64]uint64{}}
	e.files[ino] = f
	return f, nil
}

// releaseFile drops a reference; the last one removes the state once
// nothing is buffered or in flight.
func (e *Engine) releaseFile(f *file) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refs--
	if f.refs == 0 && len(f.dirty) == 0 && len(f.inflight) == 0 {
		delete(e.files, f.ino)
	}
}

// openFile returns the state of ino if some handle has it, without
// creating it.
func (e *Engine) openFile(ino Ino) *file {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.files[ino]
}

// OpenFile opens the regular file ino for I/O. Every OpenFile must be
// paired with a Release of the returned handle. Handles of one inode share
// its buffered data, so all readers see all writes at once.
func (e *Engine) OpenFile(ctx context.Context, ino Ino) (*Handle, error) {
	f, err := e.acquireFile(ctx, ino)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.opens++
	f.mu.Unlock()
	return &Handle{e: e, f: f}, nil
}

// Handle is one open of a regular file.
type Handle struct {
	e *Engine
	f *file
}

// Ino returns the inode the handle is open on.
func (h *Handle) Ino() Ino { return h.f.ino }

// Size returns the file's current size, including buffered writes.
func (h *Handle) Size() int64 {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	return h.f.size
}

// Stamp returns the file's size and modification time as the open file
// holds them (buffered writes included): what GetAttr reports, without a
// registry read. The FUSE layer compares them across opens to decide
// whether the kernel may keep the file's page cache.
func (h *Handle) Stamp() (size, mtime int64) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	return h.f.size, h.f.mtime
}

// WriteAt writes p at off, extending the file as needed. It may block
// while the memory cap is full (backpressure).
func (h *Handle) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	e, f := h.e, h.f
	if e.cfg.ReadOnly {
		return 0, ErrReadOnly
	}
	if off < 0 || off+int64(len(p)) > maxFileSize {
		return 0, fmt.Errorf("write at %d+%d: %w", off, len(p), ErrFileTooBig)
	}
	cs := int(e.chunkSize)
	for s := range chunkstore.Spans(off, len(p), e.chunkSize) {
		f.mu.Lock()
		dc := f.dirty[s.Index]
		if dc == nil {
			f.mu.Unlock()
			// Take memory without holding the lock: waiting here is the
			// backpressure that keeps a fast writer inside the cap.
			buf, err := e.getBuf(ctx)
			if err != nil {
				return s.Pos, fmt.Errorf("write ino %d at %d: %w", f.ino, off+int64(s.Pos), err)
			}
			f.mu.Lock()
			if dc = f.dirty[s.Index]; dc == nil {
				dc = &dirtyChunk{buf: buf}
				f.dirty[s.Index] = dc
			} else {
				e.putBuf(buf)
			}
		}
		copy(dc.buf[s.Off:], p[s.Pos:s.Pos+s.Len])
		dc.add(s.Off, s.Off+s.Len)
		now := time.Now()
		dc.lastWrite = now
		if end := int64(s.Index)*e.chunkSize + int64(s.Off+s.Len); end > f.size {
			f.size = end
		}
		f.mtime, f.ctime, f.attrDirt = now.UnixNano(), now.UnixNano(), true
		if f.pend.mtime != nil {
			f.pend.mtime = nil // this write's time supersedes a pending utimens
			f.pendGen++
		}
		if dc.full(cs) {
			delete(f.dirty, s.Index)
			f.startFlushLocked(s.Index, dc)
		}
		f.mu.Unlock()
	}
	return len(p), nil
}

// ReadAt reads into p at off. It returns fewer than len(p) bytes only at
// end of file (n may be 0 there; no io.EOF). A damaged part in the range
// returns an error wrapping chunkstore.ErrChecksum (or ErrNotFound for a
// missing part).
func (h *Handle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	e, f := h.e, h.f
	f.mu.Lock()
	size := f.size
	// Near the end of the previous read counts as sequential: the kernel
	// sends read-ahead requests concurrently, so they arrive out of order.
	// A read from the start begins a sequential read.
	sequential := off == 0 || off >= f.raLast-2*e.chunkSize && off <= f.raLast+2*e.chunkSize
	f.mu.Unlock()
	if off >= size || len(p) == 0 {
		return 0, nil
	}
	n := int(min(int64(len(p)), size-off))
	p = p[:n]
	if sequential {
		e.readAhead(f, off, n, size)
	}
	for s := range chunkstore.Spans(off, n, e.chunkSize) {
		if err := e.readChunk(ctx, f, s.Index, s.Off, p[s.Pos:s.Pos+s.Len], sequential); err != nil {
			return s.Pos, fmt.Errorf("read ino %d at offset %d: %w", f.ino, int64(s.Index)*e.chunkSize+int64(s.Off), err)
		}
	}
	f.mu.Lock()
	f.raLast = max(off+int64(n), f.raLast)
	if !sequential || off == 0 {
		f.raLast = off + int64(n)
	}
	f.mu.Unlock()
	return n, nil
}

// readChunk fills dst with bytes [off, off+len(dst)) of chunk idx as the
// file holds them now: committed content overlaid with data in flight and
// then dirty data. A sequential read of a chunk read-ahead has gone past
// (a file being streamed) counts towards making the chunk the first to be
// evicted once all of it has been read (see chunkCache.release).
func (e *Engine) readChunk(ctx context.Context, f *file, idx uint64, off int, dst []byte, sequential bool) error {
	for {
		f.mu.Lock()
		// A file's last chunk read sequentially is streamed too: nothing
		// after it will be read ahead.
		streaming := sequential && (f.raNext > idx+1 || int64(idx+1)*e.chunkSize >= f.size)
		if dc := f.dirty[idx]; dc != nil && len(f.inflight[idx]) == 0 && dc.covers(off, off+len(dst)) {
			copy(dst, dc.buf[off:off+len(dst)])
			f.mu.Unlock()
			return nil
		}
		tag := cacheTag{ver: f.ver[idx], epoch: f.epoch}
		f.mu.Unlock()

		ent, err := e.cache.get(ctx, f.ino, idx, tag)
		if err != nil {
			return err
		}
		read := 0
		if off < len(ent.data) {
			read = copy(dst, ent.data[off:])
			clear(dst[read:])
		} else {
			clear(dst)
		}
		if !streaming {
			read = 0
		}
		e.cache.release(ent, read)

		f.mu.Lock()
		if f.ver[idx] != tag.ver || f.epoch != tag.epoch {
			f.mu.Unlock()
			continue // a commit or truncate raced with the load: read again
		}
		for _, fl := range f.inflight[idx] {
			fl.dc.overlay(dst, off, fl.clip)
		}
		if dc := f.dirty[idx]; dc != nil {
			dc.overlay(dst, off, int(e.chunkSize))
		}
		f.mu.Unlock()
		return nil
	}
}

// readAhead fetches the chunks after a sequential read into the cache in
// the background, through the same worker pool. It never waits for memory:
// when the cap is full it simply fetches less.
func (e *Engine) readAhead(f *file, off int64, n int, size int64) {
	window := uint64(max(2, min(8, e.cfg.Memory/e.chunkSize/4)))
	cur := uint64((off + int64(n) - 1) / e.chunkSize)
	last := min(cur+window, chunkstore.ChunkCount(size, e.chunkSize)-1)
	f.mu.Lock()
	from := max(f.raNext, cur+1)
	if from > last+1 {
		// Read-ahead was already past this window: the reader went back
		// (a second pass over the file) and starts again from here.
		from = cur + 1
	}
	if from > last {
		f.mu.Unlock()
		return
	}
	f.raNext = last + 1
	tag := cacheTag{epoch: f.epoch}
	var todo []uint64
	var tags []cacheTag
	for idx := from; idx <= last; idx++ {
		if f.dirty[idx] != nil || len(f.inflight[idx]) > 0 {
			continue
		}
		tag.ver = f.ver[idx]
		todo = append(todo, idx)
		tags = append(tags, tag)
	}
	f.mu.Unlock()
	for i, idx := range todo {
		e.cache.prefetch(f.ino, idx, tags[i])
	}
}

// startFlushLocked sends dc on its way into the store in the background.
// Caller holds f.mu and has removed dc from f.dirty.
func (f *file) startFlushLocked(idx uint64, dc *dirtyChunk) {
	var prev *flushing
	if q := f.inflight[idx]; len(q) > 0 {
		prev = q[len(q)-1]
	}
	fl := &flushing{idx: idx, dc: dc, clip: int(f.e.chunkSize), done: make(chan struct{})}
	f.inflight[idx] = append(f.inflight[idx], fl)
	f.e.flushing.Add(1)
	f.e.bg.Add(1)
	go func() {
		defer f.e.bg.Done()
		f.e.flushChunk(f, fl, prev)
	}()
}

// flush starts flushing every dirty chunk of f and waits for all flushes in
// flight, returning (and clearing) the first write-back error.
func (f *file) flush(ctx context.Context) error {
	f.mu.Lock()
	for idx, dc := range f.dirty {
		delete(f.dirty, idx)
		f.startFlushLocked(idx, dc)
	}
	var waits []*flushing
	for _, q := range f.inflight {
		waits = append(waits, q...)
	}
	f.mu.Unlock()
	for _, fl := range waits {
		select {
		case <-fl.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	err := f.err
	f.err = nil
	if f.attrDirt && f.mtime <= f.timesIn && f.ctime <= f.timesIn {
		f.attrDirt = false // the chunk commits carried these times
	}
	attr := f.attrDirt
	mtime, ctime := f.mtime, f.ctime
	pend, pendGen := f.pend, f.pendGen
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if attr || !pend.empty() {
		// Times changed by writes whose chunks were committed with older
		// times (or not at all, for a write of zero new chunks), and
		// attribute changes no chunk commit carried.
		err := f.e.updateFile(ctx, f.ino, func(tx *registry.Tx) error {
			in, err := tx.GetInode(f.ino)
			if err != nil {
				return err
			}
			in.Mtime, in.Ctime = max(in.Mtime, mtime), max(in.Ctime, ctime)
			pend.applyTo(in)
			return tx.PutInode(in)
		})
		if err != nil && !errors.Is(err, registry.ErrNotFound) {
			return fmt.Errorf("flush ino %d: %w", f.ino, err)
		}
		f.mu.Lock()
		if f.mtime == mtime {
			f.attrDirt = false
		}
		f.clearPendLocked(pendGen)
		f.mu.Unlock()
	}
	return nil
}

// Flush stores all buffered writes of the file and commits them to the
// registry (close(2) semantics: visible to the next mount, not yet fsynced).
func (h *Handle) Flush(ctx context.Context) error {
	if h.e.cfg.ReadOnly {
		return nil
	}
	return h.f.flush(ctx)
}

// Fsync makes all writes of the file durable: parts are durable before the
// registry commit, and the registry is synced before Fsync returns.
func (h *Handle) Fsync(ctx context.Context) error {
	if h.e.cfg.ReadOnly {
		return nil
	}
	if err := h.f.flush(ctx); err != nil {
		return err
	}
	if err := h.e.reg.Sync(); err != nil {
		return fmt.Errorf("fsync ino %d: %w", h.f.ino, err)
	}
	return nil
}

// Release closes the handle: it flushes, and when this was the last handle
// of an unlinked file, deletes the file.
func (h *Handle) Release(ctx context.Context) error {
	e, f := h.e, h.f
	var err error
	if !e.cfg.ReadOnly {
		err = f.flush(ctx)
		if err != nil {
			e.log.Error("write-back failed on close; buffered data and attribute changes of this file are dropped", "ino", f.ino, "err", err)
			f.dropDirty()
		}
	}
	f.mu.Lock()
	f.opens--
	last := f.opens == 0
	unlinked := f.unlinked
	f.mu.Unlock()
	e.releaseFile(f)
	// Only a file whose last link went while it was open needs the
	// registry read: every close of a linked file would pay it otherwise.
	if last && unlinked && !e.cfg.ReadOnly {
		if perr := e.purgeIfUnlinked(ctx, f.ino); perr != nil && err == nil {
			err = perr
		}
	}
	return err
}

// dropDirty forgets buffered data, and the attribute changes waiting for
// it, that could not be stored.
func (f *file) dropDirty() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pend = pendingAttrs{}
	f.pendGen++
	for idx, dc := range f.dirty {
		delete(f.dirty, idx)
		f.e.putBuf(dc.buf)
	}
}

// Allocate implements fallocate(2) mode 0 (extend size, no data written)
// and FALLOC_FL_KEEP_SIZE (a no-op here: holes need no space).
func (h *Handle) Allocate(ctx context.Context, off, size uint64, mode uint32) error {
	const keepSize = 1
	switch mode {
	case 0:
		end := off + size
		if end > maxFileSize {
			return ErrFileTooBig
		}
		if int64(end) > h.Size() {
			_, err := h.e.SetAttr(ctx, h.f.ino, SetAttrIn{Size: &end})
			return err
		}
		return nil
	case keepSize:
		return nil
	}
	return fmt.Errorf("fallocate mode %#x: %w", mode, ErrNotSupported)
}

// SeekData returns the first offset >= off that is inside a written chunk,
// or ErrNoData (ENXIO) if none. SeekHole returns the first offset >= off
// in a hole, which is the file size if the file has none after off.
func (h *Handle) SeekData(ctx context.Context, off int64) (int64, error) {
	return h.seek(ctx, off, true)
}

// SeekHole: see SeekData.
func (h *Handle) SeekHole(ctx context.Context, off int64) (int64, error) {
	return h.seek(ctx, off, false)
}

func (h *Handle) seek(ctx context.Context, off int64, data bool) (int64, error) {
	e, f := h.e, h.f
	size := h.Size()
	if off < 0 || off >= size {
		return 0, ErrNoData
	}
	cs := e.chunkSize
	first := uint64(off / cs)
	last := chunkstore.ChunkCount(size, cs) - 1
	present := map[uint64]bool{}
	f.mu.Lock()
	for idx := range f.dirty {
		present[idx] = true
	}
	for idx := range f.inflight {
		present[idx] = true
	}
	f.mu.Unlock()
	// Only the chunks from first on matter; stop the scan once the answer
	// is certain so a seek in a huge file stays cheap.
	var answer int64 = -1
	err := e.reg.View(ctx, func(tx *registry.Tx) error {
		next := first
		return tx.Chunks(f.ino, first, func(idx uint64, _ registry.Chunk) error {
			if data {
				if idx <= last {
					present[idx] = true
				}
				return registry.ErrStop
			}
			for present[next] && next < idx {
				next++ // a buffered chunk fills this gap in the map
			}
			if idx != next {
				return registry.ErrStop
			}
			present[idx] = true
			next++
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	for idx := first; idx <= last; idx++ {
		if present[idx] == data {
			answer = max(off, int64(idx)*cs)
			break
		}
		if data && idx > first && !present[idx] {
			// Jump to the lowest known data chunk instead of walking
			// through a huge hole one chunk at a time.
			lowest := uint64(0)
			found := false
			for k := range present {
				if k >= idx && k <= last && (!found || k < lowest) {
					lowest, found = k, true
				}
			}
			if !found {
				break
			}
			idx = lowest - 1
		}
	}
	if answer < 0 {
		if data {
			return 0, ErrNoData
		}
		return size, nil
	}
	return min(answer, size), nil
}
