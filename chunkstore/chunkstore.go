// Package chunkstore owns the bytes of pfs: it stores and loads parts
// (immutable objects holding chunk data) through a backend, on a bounded
// pool of workers, hashing each part with MD5 when it is saved and checking
// that hash on every load, compressing with zstd when asked. It also owns
// the memory cap (Memory) that bounds every chunk buffer in the process.
//
// It knows nothing of files, inodes or FUSE: callers hand it bytes and get
// back a PartMeta to record wherever they keep metadata.
package chunkstore

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/semaphore"

	"github.com/pfs-project/pfs/chunkstore/backend"
)

// Compression is the codec of a stored part.
type Compression uint8

const (
	// None stores the plain bytes.
	None Compression = 0
	// Zstd stores zstd frames; a part that does not shrink is stored raw
	// (with None) instead.
	Zstd Compression = 1
)

func (c Compression) String() string {
	switch c {
	case None:
		return "none"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("compression(%d)", uint8(c))
}

// ParseCompression parses "none" or "zstd" ("" is none).
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "", "none":
		return None, nil
	case "zstd":
		return Zstd, nil
	}
	return None, fmt.Errorf("unknown compression %q (want none or zstd)", s)
}

// Config configures a Store.
type Config struct {
	// Workers bounds the CPU work on parts done at once: hashing,
	// compressing, verifying, decompressing.
	Workers int
	// IODepth bounds backend transfers in flight at once. Transfers mostly
	// wait (on fsync, the disk, the network), so more of them than workers
	// keeps the disk busy while the CPUs hash; 0 means 4 per worker, at
	// least 8.
	IODepth     int
	Compression Compression // codec for new parts
	Logger      *slog.Logger
}

// PartMeta is what a caller must keep to load a part again.
type PartMeta struct {
	Key         string
	Size        uint32 // stored bytes
	PlainSize   uint32
	MD5         [16]byte // of the plain bytes
	Compression Compression
}

// Store saves and loads parts through a backend on a bounded worker pool.
type Store struct {
	be      backend.Backend
	cfg     Config
	log     *slog.Logger
	workers *semaphore.Weighted // CPU work
	io      *semaphore.Weighted // backend transfers
	enc     *zstd.Encoder       // EncodeAll/DecodeAll are safe for concurrent use
	dec     *zstd.Decoder
}

