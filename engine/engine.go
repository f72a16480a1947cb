// Package engine owns "a file is a registry entry plus parts": it opens a
// store directory (lock, format record, registry, backend), implements the
// namespace operations as registry transactions, and turns reads and writes
// of byte ranges into chunk buffers that the chunkstore flushes and fetches
// through its worker pool under one memory cap.
//
// The FUSE layer (package fs) and the offline CLI both sit on top of it;
// it knows nothing of FUSE.
//
// # Write path
//
// A write lands in the file's dirty buffer for each chunk it touches (a
// chunk-sized buffer from the memory cap plus the list of byte ranges
// written). A buffer is flushed when the chunk is full, on Flush/Fsync/
// Release, when the memory cap is reached, and after a few idle seconds.
// Flushing stores only the written ranges as one new part and appends them
// as slices to the chunk's map, so a 4 KiB write costs a 4 KiB part, not a
// whole-chunk read-modify-write. Chunks with many slices are compacted in
// the background into one part.
//
// # Lock order
//
// Engine.mu, then file.trunc, then file.mu. The memory cap is never acquired
// with file.mu or Engine.mu held. Registry transactions are never run with
// file.mu held.
package engine

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pfs-project/pfs/chunkstore"
	"github.com/pfs-project/pfs/internal/hugepages"
	"github.com/pfs-project/pfs/registry"
)

// Config configures Open. Use DefaultConfig and change what you need.
type Config struct {
	Dir         string // store directory; created on first use
	ChunkSize   int64  // chunk size for a new store; 0 keeps the store's (default 4 MiB)
	Compression string // "none" or "zstd" for a new store; "" keeps the store's
	Workers     int    // flush/fetch goroutines
	Memory      int64  // cap on all buffered and cached chunk data, bytes
	ReadOnly    bool
	Holder      string // written to the lock file, e.g. "mounted at /mnt/x"
	// Backend is where parts go, for a new store: "" or "local" (objects/
	// inside the store) or "s3://bucket/prefix". An existing store keeps
	// its own; naming another is refused.
	Backend string
	S3      S3Options // for an s3:// backend of a new store
	Logger  *slog.Logger
}

// Timings of background work.
const (
	idleFlushAfter = 5 * time.Second // a dirty chunk untouched this long is flushed
	idleTick       = time.Second
	// maxSlices: a chunk with more slices is compacted (rewritten whole).
	// A database adds a few slices per commit; at 16 it rewrote each 4 MiB
	// chunk every few commits (sqlite, W8: 7.9 s against 6.5-7.3 s at 64).
	// At 64 a compaction (reading, verifying and storing 4 MiB) still took
	// an eighth of the daemon's CPU in W8; at 128, W8 on fresh stores took
	// 6.7 -> 6.3 s and 6.1 -> 5.7 s, daemon CPU 5.7 -> 5.2 and 5.2 -> 4.8 s
	// (two runs of six interleaved rounds; on stores holding the Go tree
	// 6.2 -> 6.1 s in four), random writes (W7) the same in three rounds.
	// A chunk read from the store then loads up to 128 small parts (a
	// registry read and an MD5 of a few KiB each), and its map takes up to
	// ~5 KiB.
	maxSlices = 128
)

// Engine is an open store.
type Engine struct {
	cfg       Config
	log       *slog.Logger
	dir       string
	lock      *os.File
	format    Format
	chunkSize int64
	reg       *registry.Registry
	cs        *chunkstore.Store
	mem       *chunkstore.Memory
	cache     *chunkCache
	bufs      chan []byte  // idle chunk-sized buffers for reuse (see freeBufs)
	spare     sync.Pool    // more idle buffers, until the next collections
	flushing  atomic.Int64 // dirty chunks on their way into the store
	// fills bounds the gap fills of fragmented flushes running at once
	// (see fillGaps): each holds one loaded part outside the memory cap.
	fills     chan struct{}
	xattrless inoSet // inodes known to have no extended attributes

	// commitLocks serialize, per file (striped by inode), the commits that
	// rewrite its inode record and chunk maps: flush commits, compactions
	// and time updates. Concurrent flushes of one file otherwise conflict
	// on its inode on every try, and under a burst of random writes some
	// ran out of retries (EIO). Held only around the registry Update.
	commitLocks [64]sync.Mutex

	bgCtx    context.Context // for flushes that outlive the call that started them
	bgCancel context.CancelFunc
	bg       sync.WaitGroup // background goroutines: flushes, prefetches, compactions, idle flusher
	stop     chan struct{}

	mu         sync.Mutex // protects the following
	files      map[Ino]*file
	closed     bool
	compacting map[cacheKey]bool // chunks being compacted (one compaction each at a time)

	// compactHook, set by tests only, runs in each compaction between
	// storing the compacted part and committing it.
	compactHook func()

	failMu   sync.Mutex    // protects the following
	flushErr error         // error of the last failed flush
	failed   chan struct{} // closed, and replaced, when a flush fails
}

