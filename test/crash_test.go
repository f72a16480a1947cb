package test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pfs-project/pfs/internal/proc"
	"github.com/pfs-project/pfs/test/internal/crashdata"
)

// crashArgs are the mount flags of the crash test: small chunks, so that a
// file of a few hundred KiB is many parts and a round is quick, and a small
// memory cap, so that dirty chunks are flushed under pressure in the middle
// of writes as well as on fsync and close.
var crashArgs = []string{"--chunk-size", "64KiB", "--memory", "2MiB", "--workers", "2"}

const (
	crashChunk = 64 << 10
	crashBlock = crashdata.BlockSize // the workload's unit
	crashGone  = 3                   // crashload's exit code when the mount went away
)

// crashKinds are the moments of the kills, by the operation that just
// began: mid-flush (fsync, close), mid-delete (unlink, a shrinking
// truncate, a rename over a file), mid-commit of a write under memory
// pressure, and anywhere.
var crashKinds = []string{"fsync", "unlink", "close", "trunc", "write", "rename", "fsync", "any"}

// TestCrashConsistency runs the crashload workload on a mount and kills
// the daemon with SIGKILL at chosen moments, 32 times. After each kill it
// cleans up the dead mount (umount -l), mounts the store again and checks
// that
//
//   - the names in the round's directory are those of the operations that
//     returned (plus or minus the one in flight),
//   - every file holds only blocks the workload wrote there (or zeros),
//     never bytes that were never written and never data a completed
//     truncate had cut,
//   - every chunk is the old or the new content of each write: a write
//     visible in a chunk is visible in all of that chunk it wrote,
//   - every file whose fsync (or close, which commits) returned holds the
//     data it held then, except where later operations changed it,
//   - pfs fsck finds the store consistent and the objects on disk are
//     exactly the parts in use: uncommitted parts were collected (by the
//     mount in even rounds, by fsck --repair before it in odd ones),
//     nothing leaks over the rounds.
func TestCrashConsistency(t *testing.T) {
	const rounds = 32
	load := crashloadBin(t)
	store := newStore(t)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	logs := t.TempDir() // the workload's logs: on disk, outside the mount
	rng := rand.New(rand.NewPCG(4, 4))
	var total crashStats
	kills := map[string]int{}
	mountAt(t, store, mnt, crashArgs...)
	for r := 0; r < rounds; r++ {
		kind := crashKinds[r%len(crashKinds)]
		dir := filepath.Join(mnt, fmt.Sprintf("r%02d", r))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		logPath := filepath.Join(logs, fmt.Sprintf("r%02d.log", r))
		skip := 30 + rng.IntN(150)
		jitter := time.Duration(rng.IntN(3000)) * time.Microsecond
		at := crashRound(t, load, store, dir, logPath, uint64(1000+r), kind, skip, jitter)
		kills[kind]++

		detach(t, mnt)
		// Odd rounds collect what the crash left with fsck --repair
		// before mounting; even rounds leave it to the mount.
		repaired := 0
		if r%2 == 1 {
			repaired = crashRepair(t, store)
			fsckClean(t, store, fmt.Sprintf("after fsck --repair of crash round %d", r))
		}
		before := logSize(store)
		mountAt(t, store, mnt, crashArgs...)
		parts, orphans := collected(logSince(t, store, before))
		st := checkCrashRound(t, dir, logPath)
		st.collectedParts, st.collectedFiles, st.repairedParts = parts, orphans, repaired
		if parts+orphans+repaired > 0 {
			st.collectRounds = 1
		}
		total.add(st)
		t.Logf("round %d: killed at %q (after %d ops, +%s); checked %d files, %d blocks, %d chunks, %d fsync and %d close points; fsck --repair removed %d objects, the mount collected %d parts, %d unlinked files",
			r, at, skip, jitter, st.files, st.blocks, st.chunks, st.fsyncPoints, st.closePoints, repaired, parts, orphans)
		if t.Failed() {
			t.Fatalf("round %d: the store is not consistent after a kill at %q; operation log: %s", r, at, logPath)
		}

		// Keep this round's files for the next round to live with, and
		// delete the previous round's through the mount.
		if r > 0 {
			if err := os.RemoveAll(filepath.Join(mnt, fmt.Sprintf("r%02d", r-1))); err != nil {
				t.Fatalf("rm -r the files of round %d: %v", r-1, err)
			}
		}
		unmountPfs(t, mnt)
		sum := fsckClean(t, store, fmt.Sprintf("after crash round %d", r))
		// fsck lists objects (and inline parts) no part names as orphans,
		// so a clean fsck means nothing leaked; small parts live in the
		// registry, so there may be fewer object files than parts.
		if objs := objectFiles(t, store); int64(len(objs)) > sum.parts {
			t.Fatalf("round %d: %d objects under STORE/objects but fsck counts only %d parts in use: uncommitted or deleted parts leak", r, len(objs), sum.parts)
		}
		total.fscks++
		mountAt(t, store, mnt, crashArgs...)
	}

	// Nothing may stay behind once everything is deleted.
	if err := os.RemoveAll(filepath.Join(mnt, fmt.Sprintf("r%02d", rounds-1))); err != nil {
		t.Fatal(err)
	}
	unmountPfs(t, mnt)
	fsckClean(t, store, "after deleting every file")
	if objs := objectFiles(t, store); len(objs) != 0 {
		t.Errorf("after deleting every file: want no objects under STORE/objects, got %d, e.g. %s", len(objs), objs[0])
	}

	var k []string
	for _, kind := range slices.Sorted(maps.Keys(kills)) {
		k = append(k, fmt.Sprintf("%s %d", kind, kills[kind]))
	}
	summary := fmt.Sprintf("crash consistency: %d rounds of kill -9 (at %s); checked %d files, %d blocks, %d chunks, %d fsync and %d close durability points, %d fscks clean; fsck --repair removed %d objects and remounts collected %d uncommitted parts and %d unlinked files, in %d rounds",
		rounds, strings.Join(k, ", "), total.files, total.blocks, total.chunks, total.fsyncPoints, total.closePoints, total.fscks,
		total.repairedParts, total.collectedParts, total.collectedFiles, total.collectRounds)
	t.Log(summary)
	fmt.Println(summary)
}

