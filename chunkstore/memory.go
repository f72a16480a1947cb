package chunkstore

import (
	"context"
	"fmt"
	"sync"
)

// Memory is the one accounting of chunk buffers in the process: dirty
// write buffers, parts in flight and the read cache all hold bytes of it.
// Acquire blocks when the cap is reached (backpressure) until Release
// frees enough. Waiters are served first come, first served, so a large
// request is not starved by small ones.
//
// When a caller must wait, Memory calls the reclaim hook (set once with
// SetReclaim, before use) so the owner can evict cached chunks and start
// flushing dirty ones. The hook runs without Memory's lock held and must not
// block on Memory itself.
type Memory struct {
	size    int64
	reclaim func(need int64)

	mu      sync.Mutex // protects the following
	used    int64
	waiters []*memWaiter
}

type memWaiter struct {
	n     int64
	ready chan struct{} // closed when the bytes were granted
}

// NewMemory returns a cap of size bytes.
func NewMemory(size int64) *Memory { return &Memory{size: size, reclaim: func(int64) {}} }

// SetReclaim sets the hook called when an Acquire must wait.
func (m *Memory) SetReclaim(fn func(need int64)) { m.reclaim = fn }

// Size returns the cap.
func (m *Memory) Size() int64 { return m.size }

// Used returns the bytes held now.
func (m *Memory) Used() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used
}

// Waiting reports whether some Acquire is blocked; holders of reclaimable
// memory (the read cache) check it to give memory back promptly.
func (m *Memory) Waiting() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.waiters) > 0
}

// WaitingBytes returns the bytes blocked Acquires wait for, so a reclaim
// hook can free enough for all of them, not only for the one calling it.
func (m *Memory) WaitingBytes() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for _, w := range m.waiters {
		n += w.n
	}
	return n
}

// TryAcquire takes n bytes if that is possible without waiting.
func (m *Memory) TryAcquire(n int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.waiters) == 0 && m.used+n <= m.size {
		m.used += n
		return true
	}
	return false
}

// Acquire takes n bytes, waiting while the cap is full. It must not be
// called with a lock held that a Release or the reclaim hook needs.
func (m *Memory) Acquire(ctx context.Context, n int64) error {
	if n > m.size {
		return fmt.Errorf("acquire %d bytes of %d: %w", n, m.size, ErrTooLarge)
	}
	if m.TryAcquire(n) {
		return nil
	}
	m.mu.Lock()
	if len(m.waiters) == 0 && m.used+n <= m.size {
		m.used += n
		m.mu.Unlock()
		return nil
	}
	w := &memWaiter{n: n, ready: make(chan struct{})}
	m.waiters = append(m.waiters, w)
	m.mu.Unlock()

	m.reclaim(n)
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		m.mu.Lock()
		granted := true
		for i, x := range m.waiters {
			if x == w {
				m.waiters = append(m.waiters[:i], m.waiters[i+1:]...)
				granted = false
				break
			}
		}
		m.mu.Unlock()
		if granted {
			m.Release(n)
		} else {
			m.wake()
		}
		return ctx.Err()
	}
}

// Release returns n bytes and wakes the waiters that now fit.
func (m *Memory) Release(n int64) {
	m.mu.Lock()
	m.used -= n
	if m.used < 0 {
		m.mu.Unlock()
		panic("chunkstore: Memory released more than acquired")
	}
	m.mu.Unlock()
	m.wake()
}

func (m *Memory) wake() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.waiters) > 0 && m.used+m.waiters[0].n <= m.size {
		w := m.waiters[0]
		m.waiters = m.waiters[1:]
		m.used += w.n
		close(w.ready)
	}
}
