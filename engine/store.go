package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/pfs-project/pfs/chunkstore"
	"github.com/pfs-project/pfs/chunkstore/backend"
	"github.com/pfs-project/pfs/chunkstore/backend/local"
	"github.com/pfs-project/pfs/chunkstore/backend/s3"
	"github.com/pfs-project/pfs/registry"
)

// FormatVersion is the store layout this build writes; it reads this and
// every older one. Version 2 keeps a local backend's objects in one level
// of fan-out directories, made with the store, instead of two (version 1),
// so saving an object in a new store does not make a directory first; a
// pfs that knows only version 1 would not find them, and refuses the store.
const FormatVersion = 2

// Names inside a store directory.
const (
	formatFile  = "format.json"
	lockFile    = "lock"
	registryDir = "registry"
	objectsDir  = "objects"
)

// Format is the store's format record, written once when the store is
// created. Settings in it cannot change afterwards.
type Format struct {
	Version     int        `json:"version"`
	ChunkSize   int64      `json:"chunk_size"`
	Compression string     `json:"compression"`
	Backend     string     `json:"backend"` // "local" or "s3://bucket/prefix"
	S3          *S3Options `json:"s3,omitempty"`
}

// S3Options say how to reach an S3-compatible service. Credentials are
// never stored: they come from the standard AWS_* environment variables or
// the shared credentials file at every mount.
type S3Options struct {
	Endpoint  string `json:"endpoint"` // host[:port]; "" is AWS
	Region    string `json:"region,omitempty"`
	PathStyle bool   `json:"path_style,omitempty"`
	NoSSL     bool   `json:"no_ssl,omitempty"`
}

// registryMemory is what Badger may use for memtables and caches: an
// eighth of the chunk cap, between 8 and 64 MiB. It is part of the
// overhead on top of the cap, so a small cap gets a small registry.
func registryMemory(chunkCap int64) int64 {
	return min(max(chunkCap/8, 8<<20), 64<<20)
}

// Open opens (creating if needed) the store in cfg.Dir and takes its lock.
// A second process opening the same store gets an error wrapping
// *LockedError.
func Open(ctx context.Context, cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", cfg.Dir, err)
	}
	if err := makeDir(dir, cfg.ReadOnly); err != nil {
		return nil, err
	}
	// A foreign directory is refused before the lock file is made in it;
	// the check is repeated under the lock below.
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	// Lock before looking inside: a process creating the store at the same
	// moment must not be mistaken for a foreign non-empty directory.
	lf, err := lockStore(dir, cfg.Holder, cfg.ReadOnly)
	if err != nil {
		return nil, err
	}
	if err := checkDir(dir); err != nil {
		lf.Close()
		return nil, err
	}
	e := &Engine{cfg: cfg, log: log, dir: dir, lock: lf}
	ok := false
	defer func() {
		if !ok {
			e.closeStores()
		}
	}()
	created := false
	if e.format, created, err = loadFormat(dir, cfg); err != nil {
		return nil, err
	}
	e.chunkSize = e.format.ChunkSize
	if cfg.Memory < 2*e.chunkSize {
		return nil, fmt.Errorf("%w: memory %d: must be at least two chunks of this store (%d bytes)", ErrInvalid, cfg.Memory, 2*e.chunkSize)
	}
	comp, err := chunkstore.ParseCompression(e.format.Compression)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", dir, err)
	}
	// Growing changes stop while the disk still has room for Badger's
	// memory-mapped logs (see registry.ErrNoSpace); parts stop there too.
	minFree := registry.DiskReserve(registryMemory(cfg.Memory))
	if e.reg, err = registry.Open(registry.Options{
		Dir:          filepath.Join(dir, registryDir),
		MemoryBudget: registryMemory(cfg.Memory),
		MinFree:      minFree,
		ReadOnly:     cfg.ReadOnly,
		MustExist:    !created,
		Logger:       log,
	}); err != nil {
		return nil, fmt.Errorf("store %s: %w", dir, err)
	}
	be, err := openBackend(ctx, dir, e.format, minFree)
	if err != nil {
		return nil, err
	}
	if created {
		// Written only once the backend has answered, so a store whose
		// creation failed (a mistyped bucket, wrong credentials) is not
		// pinned to those settings: the next try may name others.
		if err := writeFormat(dir, e.format); err != nil {
			_ = be.Close()
			return nil, err
		}
	}
	be = &inlineBackend{reg: e.reg, be: be}
	if e.cs, err = chunkstore.New(be, chunkstore.Config{Workers: cfg.Workers, Compression: comp, Logger: log}); err != nil {
		_ = be.Close()
		return nil, err
	}
	e.init()
	if !cfg.ReadOnly {
		if err := e.collect(ctx); err != nil {
			return nil, fmt.Errorf("store %s: collecting garbage: %w", dir, err)
		}
		e.startBackground()
	}
	ok = true
	return e, nil
}

