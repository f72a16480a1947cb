package hugepages

import (
	"bufio"
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"
	"unsafe"

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
		line := sc.Bytes()
		if m, err := parseMapsLine(line); err == nil {
			in = m.start <= addr && addr < m.end
			continue
		}
		if in && bytes.HasPrefix(line, []byte("VmFlags:")) {
			return strings.Fields(string(line[len("VmFlags:"):]))
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
	off := int((base+Size-1)&^(Size-1) - base)
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
	// The thread stack of a C thread, or any mapping outside the heap's
	// run, is left alone: the test binary's own text is one.
	text := reflect.ValueOf(hasFlag).Pointer()
	if covered(marked, span{text, text + 1}) {
		t.Fatal("the binary's text was swept as heap")
	}
}

func TestParseMapsLine(t *testing.T) {
	for _, tc := range []struct {
		line        string
		start, end  uintptr
		perms       string
		anon, valid bool
	}{
		{"1e8d47000000-1e8d47400000 rw-p 00000000 00:00 0 ", 0x1e8d47000000, 0x1e8d47400000, "rw-p", true, true},
		{"c000000000-c004000000 rw-p 00000000 00:00 0                          [anon: Go: heap]", 0xc000000000, 0xc004000000, "rw-p", true, true},
		{"7f86f5e00000-7f86f8600000 rw-p 00000000 00:00 0", 0x7f86f5e00000, 0x7f86f8600000, "rw-p", true, true},
		{"01663000-036ae000 rw-p 00000000 00:00 0                          [heap]", 0x1663000, 0x36ae000, "rw-p", false, true},
		{"7ffd5a1b4000-7ffd5a1d5000 rw-p 00000000 00:00 0                          [stack]", 0x7ffd5a1b4000, 0x7ffd5a1d5000, "rw-p", false, true},
		{"00400000-01663000 r-xp 00000000 fd:01 1835049                    /var/tmp/w3/pfs base", 0x400000, 0x1663000, "r-xp", false, true},
		{"7f873d2db000-7f873d2dd000 rw-s 00000000 00:01 1234 /memfd:x (deleted)", 0x7f873d2db000, 0x7f873d2dd000, "rw-s", false, true},
		{"", 0, 0, "", false, false},
		{"zz-10 rw-p 0 0 0", 0, 0, "", false, false},
		{"20-10 rw-p 0 0 0", 0, 0, "", false, false},
		{"10 rw-p 0 0 0", 0, 0, "", false, false},
		{"10-20 rw-p 0 0", 0, 0, "", false, false},
	} {
		m, err := parseMapsLine([]byte(tc.line))
		if (err == nil) != tc.valid {
			t.Errorf("%q: err %v, want valid=%v", tc.line, err, tc.valid)
			continue
		}
		if !tc.valid {
			continue
		}
		if m.start != tc.start || m.end != tc.end || m.perms != tc.perms || m.anon != tc.anon {
			t.Errorf("%q: got %#x-%#x %s anon=%v, want %#x-%#x %s anon=%v", tc.line, m.start, m.end, m.perms, m.anon, tc.start, tc.end, tc.perms, tc.anon)
		}
	}
}

// TestHeapSpans: the run of adjacent anonymous read-write mappings that
// holds the address, and nothing past a gap, a reservation or a file.
func TestHeapSpans(t *testing.T) {
	var maps []mapping
	for _, line := range []string{
		"00400000-01663000 r-xp 00000000 fd:01 1 /bin/pfs",
		"01663000-036ae000 rw-p 00000000 00:00 0",            // bss: a gap before the heap
		"1e8d46000000-1e8d47000000 ---p 00000000 00:00 0",    // reserved
		"1e8d47000000-1e8d47400000 rw-p 00000000 00:00 0",    // heap
		"1e8d47400000-1e8d49000000 rw-p 00000000 00:00 0",    // heap, marked apart
		"1e8d49000000-1e8d4c000000 rw-p 00000000 00:00 0",    // heap
		"1e8d4c000000-1e8d50000000 ---p 00000000 00:00 0",    // reserved
		"1e8d50000000-1e8d50400000 rw-p 00000000 00:00 0",    // beyond the reservation
		"7f86d07fe000-7f86d07ff000 ---p 00000000 00:00 0",    // guard page
		"7f86d07ff000-7f86d0fff000 rw-p 00000000 00:00 0",    // thread stack
		"7f86d0fff000-7f86d1000000 rw-p 00000000 fd:01 2 /x", // a file
	} {
		m, err := parseMapsLine([]byte(line))
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		maps = append(maps, m)
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
}

// FuzzParseMapsLine: any line parses or is refused, without a panic, and
// what parses is a non-empty range.
func FuzzParseMapsLine(f *testing.F) {
	f.Add("1e8d47000000-1e8d47400000 rw-p 00000000 00:00 0 ")
	f.Add("c000000000-c004000000 rw-p 00000000 00:00 0 [anon: Go: heap]")
	f.Add("00400000-01663000 r-xp 00000000 fd:01 1835049 /bin/pfs")
	f.Add("ffffffffffffffff-0 rw-p 0 0 0")
	f.Fuzz(func(t *testing.T, line string) {
		m, err := parseMapsLine([]byte(line))
		if err != nil {
			return
		}
		if m.start >= m.end {
			t.Fatalf("%q: empty range %#x-%#x", line, m.start, m.end)
		}
		if f := strings.Fields(line); m.anon && f[4] != "0" {
			t.Fatalf("%q: anonymous with inode %s", line, f[4])
		}
	})
}