// New returns a Store over be.
func New(be backend.Backend, cfg Config) (*Store, error) {
	if cfg.Workers < 1 {
		return nil, fmt.Errorf("chunkstore: workers %d: must be at least 1", cfg.Workers)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("chunkstore: zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(MaxPartSize))
	if err != nil {
		return nil, fmt.Errorf("chunkstore: zstd decoder: %w", err)
	}
	depth := cfg.IODepth
	if depth <= 0 {
		depth = max(8, 4*cfg.Workers)
	}
	return &Store{be: be, cfg: cfg, log: log, enc: enc, dec: dec,
		workers: semaphore.NewWeighted(int64(cfg.Workers)), io: semaphore.NewWeighted(int64(depth))}, nil
}

// MaxPartSize bounds the plain size of one part.
const MaxPartSize = 64 << 20

// Backend returns the backend the store writes to.
func (s *Store) Backend() backend.Backend { return s.be }

// Workers returns the size of the worker pool.
func (s *Store) Workers() int { return s.cfg.Workers }

// Save hashes data, compresses it if configured (holding a worker slot),
// and stores it durably under key (holding an I/O slot). Save does not keep
// data.
func (s *Store) Save(ctx context.Context, key string, data []byte) (PartMeta, error) {
	meta, stored, err := s.Encode(ctx, key, data)
	if err != nil {
		return PartMeta{}, err
	}
	if err := s.io.Acquire(ctx, 1); err != nil {
		return PartMeta{}, fmt.Errorf("save part %s: %w", key, err)
	}
	defer s.io.Release(1)
	if err := s.be.Save(ctx, key, stored); err != nil {
		return PartMeta{}, fmt.Errorf("save part %s: %w", key, err)
	}
	return meta, nil
}

// Encode is Save without the store: it hashes data and compresses it if
// configured (holding a worker slot), and returns the part's metadata and
// the bytes to store, which may share data's memory. A caller that keeps
// the bytes somewhere of its own (the engine puts small parts in the
// registry, in the transaction that commits them) loads them again
// through a backend that serves them.
func (s *Store) Encode(ctx context.Context, key string, data []byte) (PartMeta, []byte, error) {
	if len(data) > MaxPartSize {
		return PartMeta{}, nil, fmt.Errorf("save part %s: %d bytes is over the %d limit", key, len(data), MaxPartSize)
	}
	if err := s.workers.Acquire(ctx, 1); err != nil {
		return PartMeta{}, nil, fmt.Errorf("save part %s: %w", key, err)
	}
	defer s.workers.Release(1)
	meta := PartMeta{Key: key, PlainSize: uint32(len(data)), MD5: md5.Sum(data)}
	stored := data
	if s.cfg.Compression == Zstd && len(data) > 0 {
		z := s.enc.EncodeAll(data, make([]byte, 0, len(data)/2))
		if len(z) < len(data) {
			stored, meta.Compression = z, Zstd
		}
	}
	meta.Size = uint32(len(stored))
	return meta, stored, nil
}

// LoadInto is Load reading into dst when the part is stored uncompressed
// and fits in cap(dst); the result then shares dst's memory.
func (s *Store) LoadInto(ctx context.Context, meta PartMeta, dst []byte) ([]byte, error) {
	if meta.Compression == None && int(meta.Size) <= cap(dst) {
		ctx = backend.WithDst(ctx, dst)
	}
	return s.Load(ctx, meta)
}

// Load fetches a part (holding an I/O slot), checks its size and MD5 and
// decompresses it (holding a worker slot), and returns its plain bytes. A mismatch is retried once
// (a flaky read is not corruption) and then returned as an error wrapping
// ErrChecksum; a missing object wraps ErrNotFound.
func (s *Store) Load(ctx context.Context, meta PartMeta) ([]byte, error) {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var data []byte
		data, err = s.loadOnce(ctx, meta)
		if err == nil {
			return data, nil
		}
		if !errors.Is(err, ErrChecksum) {
			return nil, err
		}
		s.log.Warn("part failed verification, retrying", "part", meta.Key, "err", err)
	}
	return nil, err
}

func (s *Store) loadOnce(ctx context.Context, meta PartMeta) ([]byte, error) {
	if err := s.io.Acquire(ctx, 1); err != nil {
		return nil, fmt.Errorf("load part %s: %w", meta.Key, err)
	}
	raw, err := s.be.Load(ctx, meta.Key, 0, -1)
	s.io.Release(1)
	if err != nil {
		if errors.Is(err, backend.ErrNotFound) {
			return nil, fmt.Errorf("load part %s: %w", meta.Key, ErrNotFound)
		}
		return nil, fmt.Errorf("load part %s: %w", meta.Key, err)
	}
	return s.Decode(ctx, meta, raw)
}

// Decode checks a part's stored bytes, as read from wherever they were
// kept, against its size and MD5 and decompresses them (holding a worker
// slot), as Load does after fetching them. A mismatch wraps ErrChecksum.
func (s *Store) Decode(ctx context.Context, meta PartMeta, raw []byte) ([]byte, error) {
	if len(raw) != int(meta.Size) {
		return nil, fmt.Errorf("part %s: want %d stored bytes got %d: %w", meta.Key, meta.Size, len(raw), ErrChecksum)
	}
	if err := s.workers.Acquire(ctx, 1); err != nil {
		return nil, fmt.Errorf("load part %s: %w", meta.Key, err)
	}
	defer s.workers.Release(1)
	plain := raw
	var err error
	switch meta.Compression {
	case None:
	case Zstd:
		plain, err = s.dec.DecodeAll(raw, make([]byte, 0, meta.PlainSize))
		if err != nil {
			return nil, fmt.Errorf("part %s: decompress: %v: %w", meta.Key, err, ErrChecksum)
		}
	default:
		return nil, fmt.Errorf("part %s: unknown compression %d: %w", meta.Key, meta.Compression, ErrChecksum)
	}
	if got := md5.Sum(plain); got != meta.MD5 || len(plain) != int(meta.PlainSize) {
		return nil, fmt.Errorf("part %s: want md5 %s got %s: %w", meta.Key,
			hex.EncodeToString(meta.MD5[:]), hex.EncodeToString(got[:]), ErrChecksum)
	}
	return plain, nil
}

// Delete removes a part's object. A part that is already gone is not an
// error: deletes are retried after crashes.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.be.Delete(ctx, key); err != nil && !errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("delete part %s: %w", key, err)
	}
	return nil
}

// Close releases the codecs and the backend.
func (s *Store) Close() error {
	s.dec.Close()
	_ = s.enc.Close()
	return s.be.Close()
}