// crashRound runs the workload in dir and kills the daemon just after the
// workload announced an operation of the given kind (any kind for "any"),
// once skip operations have passed, and jitter later. It returns the
// announcement it killed at.
func crashRound(t *testing.T, load, store, dir, logPath string, seed uint64, kind string, skip int, jitter time.Duration) string {
	t.Helper()
	w := startLoad(t, load, "workload", "-dir", dir, "-log", logPath, "-seed", strconv.FormatUint(seed, 10), "-ops", "2000")
	at := "the end of the workload"
	for n := 1; ; n++ {
		line, err := w.out.ReadString('\n')
		if err != nil {
			break // the workload ended; kill an idle daemon
		}
		if f := strings.Fields(line); n > skip && len(f) >= 3 && (kind == "any" || f[2] == kind) {
			at = strings.TrimSpace(line)
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, w.out) }() // never let it block on stdout
	time.Sleep(jitter)                                // where in the operation the kill lands
	killDaemon(t, store)
	switch code := waitCmd(t, w.cmd, 2*time.Minute, "crashload workload"); code {
	case crashGone:
	case 0:
		t.Logf("the workload finished before the kill")
	default:
		t.Fatalf("crashload workload: exit %d before or after the kill, want %d (mount gone): an operation failed on a live mount?\nstderr: %s\nlog: %s",
			code, crashGone, w.stderr, readLog(store))
	}
	return at
}