// sameFS reports whether two paths are on one filesystem.
func sameFS(a, b string) bool {
	var sa, sb syscall.Stat_t
	return syscall.Stat(a, &sa) == nil && syscall.Stat(b, &sb) == nil && sa.Dev == sb.Dev
}

// makeDir makes sure dir exists and is a directory.
func makeDir(dir string, readOnly bool) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if readOnly {
			return fmt.Errorf("store %s does not exist", dir)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create store %s: %w", dir, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("store %s: %w", dir, err)
	case !st.IsDir():
		return fmt.Errorf("store %s: %w", dir, ErrNotDir)
	}
	return nil
}

// CheckDir reports whether dir may become or already is a store, without
// changing anything: nil for a store, an empty or missing directory, and
// the error Open would give for a file or a foreign directory. Callers
// that write into the store before opening it (a daemon's log) ask first.
func CheckDir(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("store %s: %w", dir, err)
	case !st.IsDir():
		return fmt.Errorf("store %s: %w", dir, ErrNotDir)
	}
	return checkDir(dir)
}

// checkDir refuses a directory that is neither a store nor empty, so a
// mistyped --store never scatters pfs files among someone's data.
func checkDir(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, formatFile)); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("store %s: %w", dir, err)
	}
	for _, de := range ents {
		switch de.Name() {
		case lockFile, "pfs.log", registryDir, objectsDir, formatFile, formatFile + ".tmp":
			// Left by a creation that failed before writing the format,
			// or made by one running now: the check before the lock
			// races its temp file and the rename into place.
		default:
			return fmt.Errorf("store %s: not a pfs store (no %s) and not empty", dir, formatFile)
		}
	}
	return nil
}

// lockStore takes an exclusive flock on STORE/lock, which dies with the
// process, so a crashed daemon never leaves a stale lock. The file says who
// holds it, for the error the next process gets.
func lockStore(dir, holder string, readOnly bool) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store %s: lock: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			le := &LockedError{Dir: dir}
			le.Pid, le.Holder = ReadLock(dir)
			return nil, le
		}
		return nil, fmt.Errorf("store %s: lock: %w", dir, err)
	}
	if holder == "" {
		holder = "pfs " + filepath.Base(os.Args[0])
	}
	// Write in place, then cut: a reader never sees an empty file.
	msg := fmt.Sprintf("%d\n%s\n", os.Getpid(), holder)
	if _, err := f.WriteAt([]byte(msg), 0); err == nil {
		_ = f.Truncate(int64(len(msg)))
	}
	return f, nil
}

// ReadLock returns what the lock file of the store in dir says about its
// holder: the pid and what it does. Zero values when unknown.
func ReadLock(dir string) (pid int, holder string) {
	b, err := os.ReadFile(filepath.Join(dir, lockFile))
	if err != nil {
		return 0, ""
	}
	lines := strings.SplitN(string(b), "\n", 3)
	pid, _ = strconv.Atoi(strings.TrimSpace(lines[0]))
	if len(lines) > 1 {
		holder = strings.TrimSpace(lines[1])
	}
	return pid, holder
}