// updateFile is reg.Update for the commits that rewrite ino's inode record
// or chunk maps, under ino's commit lock (see commitLocks).
func (e *Engine) updateFile(ctx context.Context, ino Ino, fn func(*registry.Tx) error) error {
	defer e.lockCommits(ino)()
	return e.reg.Update(ctx, fn)
}

// lockCommits takes the commit locks of inos (in stripe order, so two
// callers never wait on each other) and returns their unlock. Namespace
// changes hold their directories' locks around their transaction: each
// rewrites its directory's inode, so concurrent creates and renames in one
// directory (pfs put's workers) would otherwise conflict on every try and
// could run out of retries. Hold it only around a registry Update.
func (e *Engine) lockCommits(inos ...Ino) (unlock func()) {
	n := uint64(len(e.commitLocks))
	var idx []int
	for _, ino := range inos {
		i := int(uint64(ino) % n)
		if !slices.Contains(idx, i) {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	for _, i := range idx {
		e.commitLocks[i].Lock()
	}
	return func() {
		for _, i := range idx {
			e.commitLocks[i].Unlock()
		}
	}
}

func (e *Engine) init() {
	e.mem = chunkstore.NewMemory(e.cfg.Memory)
	e.cache = newChunkCache(e)
	e.mem.SetReclaim(e.reclaim)
	e.bufs = make(chan []byte, freeBufs(e.cfg.Memory, e.chunkSize))
	e.fills = make(chan struct{}, max(1, e.cfg.Workers))
	e.files = make(map[Ino]*file)
	e.compacting = make(map[cacheKey]bool)
	e.stop = make(chan struct{})
	e.failed = make(chan struct{})
	e.bgCtx, e.bgCancel = context.WithCancel(context.Background())
}

// getBuf takes a chunk-sized buffer and its bytes from the memory cap,
// waiting while the cap is full. If a flush fails while it waits, it
// returns that error instead of waiting on: the memory it waits for may be
// held by dirty chunks that cannot be stored until the backend is back,
// and a writer must get EIO, not hang until then (issue 5).
func (e *Engine) getBuf(ctx context.Context) ([]byte, error) {
	if e.mem.TryAcquire(e.chunkSize) {
		return e.newBuf(), nil
	}
	e.failMu.Lock()
	failed := e.failed
	e.failMu.Unlock()
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-failed:
			e.failMu.Lock()
			err := e.flushErr
			e.failMu.Unlock()
			cancel(fmt.Errorf("memory cap full, and a flush failed: %w", err))
		case <-wctx.Done():
		}
	}()
	if err := e.mem.Acquire(wctx, e.chunkSize); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, context.Cause(wctx)
	}
	return e.newBuf(), nil
}

// flushFailed wakes the getBuf calls waiting for memory with err.
func (e *Engine) flushFailed(err error) {
	e.failMu.Lock()
	defer e.failMu.Unlock()
	e.flushErr = err
	close(e.failed)
	e.failed = make(chan struct{})
}

// tryGetBuf is getBuf without waiting; nil when the cap is full.
func (e *Engine) tryGetBuf() []byte {
	if !e.mem.TryAcquire(e.chunkSize) {
		return nil
	}
	return e.newBuf()
}

// putBuf returns a buffer from getBuf and its bytes.
func (e *Engine) putBuf(b []byte) {
	b = b[:cap(b)]
	select {
	case e.bufs <- b:
	default: // enough kept: the rest go back to the heap after a while
		e.spare.Put(&b)
	}
	e.mem.Release(e.chunkSize)
}

// freeBufs is how many idle chunk buffers the engine keeps for reuse: at
// most 8, and a sixteenth of the cap (outside the cap, within the fixed
// overhead ProcessMemory allows). Buffers that go back to the Go heap come
// out of it again as pages the runtime has since returned to the kernel;
// on a VM the first touch of such a page costs more than the MD5 of its
// bytes (a cold 2 GiB read spent twice the MD5's CPU time in it). Idle
// buffers beyond those wait in a sync.Pool, which the garbage collector
// empties: dropped at once, they piled up as garbage until the next
// collection (peak RSS with --memory 64MiB went from 100 to 130 MiB).
func freeBufs(memory, chunkSize int64) int {
	return int(max(1, min(8, memory/chunkSize/16)))
}

// newBuf returns an idle buffer or a new one; the caller has taken its
// bytes from the cap.
func (e *Engine) newBuf() []byte {
	select {
	case b := <-e.bufs:
		return b
	default:
	}
	if p, ok := e.spare.Get().(*[]byte); ok {
		return *p
	}
	b := make([]byte, e.chunkSize)
	// Before the pages are mapped: marked afterwards, they would stay
	// 4 KiB pages. A cold 2 GiB read filling the default cache went from
	// 564-585 to 838-877 MB/s with it.
	_ = hugepages.Advise(b)
	populate(b)
	return b
}

