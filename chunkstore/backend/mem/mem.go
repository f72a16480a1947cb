// Package mem is the reference backend: objects live in a map in memory.
// It is meant for tests of the layers above and as the model the other
// backends are checked against by backendtest; nothing it stores survives
// the process.
package mem

import (
	"context"
	"fmt"
	"sync"

	"github.com/pfs-project/pfs/chunkstore/backend"
)

var _ backend.Backend = (*Mem)(nil)

// Mem is an in-memory backend. Objects are copied in on Save and out on
// Load, so callers may reuse their buffers.
type Mem struct {
	mu   sync.RWMutex      // protects the following
	objs map[string][]byte // key → object; slices are never modified
}

// New returns an empty in-memory backend.
func New() *Mem {
	return &Mem{objs: make(map[string][]byte)}
}

// Save implements backend.Backend.
func (m *Mem) Save(ctx context.Context, key string, data []byte) error {
	if err := check(ctx, "save", key); err != nil {
		return err
	}
	obj := make([]byte, len(data))
	copy(obj, data)
	m.mu.Lock()
	m.objs[key] = obj
	m.mu.Unlock()
	return nil
}

// Load implements backend.Backend.
func (m *Mem) Load(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	if err := check(ctx, "load", key); err != nil {
		return nil, err
	}
	m.mu.RLock()
	obj, ok := m.objs[key]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("mem: load %s: %w", key, backend.ErrNotFound)
	}
	n, err := backend.CheckRange(int64(len(obj)), offset, length)
	if err != nil {
		return nil, fmt.Errorf("mem: load %s: %w", key, err)
	}
	out := make([]byte, n)
	copy(out, obj[offset:])
	return out, nil
}

// Stat implements backend.Backend.
func (m *Mem) Stat(ctx context.Context, key string) (int64, error) {
	if err := check(ctx, "stat", key); err != nil {
		return 0, err
	}
	m.mu.RLock()
	obj, ok := m.objs[key]
	m.mu.RUnlock()
	if !ok {
		return 0, fmt.Errorf("mem: stat %s: %w", key, backend.ErrNotFound)
	}
	return int64(len(obj)), nil
}

// Delete implements backend.Backend.
func (m *Mem) Delete(ctx context.Context, key string) error {
	if err := check(ctx, "delete", key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objs[key]; !ok {
		return fmt.Errorf("mem: delete %s: %w", key, backend.ErrNotFound)
	}
	delete(m.objs, key)
	return nil
}

// List implements backend.Backend. It calls fn on a snapshot taken before
// the first call, without holding the lock, so fn may use the backend.
func (m *Mem) List(ctx context.Context, fn func(key string, size int64) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: list: %w", err)
	}
	type entry struct {
		key  string
		size int64
	}
	m.mu.RLock()
	entries := make([]entry, 0, len(m.objs))
	for k, obj := range m.objs {
		entries = append(entries, entry{k, int64(len(obj))})
	}
	m.mu.RUnlock()
	for _, e := range entries {
		if err := fn(e.key, e.size); err != nil {
			return err
		}
	}
	return nil
}

// Usage implements backend.Backend. Memory has no fixed capacity, so total
// is 0.
func (m *Mem) Usage(ctx context.Context) (total, free uint64, err error) {
	return 0, 0, nil
}

// Close implements backend.Backend. It drops all objects.
func (m *Mem) Close() error {
	m.mu.Lock()
	m.objs = nil
	m.mu.Unlock()
	return nil
}

// check fails early when ctx is done or key is empty.
func check(ctx context.Context, op, key string) error {
	if key == "" {
		return fmt.Errorf("mem: %s: empty key: %w", op, backend.ErrInvalidKey)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: %s %s: %w", op, key, err)
	}
	return nil
}