// loadFormat reads the format record and refuses settings that conflict
// with it. For a new store it returns the record to write (created), which
// Open writes with writeFormat once the backend works.
func loadFormat(dir string, cfg Config) (Format, bool, error) {
	path := filepath.Join(dir, formatFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if cfg.ReadOnly {
			return Format{}, false, fmt.Errorf("store %s: no %s", dir, formatFile)
		}
		f := Format{Version: FormatVersion, ChunkSize: cfg.ChunkSize, Compression: cfg.Compression, Backend: cfg.Backend}
		switch {
		case f.Backend == "":
			f.Backend = "local"
		case strings.HasPrefix(f.Backend, "s3://"):
			if _, err := s3.ParseURL(f.Backend); err != nil {
				return Format{}, false, fmt.Errorf("%w: backend: %v", ErrInvalid, err)
			}
			o := cfg.S3
			f.S3 = &o
		case f.Backend != "local":
			return Format{}, false, fmt.Errorf("%w: backend %q: want local or s3://bucket/prefix", ErrInvalid, f.Backend)
		}
		if f.ChunkSize == 0 {
			f.ChunkSize = DefaultChunkSize
		}
		if f.Compression == "" {
			f.Compression = "none"
		}
		return f, true, nil
	}
	if err != nil {
		return Format{}, false, fmt.Errorf("store %s: %w", dir, err)
	}
	var f Format
	if err := json.Unmarshal(b, &f); err != nil {
		return Format{}, false, fmt.Errorf("store %s: %s is damaged: %w", dir, formatFile, err)
	}
	switch {
	case f.Version > FormatVersion:
		return Format{}, false, fmt.Errorf("store %s has format version %d; this pfs reads up to version %d: upgrade pfs", dir, f.Version, FormatVersion)
	case f.Version < 1:
		return Format{}, false, fmt.Errorf("store %s: %s has no valid version", dir, formatFile)
	case f.ChunkSize < MinChunkSize || f.ChunkSize > MaxChunkSize || f.ChunkSize&(f.ChunkSize-1) != 0:
		return Format{}, false, fmt.Errorf("store %s: %s has invalid chunk size %d", dir, formatFile, f.ChunkSize)
	case cfg.ChunkSize != 0 && cfg.ChunkSize != f.ChunkSize:
		return Format{}, false, fmt.Errorf("%w: store %s has chunk size %d; it cannot change to %d", ErrInvalid, dir, f.ChunkSize, cfg.ChunkSize)
	case cfg.Compression != "" && cfg.Compression != f.Compression:
		return Format{}, false, fmt.Errorf("%w: store %s uses compression %s; it cannot change to %s", ErrInvalid, dir, f.Compression, cfg.Compression)
	case cfg.Backend != "" && cfg.Backend != f.Backend:
		return Format{}, false, fmt.Errorf("%w: store %s uses backend %s; it cannot change to %s", ErrInvalid, dir, f.Backend, cfg.Backend)
	case cfg.S3 != (S3Options{}) && (f.S3 == nil || cfg.S3 != *f.S3):
		return Format{}, false, fmt.Errorf("%w: store %s was created with other S3 settings (%+v); they cannot change", ErrInvalid, dir, f.S3)
	case f.Backend != "local" && !strings.HasPrefix(f.Backend, "s3://"):
		return Format{}, false, fmt.Errorf("store %s uses backend %q, which this pfs cannot open", dir, f.Backend)
	}
	return f, false, nil
}

// writeFormat writes the format record of a new store.
func writeFormat(dir string, f Format) error {
	b, _ := json.MarshalIndent(f, "", "  ")
	if err := writeFileSync(filepath.Join(dir, formatFile), append(b, '\n')); err != nil {
		return fmt.Errorf("store %s: %w", dir, err)
	}
	return nil
}

// writeFileSync writes a small file durably: temp, fsync, rename, fsync dir.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Dir returns the store directory.
func (e *Engine) Dir() string { return e.dir }

// ChunkSize returns the store's chunk size.
func (e *Engine) ChunkSize() int64 { return e.chunkSize }

// Format returns the store's format record.
func (e *Engine) Format() Format { return e.format }

// openBackend opens where the store's parts live.
func openBackend(ctx context.Context, dir string, f Format, reserve int64) (backend.Backend, error) {
	if f.Backend == "local" {
		layout := local.OneLevel
		if f.Version == 1 {
			layout = local.TwoLevel
		}
		be, err := local.New(filepath.Join(dir, objectsDir), layout)
		if err != nil {
			return nil, fmt.Errorf("store %s: objects: %w", dir, err)
		}
		if sameFS(filepath.Join(dir, objectsDir), filepath.Join(dir, registryDir)) {
			be.SetReserve(reserve)
		}
		return be, nil
	}
	cfg, err := s3.ParseURL(f.Backend)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", dir, err)
	}
	if o := f.S3; o != nil {
		if o.Endpoint != "" {
			cfg.Endpoint = o.Endpoint
		}
		cfg.Region, cfg.PathStyle, cfg.UseSSL = o.Region, o.PathStyle, !o.NoSSL
	}
	be, err := s3.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store %s: backend %s: %w", dir, f.Backend, err)
	}
	return be, nil
}
