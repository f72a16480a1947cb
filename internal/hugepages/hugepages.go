// Package hugepages asks the kernel to back pfs's large memory, its chunk
// buffers and the Go heap, with transparent huge pages (THP) where the
// system leaves that to each process (THP "madvise", as on the VMs pfs is
// benchmarked on, and on Ubuntu).
//
// On those VMs the first touch of a 4 KiB page costs about 11 µs, against
// 0.3-6 µs per 4 KiB when it comes with a 2 MiB page (256 MiB touched,
// measured). A daemon that fills a 1 GiB cache, or whose registry (Badger)
// builds tables and memtables in fresh heap, spends more CPU on those
// faults than on the MD5 of the bytes: an untar of the Go tree took 90 000
// faults. The Go runtime no longer marks its heap MADV_HUGEPAGE itself
// (Go 1.21.1 stopped), so pfs does: Advise for a buffer it allocates and is
// about to fill, and Watch for the heap as it grows.
package hugepages

import (
	"context"
	"fmt"
	"runtime/metrics"
	"strings"
	"time"
	"unsafe"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// hugeSize is the huge page size of x86-64 and arm64 with 4 KiB pages.
const hugeSize = 2 << 20

// Advise marks the 2 MiB-aligned range around b MADV_HUGEPAGE, so that the
// pages of b not yet touched come as huge pages. The range may reach into
// memory next to b; b must lie in memory the process maps privately and
// anonymously (a Go heap allocation). It fails where the kernel has no THP.
func Advise(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return advise(span{start, start + uintptr(len(b))})
}

func advise(s span) error {
	lo := s.start &^ (hugeSize - 1)
	hi := (s.end + hugeSize - 1) &^ (hugeSize - 1)
	// The kernel takes an address, not a Go pointer: nothing here is
	// dereferenced, and the memory stays the caller's.
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, lo, hi-lo, unix.MADV_HUGEPAGE); errno != 0 {
		return fmt.Errorf("madvise %#x-%#x MADV_HUGEPAGE: %w", lo, hi, errno)
	}
	return nil
}

// minHeap is how much memory the runtime holds before Watch marks its heap.
// An idle daemon's heap of ~10 MiB in huge pages took 12 MiB of them and
// 10 MiB more resident memory (19.8 -> 29.5 MiB), for faults that cost it
// a few tens of milliseconds once.
const minHeap = 64 << 20

// anchor is a heap object: Watch finds the heap's mappings by its address.
// It is allocated at run time, as an initialized package variable could be
// laid out in the binary's data instead.
var anchor []byte

// Watch marks the Go heap's mappings MADV_HUGEPAGE as the heap grows, until
// ctx is done. The runtime maps new heap memory as new mappings, which do
// not inherit the mark, so it looks again whenever the memory the runtime
// holds grew: every millisecond while it grows, backing off to 100 ms while it
// does not. It leaves a heap alone until the runtime holds minHeap bytes.
// Run it once per process.
func Watch(ctx context.Context) {
	sample := []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
	var last uint64
	var marked []span
	const fast, slow = time.Millisecond, 100 * time.Millisecond
	wait := fast
	anchor = make([]byte, 64)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if total := sample[0].Value.Uint64(); total >= minHeap && total >= last+hugeSize {
			last = total
			marked = sweep(marked, uintptr(unsafe.Pointer(unsafe.SliceData(anchor))))
			wait = fast
		} else {
			wait = min(2*wait, slow)
		}
		t.Reset(wait)
	}
}

// sweep marks the mappings of the heap that holds addr that are not within
// a span marked before, and returns the spans marked now.
func sweep(marked []span, addr uintptr) []span {
	maps, err := readMaps()
	if err != nil {
		return marked
	}
	heap := heapSpans(maps, addr)
	for _, s := range heap {
		if !covered(marked, s) {
			_ = advise(s) // best effort: no THP, no gain, nothing lost
		}
	}
	return heap
}

func covered(marked []span, s span) bool {
	for _, m := range marked {
		if m.start <= s.start && s.end <= m.end {
			return true
		}
	}
	return false
}

type span struct{ start, end uintptr }

func readMaps() ([]*procfs.ProcMap, error) {
	self, err := procfs.Self()
	if err != nil {
		return nil, err
	}
	return self.ProcMaps()
}

// isHeap reports whether m may be part of the Go heap: private, anonymous
// (no file, no path or an [anon:NAME] one) and read-write.
func isHeap(m *procfs.ProcMap) bool {
	p := m.Perms
	return p != nil && p.Read && p.Write && !p.Execute && p.Private && m.Inode == 0 &&
		(m.Pathname == "" || strings.HasPrefix(m.Pathname, "[anon:"))
}

// heapSpans returns the run of adjacent private anonymous read-write
// mappings that holds addr: the Go runtime maps its heap upwards from one
// base, so the heap's mapped part is one such run (the rest of its arenas
// is reserved, with no access). Thread stacks and the runtime's other
// mappings lie elsewhere, each with a guard or a gap around it; those are
// left alone, as a stack marked would take a huge page for a few KiB.
func heapSpans(maps []*procfs.ProcMap, addr uintptr) []span {
	at := -1
	for i, m := range maps {
		if isHeap(m) && m.StartAddr <= addr && addr < m.EndAddr {
			at = i
			break
		}
	}
	if at < 0 {
		return nil
	}
	lo, hi := at, at
	for lo > 0 && isHeap(maps[lo-1]) && maps[lo-1].EndAddr == maps[lo].StartAddr {
		lo--
	}
	for hi+1 < len(maps) && isHeap(maps[hi+1]) && maps[hi].EndAddr == maps[hi+1].StartAddr {
		hi++
	}
	var spans []span
	for _, m := range maps[lo : hi+1] {
		spans = append(spans, span{m.StartAddr, m.EndAddr})
	}
	return spans
}