// crashRepair runs pfs fsck --repair on a store a crash left behind: it
// must succeed, and find nothing but what an interrupted flush or delete
// leaves (parts recorded but never committed or not yet deleted, and
// their objects; opening the store read-write already collects most of
// that). It returns how many objects it removed.
func crashRepair(t *testing.T, store string) int {
	t.Helper()
	before := len(objectFiles(t, store))
	stdout, stderr, code := runPfs(t, "fsck", "--repair", "--store", store)
	if code != 0 || stderr != "" {
		t.Fatalf("pfs fsck --repair after a crash: want exit 0 and no stderr, got %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	for _, line := range strings.Split(stdout, "\n") {
		if kind, ok := strings.CutPrefix(line, "problem: "); ok && !strings.HasPrefix(kind, "orphan-") {
			t.Errorf("pfs fsck --repair after a crash: %q; want only orphan parts and objects (uncommitted or half-deleted parts), no inconsistency", line)
		}
	}
	return before - len(objectFiles(t, store))
}

var collectedRE = regexp.MustCompile(`msg="collected what an earlier run left behind" parts=(\d+) unlinked_files=(\d+)`)

// collected returns what a mount's garbage collection reported in log.
func collected(log string) (parts, files int) {
	if m := collectedRE.FindStringSubmatch(log); m != nil {
		parts, _ = strconv.Atoi(m[1])
		files, _ = strconv.Atoi(m[2])
	}
	return parts, files
}

// crashStats counts what the checker verified.
type crashStats struct {
	files, blocks, chunks          int
	fsyncPoints, closePoints       int
	fscks                          int
	collectedParts, collectedFiles int
	repairedParts                  int
	collectRounds                  int
}

func (s *crashStats) add(o crashStats) {
	s.files += o.files
	s.blocks += o.blocks
	s.chunks += o.chunks
	s.fsyncPoints += o.fsyncPoints
	s.closePoints += o.closePoints
	s.fscks += o.fscks
	s.collectedParts += o.collectedParts
	s.collectedFiles += o.collectedFiles
	s.repairedParts += o.repairedParts
	s.collectRounds += o.collectRounds
}

// crashBlockData is crashload's block (package crashdata).
var crashBlockData = crashdata.Block

// parseCrashBlock returns the fid, cid and offset of a block crashload
// wrote; ok is false if b is anything else (a mix, garbage, a torn block).
func parseCrashBlock(b []byte) (fid, cid uint32, off int64, ok bool) {
	if !bytes.HasPrefix(b, []byte("pfscrash")) {
		return 0, 0, 0, false
	}
	fid = binary.LittleEndian.Uint32(b[8:])
	cid = binary.LittleEndian.Uint32(b[12:])
	off = int64(binary.LittleEndian.Uint64(b[16:]))
	return fid, cid, off, bytes.Equal(b, crashBlockData(fid, cid, off))
}

// crashOp is one operation of the workload's log.
type crashOp struct {
	seq      int
	kind     string // create open write fsync close trunc rename unlink
	name, to string
	fid      uint32
	off, n   int64 // write
	size     int64 // trunc
	done     bool  // it returned ("E seq" logged)
}

// parseCrashLog reads crashload's operation log: "B <seq> <kind> <args>"
// before each operation, "E <seq>" after it returned.
func parseCrashLog(t *testing.T, path string) []*crashOp {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ops []*crashOp
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fl := strings.Fields(line)
		bad := func() { t.Fatalf("%s: bad line %q", path, line) }
		if len(fl) < 2 {
			bad()
		}
		seq, err := strconv.Atoi(fl[1])
		if err != nil {
			bad()
		}
		num := func(i int) int64 {
			if i >= len(fl) {
				bad()
			}
			v, err := strconv.ParseInt(fl[i], 10, 64)
			if err != nil {
				bad()
			}
			return v
		}
		switch fl[0] {
		case "E":
			if seq != len(ops) || ops[seq-1].done {
				t.Fatalf("%s: %q does not end the last operation begun", path, line)
			}
			ops[seq-1].done = true
			continue
		case "B":
		default:
			bad()
		}
		if seq != len(ops)+1 || len(fl) < 3 {
			bad()
		}
		if len(ops) > 0 && !ops[len(ops)-1].done {
			t.Fatalf("%s: operation %d began before operation %d returned", path, seq, seq-1)
		}
		op := &crashOp{seq: seq, kind: fl[2]}
		switch op.kind {
		case "create", "open":
			op.name, op.fid = fl[3], uint32(num(4))
		case "write":
			op.fid, op.off, op.n = uint32(num(3)), num(4), num(5)
		case "fsync", "close":
			op.fid = uint32(num(3))
		case "trunc":
			op.name, op.fid, op.size = fl[3], uint32(num(4)), num(5)
		case "rename":
			op.name, op.to = fl[3], fl[4]
		case "unlink":
			op.name = fl[3]
		default:
			bad()
		}
		ops = append(ops, op)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(ops) == 0 {
		t.Fatalf("%s: the workload logged no operation", path)
	}
	return ops
}

// crashModel answers what the workload did, from its log.
type crashModel struct {
	ops []*crashOp // ops[seq-1]
}

// names returns the directory as the operations left it: those that
// returned, and with inflight also the one that had not.
func (m *crashModel) names(inflight bool) map[string]uint32 {
	ns := map[string]uint32{}
	for _, op := range m.ops {
		if !op.done && !inflight {
			break
		}
		switch op.kind {
		case "create":
			ns[op.name] = op.fid
		case "rename":
			ns[op.to] = ns[op.name]
			delete(ns, op.name)
		case "unlink":
			delete(ns, op.name)
		}
	}
	return ns
}

// state returns fid's content as the workload had written it just before
// operation seq began: its size and, for each block, the write that put it
// there (0: zeros).
func (m *crashModel) state(fid uint32, seq int) (size int64, blocks []uint32) {
	for _, op := range m.ops[:seq-1] {
		if op.fid != fid {
			continue
		}
		switch op.kind {
		case "write":
			size = max(size, op.off+op.n)
			for len(blocks) < int(size/crashBlock) {
				blocks = append(blocks, 0)
			}
			for o := op.off; o < op.off+op.n; o += crashBlock {
				blocks[o/crashBlock] = uint32(op.seq)
			}
		case "trunc":
			size = op.size
			if nb := int(size / crashBlock); nb < len(blocks) {
				blocks = blocks[:nb]
			}
			for len(blocks) < int(size/crashBlock) {
				blocks = append(blocks, 0)
			}
		}
	}
	return size, blocks
}

// wrote reports whether write cid wrote fid at off.
func (m *crashModel) wrote(cid, fid uint32, off int64) bool {
	if cid == 0 || int(cid) > len(m.ops) {
		return false
	}
	op := m.ops[cid-1]
	return op.kind == "write" && op.fid == fid && op.off <= off && off < op.off+op.n
}

// cutAfter reports whether a truncate of fid begun after operation seq
// cut the file at or below off. With done, only truncates that returned
// count.
func (m *crashModel) cutAfter(fid uint32, seq int, off int64, done bool) bool {
	for _, op := range m.ops[seq:] {
		if op.kind == "trunc" && op.fid == fid && op.size <= off && (op.done || !done) {
			return true
		}
	}
	return false
}

// checkCrashRound checks the round's directory against its log; see
// TestCrashConsistency for what.
func checkCrashRound(t *testing.T, dir, logPath string) crashStats {
	t.Helper()
	m := &crashModel{ops: parseCrashLog(t, logPath)}
	var st crashStats
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("after the crash: readdir %s: %v", dir, err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	done, all := m.names(false), m.names(true)
	ns := done
	if !slices.Equal(got, sortedKeys(done)) {
		ns = all
		if !slices.Equal(got, sortedKeys(all)) {
			last := m.ops[len(m.ops)-1]
			t.Fatalf("after the crash: %s holds %q; want the names the returned operations left, %q, or with the operation in flight (%d %s, returned: %v) %q",
				dir, got, sortedKeys(done), last.seq, last.kind, last.done, sortedKeys(all))
		}
	}
	for _, name := range got {
		p := filepath.Join(dir, name)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("after the crash: read %s (file %d): %v; want its data", p, ns[name], err)
			continue
		}
		for _, msg := range m.checkFile(ns[name], data, &st) {
			t.Errorf("after the crash: %s (file %d, %d bytes): %s", p, ns[name], len(data), msg)
		}
		st.files++
	}
	return st
}

// checkFile checks the content of file fid read back after a crash and
// returns what is wrong with it.
func (m *crashModel) checkFile(fid uint32, data []byte, st *crashStats) []string {
	var bad []string
	if len(data)%crashBlock != 0 {
		return []string{fmt.Sprintf("size %d is not a multiple of %d, and the workload only wrote and truncated whole blocks", len(data), crashBlock)}
	}
	nb := len(data) / crashBlock
	cids := make([]uint32, nb) // the write each block shows; 0 for zeros
	for i := range nb {
		b, off := data[i*crashBlock:(i+1)*crashBlock], int64(i*crashBlock)
		st.blocks++
		if !slices.ContainsFunc(b, func(c byte) bool { return c != 0 }) {
			continue
		}
		bfid, cid, boff, ok := parseCrashBlock(b)
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("offset %d: bytes that were never written (%q...)", off, b[:24]))
			continue
		case bfid != fid || boff != off:
			bad = append(bad, fmt.Sprintf("offset %d: the block written at offset %d of file %d", off, boff, bfid))
			continue
		case !m.wrote(cid, fid, off):
			bad = append(bad, fmt.Sprintf("offset %d: a block of operation %d, which wrote no such block", off, cid))
			continue
		}
		cids[i] = cid
		// Data that a truncate which returned cut must not come back.
		if m.cutAfter(fid, int(cid), off, true) {
			bad = append(bad, fmt.Sprintf("offset %d: data of write %d, which a later truncate cut", off, cid))
		}
	}

	// Chunk by chunk: a write visible in a chunk is visible in all the
	// blocks of that chunk it wrote, unless a newer write or a truncate
	// changed them since.
	for c := 0; c*crashChunk < len(data); c++ {
		st.chunks++
		lo, hi := c*crashChunk/crashBlock, (c+1)*crashChunk/crashBlock
		seen := map[uint32]bool{}
		for _, cid := range cids[lo:min(hi, nb)] {
			if cid == 0 || seen[cid] {
				continue
			}
			seen[cid] = true
			op := m.ops[cid-1]
			from, to := max(int(op.off/crashBlock), lo), min(int((op.off+op.n)/crashBlock), hi)
			for j := from; j < to; j++ {
				off := int64(j * crashBlock)
				other := uint32(0)
				if j < nb {
					other = cids[j]
				}
				switch {
				case other != 0 && other < cid:
					bad = append(bad, fmt.Sprintf("chunk %d is torn: offset %d shows write %d, older than write %d which the chunk shows at other offsets and which wrote offset %d too", c, off, other, cid, off))
				case other == 0 && !m.cutAfter(fid, int(cid), off, false):
					bad = append(bad, fmt.Sprintf("chunk %d is torn: offset %d is zero or past the end, but write %d, which the chunk shows at other offsets, wrote it and no later truncate cut it", c, off, cid))
				}
			}
		}
	}

	// Durability: what the file held when an fsync or close returned is
	// still there, except where later operations changed it.
	for _, p := range m.ops {
		if p.fid != fid || !p.done || (p.kind != "fsync" && p.kind != "close") {
			continue
		}
		if p.kind == "fsync" {
			st.fsyncPoints++
		} else {
			st.closePoints++
		}
		size, want := m.state(fid, p.seq)
		cut := int64(1) << 62
		later := map[int][]uint32{} // block -> writes begun after p
		for _, op := range m.ops[p.seq:] {
			switch {
			case op.fid != fid:
			case op.kind == "trunc":
				cut = min(cut, op.size)
			case op.kind == "write":
				for o := op.off; o < op.off+op.n; o += crashBlock {
					later[int(o/crashBlock)] = append(later[int(o/crashBlock)], uint32(op.seq))
				}
			}
		}
		for j := 0; j < max(len(want), nb) && int64(j*crashBlock) < cut; j++ {
			w := uint32(0)
			if j < len(want) {
				w = want[j]
			}
			switch {
			case j < len(want) && j >= nb:
				bad = append(bad, fmt.Sprintf("%d bytes long, but it had %d bytes when %s (operation %d) returned, and no later truncate cut it", len(data), size, p.kind, p.seq))
			case j < nb && cids[j] != w && !slices.Contains(later[j], cids[j]):
				bad = append(bad, fmt.Sprintf("offset %d: %s, but it held %s when %s (operation %d) returned, and since then only writes %v wrote there",
					j*crashBlock, blockDesc(cids[j]), blockDesc(w), p.kind, p.seq, later[j]))
			default:
				continue
			}
			break // one message per durability point is enough
		}
	}
	return bad
}

