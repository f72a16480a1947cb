package hugepages

import (
	"bufio"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// thpAvailable reports whether the kernel has transparent huge pages, and
// so whether MADV_HUGEPAGE can succeed.
func thpAvailable() bool {
	_, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled")
	return err == nil
}

// vmFlags returns the VmFlags of the mapping of this process that holds
// addr, from /proc/self/smaps ("hg" is MADV_HUGEPAGE).
func vmFlags(t *testing.T, addr uintptr) []string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 {
			in = lo <= addr && addr < hi
			continue
		}
		if flags, ok := strings.CutPrefix(line, "VmFlags:"); ok && in {
			return strings.Fields(flags)
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return nil
}

func hasFlag(flags []string, flag string) bool {
	for _, f := range flags {
		if f == flag {
			return true
		}
	}
	return false
}

// TestAdviseMarksMapping: Advise marks the mapping of a buffer, so that
// its pages can come as huge pages when touched (whether they do depends
// on the kernel finding free 2 MiB pages, which a test cannot count on).
func TestAdviseMarksMapping(t *testing.T) {
	mem, err := unix.Mmap(-1, 0, 8<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Munmap(mem) })
	base := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
	// A buffer that starts 2 MiB-aligned inside the mapping, 4 MiB long.
	off := int((base+hugeSize-1)&^(hugeSize-1) - base)
	buf := mem[off : off+4<<20]
	err = Advise(buf)
	if !thpAvailable() {
		if err == nil {
			t.Fatal("Advise succeeded on a kernel without THP")
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	if flags := vmFlags(t, addr); !hasFlag(flags, "hg") {
		t.Fatalf("buffer's mapping not marked: VmFlags %v", flags)
	}
	if err := Advise(nil); err != nil {
		t.Fatalf("Advise(nil): %v", err)
	}
}

// TestSweepMarksHeap: a sweep marks the heap's mappings, and the mapping
// of a large heap object allocated after the anchor is one of them.
func TestSweepMarksHeap(t *testing.T) {
	anchor = make([]byte, 64)
	big := make([]byte, 64<<20)
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(big)))
	marked := sweep(nil, uintptr(unsafe.Pointer(unsafe.SliceData(anchor))))
	if !covered(marked, span{addr, addr + uintptr(len(big))}) {
		t.Fatalf("the heap object at %#x is not in the spans swept: %x", addr, marked)
	}
	if !thpAvailable() {
		return
	}
	if flags := vmFlags(t, addr); !hasFlag(flags, "hg") {
		t.Fatalf("heap mapping not marked: VmFlags %v", flags)
	}
	// A mapping outside the heap's run, the test binary's own text, is
	// left alone.
	text := reflect.ValueOf(hasFlag).Pointer()
	if covered(marked, span{text, text + 1}) {
		t.Fatal("the binary's text was swept as heap")
	}
}

// TestHeapSpans: the run of adjacent anonymous read-write mappings that
// holds the address, and nothing past a gap, a reservation or a file.
func TestHeapSpans(t *testing.T) {
	rw := &procfs.ProcMapPermissions{Read: true, Write: true, Private: true}
	none := &procfs.ProcMapPermissions{Private: true}
	rx := &procfs.ProcMapPermissions{Read: true, Execute: true, Private: true}
	maps := []*procfs.ProcMap{
		{StartAddr: 0x400000, EndAddr: 0x1663000, Perms: rx, Inode: 1, Pathname: "/bin/pfs"},
		{StartAddr: 0x1663000, EndAddr: 0x36ae000, Perms: rw},             // bss: a gap before the heap
		{StartAddr: 0x1e8d46000000, EndAddr: 0x1e8d47000000, Perms: none}, // reserved
		{StartAddr: 0x1e8d47000000, EndAddr: 0x1e8d47400000, Perms: rw},   // heap
		{StartAddr: 0x1e8d47400000, EndAddr: 0x1e8d49000000, Perms: rw},   // heap, marked apart
		{StartAddr: 0x1e8d49000000, EndAddr: 0x1e8d4c000000, Perms: rw, Pathname: "[anon: Go: heap]"},
		{StartAddr: 0x1e8d4c000000, EndAddr: 0x1e8d50000000, Perms: none},                         // reserved
		{StartAddr: 0x1e8d50000000, EndAddr: 0x1e8d50400000, Perms: rw},                           // beyond the reservation
		{StartAddr: 0x7f86d07fe000, EndAddr: 0x7f86d07ff000, Perms: none},                         // guard page
		{StartAddr: 0x7f86d07ff000, EndAddr: 0x7f86d0fff000, Perms: rw},                           // thread stack
		{StartAddr: 0x7f86d0fff000, EndAddr: 0x7f86d1000000, Perms: rw, Inode: 2, Pathname: "/x"}, // a file
		{StartAddr: 0x7f86d1000000, EndAddr: 0x7f86d1400000, Perms: rw, Pathname: "[stack]"},
	}
	got := heapSpans(maps, 0x1e8d47400000+123)
	want := []span{{0x1e8d47000000, 0x1e8d47400000}, {0x1e8d47400000, 0x1e8d49000000}, {0x1e8d49000000, 0x1e8d4c000000}}
	if len(got) != len(want) {
		t.Fatalf("got %x, want %x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %x, want %x", got, want)
		}
	}
	if got := heapSpans(maps, 0x7f86d0800000); len(got) != 1 || got[0] != (span{0x7f86d07ff000, 0x7f86d0fff000}) {
		t.Fatalf("a lone mapping: got %x", got)
	}
	if got := heapSpans(maps, 0x1e8d4d000000); got != nil {
		t.Fatalf("an address in a reservation: got %x", got)
	}
	if got := heapSpans(maps, 0x500000); got != nil {
		t.Fatalf("an address in the text: got %x", got)
	}
	if got := heapSpans(maps, 0x7f86d1000000); got != nil {
		t.Fatalf("an address in the main stack: got %x", got)
	}
}
