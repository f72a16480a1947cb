// Package registry owns pfs's metadata: the file registry (inodes,
// directory entries, chunk maps, extended attributes) and the part
// registry, kept in a Badger key-value store. It is the only package that
// imports Badger, and Badger's errors never leave it: they become the
// sentinels in errors.go, wrapped with context.
//
// All access goes through a Tx: View runs a read-only transaction and
// Update a read-write one that is retried on conflict. The key schema is
// in keys.go and the value encodings are in codec.go.
package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/google/uuid"
	"golang.org/x/sys/unix"
)

// DefaultMemoryBudget is the memory budget used when Options.MemoryBudget
// is 0.
const DefaultMemoryBudget = 24 << 20

// MinMemoryBudget is the smallest accepted Options.MemoryBudget.
const MinMemoryBudget = 4 << 20

// maxAttempts bounds how often Update runs a transaction that conflicts.
// All inode allocations write the same counter key, so parallel creates
// conflict routinely; the jittered backoff spreads them out.
const maxAttempts = 20

// Options configures Open.
type Options struct {
	Dir      string // Badger directory; ignored when InMemory
	InMemory bool   // keep everything in memory (tests)

	// MemoryBudget is the heap Badger may use for memtables and caches, in
	// bytes; 0 means DefaultMemoryBudget. It is split as:
	//   - MemTableSize = budget/4, at most 2 memtables (the mutable one and
	//     one being flushed). Each memtable's skiplist arena is about
	//     1.3×MemTableSize, so memtables take up to ~0.65×budget.
	//   - IndexCacheSize = budget/5: SSTable indexes and bloom filters,
	//     bounded instead of growing with the registry.
	//   - no block cache: tables are stored uncompressed and read through
	//     their memory maps, so the kernel's page cache caches blocks.
	// On top of that come compaction's table builders (a few MiB each,
	// while compactions run) and a few MiB of fixed overhead. Measured with
	// the default budget, 200 000 files (inode + dirent + chunk each): about
	// 12 MiB of Badger heap live when idle, ~30 MiB heap in use at the peak
	// of bulk writing; Go's GC and scavenger decide how much RSS that
	// costs. The memtable WALs and SSTables are also memory-mapped; those
	// pages are file-backed and the kernel reclaims them under pressure.
	//
	// A transaction may write at most ~15% of MemTableSize bytes, and
	// MemTableSize×15%/96 entries (about 9 600 with the default), before
	// its write fails with ErrTooBig.
	MemoryBudget int64

	// SyncWrites makes every commit fsync. When false, durability against
	// power loss comes from Sync; a killed process (kill -9) still loses
	// nothing committed, because Badger has written it to the OS.
	SyncWrites bool

	ReadOnly bool // open without writing; Update returns ErrReadOnly

	// MustExist refuses to start an empty registry where one should be: a
	// store that has a format record has a registry, and a new empty one
	// would hide every file and make every part an orphan that fsck
	// --repair deletes.
	MustExist bool

	// MinFree is the free space (bytes) below which Grow refuses changes
	// with ErrNoSpace; Update goes on into it, so that deleting, and
	// recording parts already stored, work on a full disk. 0: no check.
	// DiskReserve gives a safe value for a memory budget.
	MinFree int64

	Logger *slog.Logger // receives Badger's warnings and errors; nil means slog.Default()
}

// Registry is the file and part registry. Its methods are safe for
// concurrent use.
type Registry struct {
	db       *badger.DB
	inMemory bool
	readOnly bool
	dir      string
	minFree  int64

	// commits counts committed updates. Sync records the count it made
	// durable, so an fsync with nothing new to sync costs nothing, and
	// concurrent fsyncs share one sync (group commit).
	commits atomic.Uint64
	syncMu  sync.Mutex // serializes syncs; protects synced and wals
	synced  uint64
	wals    map[string]*walFile // open memtable logs, for syncWAL
	// logDir is the registry directory, held open for syncWAL's listings:
	// opening it for each one was most of the listing's cost, ~40 µs per
	// fsync (sqlite, W8: 0.12 of its 0.14 s, of 3.3 s of daemon CPU).
	logDir *os.File

	// Values at or above valueThreshold go to Badger's value log instead
	// of the LSM tree; pfs never writes one (inline parts are at most
	// 32 KiB, the threshold at least 150 KiB), so Sync skips the value log
	// unless one was written.
	valueThreshold int64
	vlogUsed       atomic.Bool

	roomUntil atomic.Int64 // see Room; unix nanoseconds

	views snapshots // the read-only transaction views share (snapshot.go)
}