func blockDesc(cid uint32) string {
	if cid == 0 {
		return "zeros"
	}
	return fmt.Sprintf("the data of write %d", cid)
}

func sortedKeys(m map[string]uint32) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestCrashUnmountAfterHeavyWrites: pfs unmount right after heavy writes
// (many dirty chunks buffered under a large memory cap, nothing fsynced)
// returns only once the daemon has written everything and exited. Then,
// with no mount left, the offline commands read every byte back.
func TestCrashUnmountAfterHeavyWrites(t *testing.T) {
	mnt, store := mountPfs(t, "--memory", "512MiB")
	daemon := daemonPid(t, store)
	src := t.TempDir()
	const files = 6
	want := map[string]string{}
	for i := 0; i < files; i++ {
		p := filepath.Join(src, fmt.Sprintf("f%d", i))
		size := int64(24<<20 + i*(3<<20) + i*4097) // not chunk multiples
		want["/"+filepath.Base(p)] = writeRandomFile(t, p, size, uint64(500+i))
	}
	// Several writers at once, none fsyncing: at unmount most of it is
	// still in the daemon's buffers.
	var dds []string
	for i := 0; i < files; i++ {
		dds = append(dds, fmt.Sprintf("dd if=%s of=%s bs=256k status=none", filepath.Join(src, fmt.Sprintf("f%d", i)), filepath.Join(mnt, fmt.Sprintf("f%d", i))))
	}
	parallel(t, 10*time.Minute, dds)
	unmountPfs(t, mnt)
	if proc.Alive(daemon) {
		t.Fatalf("pfs unmount returned but the daemon (pid %d) is still running", daemon)
	}
	if !strings.Contains(readLog(store), "store closed; everything is durable") {
		t.Errorf("the daemon log does not say the store was closed after the unmount:\n%s", readLog(store))
	}
	// No --retry-lock: the daemon must have released the store already.
	checkStored(t, store, want)
	fsckClean(t, store, "after unmounting right after heavy writes")
}

