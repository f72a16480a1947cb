// Package engine owns "a file is a registry entry plus parts": it opens a
// store directory (lock, format record, registry, backend), implements the
// namespace operations as registry transactions, and turns reads and writes
// of byte ranges into chunk buffers that the chunkstore flushes and fetches
// through its worker pool under one memory cap.
//
// The FUSE layer (package fs) and the offline CLI both sit on top of it;
// it knows nothing of FUSE.
package engine

import (
	"context"
	"log/slog"
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
	Logger      *slog.Logger
}

// Engine is an open store.
type Engine struct {
	cfg Config
	log *slog.Logger
}

// file is the shared state of one inode's open data.
type file struct{}

// Open opens (creating if needed) the store in cfg.Dir and takes its lock.
func Open(ctx context.Context, cfg Config) (*Engine, error) { return nil, errTODO }

// Close flushes every buffered write, stops the workers and releases the
// store. The Engine must not be used afterwards.
func (e *Engine) Close() error { return errTODO }