// populate maps all of a new buffer's pages in one call. On the VMs pfs
// runs on, a page fault costs 15-20 µs; a chunk buffer filled by 4 KiB
// writes or by a read took one per page (a random 4 KiB write into a new
// buffer cost four times a write into a mapped one), where one
// MADV_POPULATE_WRITE maps 4 MiB of memory the heap had before in under a
// millisecond. It does not make pages the process never had cheap: in
// 4 KiB pages those cost ~10 µs each to map and ~8 µs more at their first
// touch (measured), which is why chunk buffers are reused rather than
// allocated, and marked for huge pages before they are mapped. Kernels
// before 5.14 refuse it, and the pages then fault in as before.
func populate(b []byte) {
	_ = unix.Madvise(b, unix.MADV_POPULATE_WRITE)
}

// reclaim runs when a memory Acquire must wait: first drop cached chunks,
// then, if that was not enough, start flushing dirty buffers so their
// memory comes back when the flushes commit.
func (e *Engine) reclaim(need int64) {
	if e.cache.evict(need) >= need {
		return
	}
	e.flushFullest()
}

// flushFullest starts flushing the dirty chunks with the most written
// bytes, until the flushes in flight give back what every blocked writer
// waits for and keep each worker busy. Flushing every dirty chunk instead
// turned random writes over a file set as large as the cap into a storm:
// hundreds of chunks, each with a few scattered writes, flushed at once
// as fragmented parts, each then compacted; the fullest chunks give the
// most written bytes per part stored.
func (e *Engine) flushFullest() {
	want := (e.mem.WaitingBytes()+e.chunkSize-1)/e.chunkSize + int64(e.cs.Workers())
	n := want - e.flushing.Load()
	if n <= 0 {
		return
	}
	type candidate struct {
		f       *file
		idx     uint64
		written int
	}
	var cands []candidate
	e.mu.Lock()
	for _, f := range e.files {
		f.mu.Lock()
		for idx, dc := range f.dirty {
			cands = append(cands, candidate{f, idx, dc.written()})
		}
		f.mu.Unlock()
	}
	e.mu.Unlock()
	slices.SortFunc(cands, func(a, b candidate) int { return b.written - a.written })
	for _, c := range cands[:min(int64(len(cands)), n)] {
		c.f.mu.Lock()
		if dc := c.f.dirty[c.idx]; dc != nil {
			delete(c.f.dirty, c.idx)
			c.f.startFlushLocked(c.idx, dc)
		}
		c.f.mu.Unlock()
	}
}

// flushIdle starts flushing the dirty chunks untouched for idleFlushAfter.
func (e *Engine) flushIdle() {
	e.mu.Lock()
	files := make([]*file, 0, len(e.files))
	for _, f := range e.files {
		files = append(files, f)
	}
	e.mu.Unlock()
	cutoff := time.Now().Add(-idleFlushAfter)
	for _, f := range files {
		f.mu.Lock()
		for idx, dc := range f.dirty {
			if dc.lastWrite.Before(cutoff) {
				delete(f.dirty, idx)
				f.startFlushLocked(idx, dc)
			}
		}
		f.mu.Unlock()
	}
}

func (e *Engine) startBackground() {
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		t := time.NewTicker(idleTick)
		defer t.Stop()
		for {
			select {
			case <-e.stop:
				return
			case <-t.C:
				e.flushIdle()
			}
		}
	}()
}

// Close flushes every buffered write, stops the workers and releases the
// store. The Engine must not be used afterwards.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	files := make([]*file, 0, len(e.files))
	for _, f := range e.files {
		files = append(files, f)
	}
	e.mu.Unlock()
	var firstErr error
	if !e.cfg.ReadOnly {
		// Flush first, while the workers still run, so nothing written is
		// lost; then stop the idle flusher and wait for the stragglers
		// (prefetches, compactions); then sync and close the registry, and
		// only then the backend, which the registry's parts point into.
		for _, f := range files {
			if err := f.flush(context.Background()); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		close(e.stop)
	}
	e.bgCancel()
	e.bg.Wait()
	if !e.cfg.ReadOnly {
		if err := e.reg.Sync(); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if err := e.closeStores(); err != nil && firstErr == nil {
		firstErr = err
	}
	return firstErr
}

func (e *Engine) closeStores() error {
	var firstErr error
	if e.reg != nil {
		if err := e.reg.Close(); err != nil {
			firstErr = err
		}
		e.reg = nil
	}
	if e.cs != nil {
		if err := e.cs.Close(); err != nil && firstErr == nil {
			firstErr = err
		}
		e.cs = nil
	}
	if e.lock != nil {
		_ = e.lock.Close()
		e.lock = nil
	}
	return firstErr
}

// Sync makes every committed registry change durable.
func (e *Engine) Sync() error { return e.reg.Sync() }

// MemoryUsed reports the bytes of the memory cap in use (for tests and
// metrics).
func (e *Engine) MemoryUsed() int64 { return e.mem.Used() }