// TestCrashCheckerDetects feeds the crash checker made-up histories and
// contents, so that TestCrashConsistency cannot pass because its checker
// sees nothing: each broken content must be reported, each possible one
// accepted.
func TestCrashCheckerDetects(t *testing.T) {
	m := &crashModel{ops: []*crashOp{
		{seq: 1, kind: "create", name: "a", fid: 1, done: true},
		{seq: 2, kind: "write", fid: 1, off: 0, n: crashChunk, done: true},
		{seq: 3, kind: "fsync", fid: 1, done: true},
		{seq: 4, kind: "write", fid: 1, off: crashChunk, n: 2 * crashChunk, done: true},
		{seq: 5, kind: "write", fid: 1, off: 0, n: crashChunk, done: true},
		{seq: 6, kind: "trunc", name: "a", fid: 1, size: crashChunk + 2*crashBlock, done: true},
		{seq: 7, kind: "write", fid: 1, off: 2 * crashBlock, n: 2 * crashBlock},
	}}
	content := func(cids ...[]uint32) []byte {
		var b []byte
		for _, c := range slices.Concat(cids...) {
			off := int64(len(b))
			if c == 0 {
				b = append(b, make([]byte, crashBlock)...)
			} else {
				b = append(b, crashBlockData(1, c, off)...)
			}
		}
		return b
	}
	n := func(k int, cid uint32) []uint32 { return slices.Repeat([]uint32{cid}, k) }
	const perChunk = crashChunk / crashBlock
	for _, c := range []struct {
		name string
		data []byte
		want string // in the first problem; "" for none
	}{
		{"the newest content", content(n(perChunk, 5), n(2, 4)), ""},
		{"the fsynced content, later writes lost", content(n(perChunk, 2)), ""},
		{"the write in flight landed", content(n(2, 5), n(2, 7), n(perChunk-4, 5), n(2, 4)), ""},
		{"a chunk half old, half new", content(n(perChunk/2, 5), n(perChunk/2, 2), n(2, 4)), "torn"},
		{"fsynced data lost", content(n(perChunk, 0), n(2, 4)), "when fsync (operation 3) returned"},
		{"shorter than at fsync", content(n(perChunk/2, 2)), "torn"},
		{"truncated data back", content(n(perChunk, 5), n(3, 4)), "a later truncate cut"},
		{"a flipped byte", func() []byte { b := content(n(perChunk, 5)); b[100] ^= 1; return b }(), "never written"},
		{"another offset's block", content(n(perChunk, 5))[crashBlock:], "the block written at offset"},
	} {
		var st crashStats
		bad := m.checkFile(1, c.data, &st)
		switch {
		case c.want == "" && len(bad) > 0:
			t.Errorf("%s: want no problem, got %q", c.name, bad)
		case c.want != "" && (len(bad) == 0 || !strings.Contains(bad[0], c.want)):
			t.Errorf("%s: want a problem about %q, got %q", c.name, c.want, bad)
		}
	}
}

