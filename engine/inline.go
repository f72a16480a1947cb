package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/pfs-project/pfs/chunkstore/backend"
	"github.com/pfs-project/pfs/registry"
)

// inlineMax is the largest part kept in the registry instead of the
// backend: half the smallest chunk size, so a full chunk is always an
// object. Small files, database pages and random writes make parts this
// small; as registry values they cost no object file, no fsync of it and
// no fsync of its directory, and an fsync(2) of the file becomes one
// registry sync. Measured on the 2-core VM: an untar of 1 209 Go source
// files took 1.96 s with every part an object file.
const inlineMax = MinChunkSize / 2

// inlineBackend stores parts of up to inlineMax bytes as registry blobs
// and larger ones in the real backend. The chunkstore above it checks
// every part's MD5 on load, wherever it lives.
type inlineBackend struct {
	reg *registry.Registry
	be  backend.Backend
}

var _ backend.Backend = (*inlineBackend)(nil)

func (b *inlineBackend) Save(ctx context.Context, key string, data []byte) error {
	if len(data) > inlineMax {
		return b.be.Save(ctx, key, data)
	}
	err := b.reg.Grow(ctx, func(tx *registry.Tx) error { return tx.PutBlob(key, data) })
	if err != nil {
		return fmt.Errorf("inline part %s: %w", key, err)
	}
	return nil
}

func (b *inlineBackend) Load(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	var data []byte
	err := b.reg.View(ctx, func(tx *registry.Tx) error {
		var err error
		data, err = tx.GetBlob(key)
		return err
	})
	if errors.Is(err, registry.ErrNotFound) {
		return b.be.Load(ctx, key, offset, length)
	}
	if err != nil {
		return nil, fmt.Errorf("inline part %s: %w", key, err)
	}
	n, err := backend.CheckRange(int64(len(data)), offset, length)
	if err != nil {
		return nil, fmt.Errorf("inline part %s: %w", key, err)
	}
	return data[offset : offset+n], nil
}

func (b *inlineBackend) Stat(ctx context.Context, key string) (int64, error) {
	var size int64
	var ok bool
	err := b.reg.View(ctx, func(tx *registry.Tx) error {
		var err error
		size, ok, err = tx.HasBlob(key)
		return err
	})
	if err != nil {
		return 0, err
	}
	if ok {
		return size, nil
	}
	return b.be.Stat(ctx, key)
}

func (b *inlineBackend) Delete(ctx context.Context, key string) error {
	err := b.reg.Update(ctx, func(tx *registry.Tx) error { return tx.DeleteBlob(key) })
	if errors.Is(err, registry.ErrNotFound) {
		return b.be.Delete(ctx, key)
	}
	return err
}

func (b *inlineBackend) List(ctx context.Context, fn func(key string, size int64) error) error {
	type blob struct {
		key  string
		size int64
	}
	var blobs []blob
	err := b.reg.View(ctx, func(tx *registry.Tx) error {
		return tx.Blobs(func(key string, size int64) error {
			blobs = append(blobs, blob{key, size})
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, bl := range blobs {
		if err := fn(bl.key, bl.size); err != nil {
			return err
		}
	}
	return b.be.List(ctx, fn)
}

func (b *inlineBackend) Usage(ctx context.Context) (uint64, uint64, error) { return b.be.Usage(ctx) }

func (b *inlineBackend) Close() error { return b.be.Close() }