// Open opens (creating if needed) the registry described by opts. A new
// registry gets the root directory inode RootIno, owned by the calling
// process's uid and gid.
func Open(opts Options) (*Registry, error) {
	bopts, err := opts.badgerOptions()
	if err != nil {
		return nil, fmt.Errorf("registry: open: %w", err)
	}
	where := opts.Dir
	if opts.InMemory {
		where = "(in memory)"
	}
	if !opts.InMemory {
		if opts.MustExist {
			if _, err := os.Stat(filepath.Join(opts.Dir, badger.ManifestFilename)); err != nil {
				return nil, fmt.Errorf("registry: open %s: %w (the registry is missing or was emptied; restore it from a backup: starting an empty one would lose every file): %w", where, err, ErrCorrupt)
			}
		}
		if err := checkTables(bopts); err != nil {
			return nil, fmt.Errorf("registry: open %s: %w", where, err)
		}
	}
	db, err := openBadger(bopts)
	if err != nil && opts.ReadOnly && truncateNeeded(err) {
		// A crash left the memtable log with a torn or preallocated tail,
		// which read-only Badger will not replay. Recover it the way a
		// read-write open does (the tail holds no acknowledged write),
		// then open read-only as asked.
		if rw, rerr := openBadger(bopts.WithReadOnly(false)); rerr == nil {
			if cerr := rw.Close(); cerr == nil {
				db, err = openBadger(bopts)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("registry: open %s: %w", where, err)
	}
	r := &Registry{db: db, inMemory: opts.InMemory, readOnly: opts.ReadOnly, dir: opts.Dir, minFree: opts.MinFree,
		wals: map[string]*walFile{}, valueThreshold: bopts.ValueThreshold,
		views: snapshots{db: db}}
	if err := r.init(); err != nil {
		r.views.close()
		_ = db.Close()
		return nil, fmt.Errorf("registry: open %s: %w", where, err)
	}
	return r, nil
}

// levelZeroTables is how many level-0 tables make Badger compact them.
const levelZeroTables = 2

// baseLevelSize is the size Badger lets its first level below level 0
// reach before compacting it into the next; Badger's default is 10 MiB.
// The registry holds small files' bytes, so it grows fast: the Go source
// tree made 50 MB. At 10 MiB, untarring it left 20 MB above the last level,
// and the next mount began by compacting that (and rewriting the last
// level it overlaps: every level-0 table spans the whole key space, from
// parts' bytes to inodes) while a cold tar of the tree read it. At 64 MiB
// it stays in one level. Measured, interleaved: cold tar 4.70 -> 4.15 s
// and 5.19 -> 4.07 s (four rounds each; loopback's 4.61 s), untar 9.90 ->
// 9.44 s and 10.72 -> 10.00 s; with two copies of the tree (100 MB),
// untar 21.8 -> 20.7 s with 2.3 s less daemon CPU, tar 8.8 -> 8.5 s.
const baseLevelSize = 64 << 20

// badgerOptions translates opts, sized by the memory budget (see
// Options.MemoryBudget).
func (opts Options) badgerOptions() (badger.Options, error) {
	budget := opts.MemoryBudget
	switch {
	case budget == 0:
		budget = DefaultMemoryBudget
	case budget < MinMemoryBudget:
		return badger.Options{}, fmt.Errorf("memory budget %d is below the minimum %d", budget, MinMemoryBudget)
	}
	if opts.InMemory && opts.ReadOnly {
		return badger.Options{}, errors.New("an in-memory registry cannot be read-only")
	}
	if !opts.InMemory && opts.Dir == "" {
		return badger.Options{}, errors.New("no directory")
	}
	dir := opts.Dir
	if opts.InMemory {
		dir = ""
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	memTable := budget / 4
	// A transaction's batch is 15% of a memtable (badger db.go
	// checkAndSetOptions), and ValueThreshold may not exceed it. Keeping
	// every value below the threshold keeps values in the LSM tree, so the
	// value log stays empty and needs no garbage collection.
	maxBatch := memTable * 15 / 100
	return badger.DefaultOptions(dir).
		WithInMemory(opts.InMemory).
		WithReadOnly(opts.ReadOnly).
		WithSyncWrites(opts.SyncWrites).
		WithLogger(badgerLogger{logger.With("component", "badger")}).
		WithMetricsEnabled(false).
		WithMemTableSize(memTable).
		WithNumMemtables(2).
		WithIndexCacheSize(budget / 5).
		// Snappy needs a block cache of decompressed blocks, and its table
		// builders double compaction's heap; metadata is small next to the
		// file data, so we store it uncompressed and let the page cache
		// cache it.
		WithCompression(options.None).
		WithBlockCacheSize(0).
		// Close merges the level-0 tables into level 1, so a new mount
		// starts with too few to compact (Badger's merge at Close now
		// and then leaves the newest one): compacting them there made the
		// first reads of the next mount (a cold tar of the tree just
		// extracted) compete with the compaction for the CPU and search
		// more tables (tar of the Go tree cold 7.19 -> 6.88 s and 6.82 ->
		// 6.52 s, medians of three and four interleaved rounds; the
		// unmount took 0.43 s instead of 0.14).
		WithCompactL0OnClose(true).
		WithBaseLevelSize(baseLevelSize).
		WithNumLevelZeroTables(levelZeroTables).
		WithNumLevelZeroTablesStall(4).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithValueThreshold(min(1<<20, maxBatch)).
		WithValueLogFileSize(16 << 20).
		// A damaged block then fails the read instead of feeding garbage
		// to the decoder; CRC32C per block read.
		WithChecksumVerificationMode(options.OnBlockRead), nil
}

// openBadger is badger.Open, with a panic (Badger checks some invariants
// of its files with panics) turned into an error.
func openBadger(o badger.Options) (db *badger.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db = nil
			err = fmt.Errorf("badger: %v: %w", p, ErrCorrupt)
		}
	}()
	return badger.Open(o)
}

// init checks the schema version and, in a new registry, creates the
// root directory.
func (r *Registry) init() error {
	ctx := context.Background()
	if r.readOnly {
		return r.View(ctx, checkVersion)
	}
	return r.Update(ctx, func(tx *Tx) error {
		if err := checkVersion(tx); err != nil {
			return err
		}
		_, err := tx.GetInode(RootIno)
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		now := time.Now().UnixNano()
		return tx.PutInode(&Inode{
			Ino:   RootIno,
			ID:    uuid.New(),
			Mode:  syscall.S_IFDIR | 0o755,
			Uid:   uint32(os.Getuid()),
			Gid:   uint32(os.Getgid()),
			Nlink: 2,
			Atime: now,
			Mtime: now,
			Ctime: now,
		})
	})
}

// checkVersion checks the schema version key, and writes it if missing in
// an update transaction.
func checkVersion(tx *Tx) error {
	item, err := tx.txn.Get(keyVersion)
	if errors.Is(err, badger.ErrKeyNotFound) {
		if !tx.update {
			return nil // a read-only open of an empty registry
		}
		if err := tx.set(keyVersion, []byte{schemaVersion}); err != nil {
			return fmt.Errorf("schema version: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("schema version: %w", translate(err))
	}
	return item.Value(func(v []byte) error {
		if len(v) != 1 || v[0] != schemaVersion {
			return fmt.Errorf("schema version %x, want %d: %w", v, schemaVersion, ErrCorrupt)
		}
		return nil
	})
}

// Close closes the registry; committed transactions are durable after it.
func (r *Registry) Close() error {
	r.syncMu.Lock()
	for name, w := range r.wals {
		w.f.Close()
		delete(r.wals, name)
	}
	if r.logDir != nil {
		r.logDir.Close()
		r.logDir = nil
	}
	r.syncMu.Unlock()
	r.views.close()
	if err := r.db.Close(); err != nil {
		return fmt.Errorf("registry: close: %w", err)
	}
	return nil
}

// Commits returns how many updates have committed since Open.
func (r *Registry) Commits() uint64 { return r.commits.Load() }

// Sync makes all committed transactions durable on disk.
func (r *Registry) Sync() error {
	// Badger's Sync dereferences the memtable WAL, which neither an
	// in-memory nor a read-only DB has.
	if r.inMemory || r.readOnly {
		return nil
	}
	want := r.commits.Load()
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	if r.synced >= want {
		return nil // someone synced our commits while we waited
	}
	now := r.commits.Load() // everything committed so far is covered
	var err error
	if r.vlogUsed.Load() {
		err = r.db.Sync()
	} else {
		_, err = r.syncWAL()
	}
	if err != nil {
		return fmt.Errorf("registry: sync: %w", err)
	}
	r.synced = now
	return nil
}

// syncWAL fdatasyncs the memtable logs (Badger's NNNNN.mem files) that
// may hold unsynced commits and returns their names. Badger's own Sync
// also syncs the value log, which pfs leaves empty: on ext4 that fsync of
// an unchanged file still flushes the disk's cache, half of every fsync's
// cost (0.4 of 1.2 ms). It also syncs only the active memtable's log,
// while a commit may sit in one that was just rotated out and is not in a
// level-0 table yet: syncing every log there is covers that too. A commit
// that returned is in one of the logs listed after it, since Badger
// creates a log before writing to it; a log deleted meanwhile was flushed
// into a synced table. Badger writes only to the newest log, so an older
// one synced after a newer one was listed is complete on disk, and is not
// synced (and the disk's cache not flushed for it) again. Caller holds
// syncMu.
func (r *Registry) syncWAL() ([]string, error) {
	if r.logDir == nil {
		d, err := os.Open(r.dir)
		if err != nil {
			return nil, err
		}
		r.logDir = d
	}
	names, err := memLogs(r.logDir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", r.dir, err)
	}
	var synced []string
	live := map[string]bool{}
	for i, name := range names {
		live[name] = true
		w := r.wals[name]
		if w == nil {
			f, err := os.Open(filepath.Join(r.dir, name))
			if errors.Is(err, fs.ErrNotExist) {
				continue // flushed into a table and removed since the listing
			} else if err != nil {
				return nil, err
			}
			w = &walFile{f: f}
			r.wals[name] = w
		}
		if w.sealed {
			continue
		}
		if err := unix.Fdatasync(int(w.f.Fd())); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		w.sealed = i < len(names)-1
		synced = append(synced, name)
	}
	for name, w := range r.wals {
		if !live[name] {
			w.f.Close()
			delete(r.wals, name)
		}
	}
	return synced, nil
}

// walFile is an open memtable log. sealed: a newer log existed when it
// was last synced, so it has no more writes to sync.
type walFile struct {
	f      *os.File
	sealed bool
}

// memLogs lists the memtable logs in the open directory d, oldest first.
// Badger numbers them in the order it creates them. Each listing starts
// from the top: seeking to 0 makes the next getdents read the directory as
// it is now.
func memLogs(d *os.File) ([]string, error) {
	if _, err := d.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	type memLog struct {
		name string
		fid  uint64
	}
	var logs []memLog
	for _, name := range names {
		num, ok := strings.CutSuffix(name, ".mem")
		if !ok {
			continue
		}
		fid, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("memtable log %s: unexpected name", name)
		}
		logs = append(logs, memLog{name, fid})
	}
	slices.SortFunc(logs, func(a, b memLog) int { return cmp.Compare(a.fid, b.fid) })
	out := make([]string, len(logs))
	for i, l := range logs {
		out[i] = l.name
	}
	return out, nil
}

// View runs fn in a read-only transaction that sees a consistent snapshot.
// fn must not keep tx, or start another transaction.
func (r *Registry) View(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("registry: view: %w", err)
	}
	sn := r.views.acquire()
	defer r.views.release(sn)
	return fn(&Tx{txn: sn.txn, sn: sn})
}

// DiskReserve is the free space Badger needs with a memory budget to take
// the changes that free space or record what is already stored: a memtable
// is budget/4, its log file twice that, memory-mapped, and up to three logs
// and two new level-0 tables can exist at once.
func DiskReserve(budget int64) int64 {
	if budget == 0 {
		budget = DefaultMemoryBudget
	}
	return 2 * budget
}

// Grow is Update for changes that make the store bigger (new files,
// attributes, parts): it refuses them with ErrNoSpace once the registry's
// filesystem has less than Options.MinFree free, keeping the rest for
// Update's deletes and commits.
func (r *Registry) Grow(ctx context.Context, fn func(*Tx) error) error {
	if err := r.Room(); err != nil {
		return err
	}
	return r.Update(ctx, fn)
}

// Room returns ErrNoSpace when a Grow would be refused now. Callers whose
// transaction must also go through a lock of their own check Room first
// and then Update.
func (r *Registry) Room() error {
	if r.minFree <= 0 || r.inMemory || time.Now().UnixNano() < r.roomUntil.Load() {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(r.dir, &st); err == nil {
		free := int64(st.Bavail) * st.Bsize
		if free < r.minFree {
			return fmt.Errorf("registry: %d bytes free, %d kept for deletes: %w", free, r.minFree, ErrNoSpace)
		}
		if free-r.minFree >= roomSlack {
			r.roomUntil.Store(time.Now().Add(roomTTL).UnixNano())
		}
	}
	return nil
}

// With roomSlack bytes free above MinFree, Room trusts its last statfs for
// roomTTL: no writer fills that much in that time. A statfs was ~6 µs of
// the ~100 µs a small file's commit takes (instrumented untar).
const (
	roomSlack = 256 << 20
	roomTTL   = 100 * time.Millisecond
)

// Update runs fn in a read-write transaction and commits it. If the commit
// conflicts with a concurrent transaction, Update runs fn again in a new
// transaction, up to maxAttempts times in all, and then returns ErrConflict;
// fn must therefore be idempotent and must not keep results of a failed
// attempt. fn must not keep tx, or start another transaction. A transaction
// that grows past Badger's limit fails with ErrTooBig and is not retried:
// split the work. Cancelling ctx stops the retries.
func (r *Registry) Update(ctx context.Context, fn func(*Tx) error) error {
	if r.readOnly {
		return fmt.Errorf("registry: update: %w", ErrReadOnly)
	}
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("registry: update: %w", err)
		}
		err := r.try(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
		if attempt == maxAttempts {
			return fmt.Errorf("registry: update: %d attempts: %w", attempt, ErrConflict)
		}
		// Jittered backoff growing from up to 50µs to up to ~6ms.
		d := time.Duration(rand.Int64N(int64(50*time.Microsecond) << min(attempt, 7)))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("registry: update: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// try runs fn once in a new transaction and commits it. A conflict is
// returned as the bare badger.ErrConflict, for Update to retry.
func (r *Registry) try(fn func(*Tx) error) error {
	txn := r.db.NewTransaction(true)
	defer txn.Discard()
	if err := fn(&Tx{txn: txn, update: true, r: r}); err != nil {
		return err
	}
	err := txn.Commit()
	if !errors.Is(err, badger.ErrConflict) {
		// A failed commit may still have written some of its entries.
		r.views.committed()
	}
	if err == nil {
		r.commits.Add(1)
		return nil
	}
	if errors.Is(err, badger.ErrConflict) {
		return err
	}
	return fmt.Errorf("registry: commit: %w", translate(err))
}

// translate turns Badger's sentinel errors into ours.
func translate(err error) error {
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return ErrNotFound
	case errors.Is(err, badger.ErrTxnTooBig):
		return ErrTooBig
	case errors.Is(err, badger.ErrConflict):
		return ErrConflict
	case errors.Is(err, badger.ErrReadOnlyTxn):
		return ErrReadOnly
	}
	return err
}

// badgerLogger passes Badger's warnings and errors to slog and drops its
// info and debug messages.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(format string, args ...any) {
	b.l.Error(trimNewline(fmt.Sprintf(format, args...)))
}

func (b badgerLogger) Warningf(format string, args ...any) {
	b.l.Warn(trimNewline(fmt.Sprintf(format, args...)))
}

func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}

func trimNewline(s string) string {
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return s
}

// truncateNeeded reports whether Badger refused a read-only open because
// a memtable log needs truncating. Badger formats that error into its
// message with %v along the way, so errors.Is cannot find it.
func truncateNeeded(err error) bool {
	return errors.Is(err, badger.ErrTruncateNeeded) || strings.Contains(err.Error(), badger.ErrTruncateNeeded.Error())
}