// TestCrashOfflineAfterKill: right after the daemon was killed, before
// anything mounts the store again, the read-only offline commands work on
// it: pfs fsck checks it (finding at most what the crash left to collect),
// pfs ls lists and pfs get reads the files whose close had returned.
func TestCrashOfflineAfterKill(t *testing.T) {
	mnt, store := mountPfs(t, crashArgs...)
	want := map[string]string{}
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("f%d", i)
		want["/"+name] = writeRandomFile(t, filepath.Join(mnt, name), 300<<10+int64(i), uint64(60+i))
	}
	killDaemon(t, store)
	detach(t, mnt)

	stdout, stderr, code := runPfs(t, "fsck", "--store", store)
	if code != 0 && code != exitProblems {
		t.Errorf("pfs fsck right after a crash: want exit 0, or %d listing what the crash left to collect; got %d\nstdout: %s\nstderr: %s",
			exitProblems, code, stdout, stderr)
	}
	for _, line := range strings.Split(stdout, "\n") {
		if kind, ok := strings.CutPrefix(line, "problem: "); ok && !strings.HasPrefix(kind, "orphan-") {
			t.Errorf("pfs fsck right after a crash: %q; want only orphans the crash left", line)
		}
	}
	if stdout, stderr, code := runPfs(t, "ls", "--store", store); code != 0 || strings.Count(stdout, " /f") != len(want) {
		t.Errorf("pfs ls right after a crash: want exit 0 and the %d files, got exit %d\nstdout: %s\nstderr: %s", len(want), code, stdout, stderr)
	}
	for p, sum := range want {
		stdout, stderr, code := runPfs(t, "get", "--store", store, p, "-")
		if code != 0 || md5Bytes([]byte(stdout)) != sum {
			t.Errorf("pfs get %s right after a crash (its close had returned): want exit 0 and md5 %s, got exit %d, md5 %s, %s",
				p, sum, code, md5Bytes([]byte(stdout)), stderr)
		}
	}
}
