// Command crashload is the load the durability tests (test/crash_test.go,
// test/exhaustion_test.go, test/badinput_test.go) put on a mount, run as a
// separate process: a test must never block in a syscall on a mount whose
// daemon it is about to kill, and a killed daemon must only take its
// clients down, not the test.
//
//	crashload workload -dir DIR -log FILE -seed N -ops N
//	crashload fill PATH
//	crashload create DIR N
//	crashload write PATH SIZE
//	crashload read PATH
//	crashload hold -write PATH -read PATH
//
// workload runs a random sequence of creates, opens, writes, fsyncs,
// closes, truncates, renames and unlinks in DIR. Each operation is logged
// to FILE (O_APPEND, fsynced, on a disk outside the mount) as "B <seq> ..."
// before it starts and "E <seq>" after it returned, and each B line is
// echoed to stdout so the test can kill the daemon at a chosen moment.
// Every 4 KiB block written is self-describing (see block), so a checker
// can tell for any block read back which write put it there, and whether
// it is a block that was never written. The log format is parsed by
// parseCrashLog in test/crash_test.go.
//
// The other commands print one line saying what happened; see each.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pfs-project/pfs/test/internal/crashdata"
)

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: crashload workload|fill|create|write|read|hold|lock ..."))
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "workload":
		err = workload(args)
	case "fill":
		err = fill(args)
	case "create":
		err = create(args)
	case "write":
		err = write(args)
	case "read":
		err = read(args)
	case "hold":
		err = hold(args)
	case "lock":
		err = lock(args)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "crashload: %v\n", err)
	os.Exit(1)
}

// exitGone is the exit code of workload when the mount went away under it
// (the daemon was killed): the expected end of a crash round.
const exitGone = 3

// blockSize is the unit the workload writes and the checker verifies.
const blockSize = crashdata.BlockSize

// chunkSize is the pfs chunk size the crash test mounts with; writes are
// placed relative to it so that some cover whole chunks and some parts.
const chunkSize = 64 << 10

// block is the content of the block at off of file fid as written by
// write operation cid (package crashdata, shared with the checker).
var block = crashdata.Block

// opLog writes the operation log: each line is written with O_APPEND and
// fsynced before the operation it announces starts (or after the one it
// completes returned), so the checker knows at least what happened.
type opLog struct {
	f   *os.File
	out *bufio.Writer
	seq int
}

func (l *opLog) begin(format string, a ...any) int {
	l.seq++
	line := fmt.Sprintf("B %d "+format+"\n", append([]any{l.seq}, a...)...)
	l.write(line)
	_, _ = l.out.WriteString(line)
	if err := l.out.Flush(); err != nil {
		fail(fmt.Errorf("stdout: %w", err)) // the test stopped listening
	}
	return l.seq
}

func (l *opLog) end(seq int) { l.write(fmt.Sprintf("E %d\n", seq)) }

func (l *opLog) write(line string) {
	if _, err := l.f.WriteString(line); err != nil {
		fail(fmt.Errorf("log: %w", err))
	}
	if err := l.f.Sync(); err != nil {
		fail(fmt.Errorf("log: %w", err))
	}
}

// gone reports whether err means the mount's daemon is gone, which ends a
// crash round.
func gone(err error) bool {
	return errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED)
}

// mountGone reports whether the mount holding dir no longer answers.
func mountGone(dir string) bool {
	var st unix.Statfs_t
	return gone(unix.Statfs(dir, &st))
}

// workload state: names in the directory, the file (fid) each names, the
// open descriptors by fid, and each file's size as the workload wrote it.
type wstate struct {
	dir   string
	log   *opLog
	rng   *rand.Rand
	names map[string]uint32
	fds   map[uint32]int
	size  map[uint32]int64
	next  uint32
}

const (
	maxNames = 6
	maxOpen  = 3
	maxFile  = 48 * chunkSize // 3 MiB: unlinking or truncating one frees many parts
)

func workload(args []string) error {
	fl := flag.NewFlagSet("workload", flag.ContinueOnError)
	dir := fl.String("dir", "", "directory on the mount to work in")
	logPath := fl.String("log", "", "operation log, outside the mount")
	seed := fl.Uint64("seed", 1, "random seed")
	ops := fl.Int("ops", 500, "operations to run")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *logPath == "" {
		return errors.New("workload: -dir and -log are required")
	}
	lf, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	w := &wstate{
		dir:   *dir,
		log:   &opLog{f: lf, out: bufio.NewWriter(os.Stdout)},
		rng:   rand.New(rand.NewPCG(*seed, *seed^0x5eed)),
		names: map[string]uint32{},
		fds:   map[uint32]int{},
		size:  map[uint32]int64{},
		next:  1,
	}
	for i := 0; i < *ops; i++ {
		if err := w.step(); err != nil {
			// An operation in flight when the daemon dies may fail with
			// EIO rather than ENOTCONN (the kernel's choice, seen once in
			// a write the kill landed in); what tells is whether the
			// mount still answers.
			if gone(err) || mountGone(*dir) {
				fmt.Fprintf(os.Stderr, "crashload: mount gone after %d operations: %v\n", i, err)
				os.Exit(exitGone)
			}
			return fmt.Errorf("operation %d: %w", w.log.seq, err)
		}
	}
	return nil
}

// step runs one random operation.
func (w *wstate) step() error {
	type choice struct {
		weight int
		ok     bool
		run    func() error
	}
	var closed []string // names whose file is not open
	for n, fid := range w.names {
		if _, open := w.fds[fid]; !open {
			closed = append(closed, n)
		}
	}
	slices.Sort(closed)
	choices := []choice{
		{10, len(w.names) < maxNames && len(w.fds) < maxOpen, w.create},
		{8, len(closed) > 0 && len(w.fds) < maxOpen, func() error { return w.open(closed[w.rng.IntN(len(closed))]) }},
		{40, len(w.fds) > 0, w.write},
		{8, len(w.fds) > 0, w.fsync},
		{8, len(w.fds) > 0, w.close},
		{7, len(w.names) > 0, w.truncate},
		{6, len(w.names) > 0, w.rename},
		{5, len(w.names) > 1, w.unlink},
	}
	total := 0
	for _, c := range choices {
		if c.ok {
			total += c.weight
		}
	}
	r := w.rng.IntN(total)
	for _, c := range choices {
		if !c.ok {
			continue
		}
		if r < c.weight {
			return c.run()
		}
		r -= c.weight
	}
	panic("unreachable")
}

// pick returns a random element of the sorted keys of m.
func pick[V any](rng *rand.Rand, m map[string]V) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys[rng.IntN(len(keys))]
}

func pickFid(rng *rand.Rand, m map[uint32]int) uint32 {
	keys := make([]uint32, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys[rng.IntN(len(keys))]
}

func (w *wstate) path(name string) string { return filepath.Join(w.dir, name) }

func (w *wstate) freeName() string {
	for {
		n := fmt.Sprintf("n%d", w.rng.IntN(maxNames+2))
		if _, taken := w.names[n]; !taken {
			return n
		}
	}
}

func (w *wstate) create() error {
	name, fid := w.freeName(), w.next
	w.next++
	seq := w.log.begin("create %s %d", name, fid)
	fd, err := unix.Open(w.path(name), unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	w.log.end(seq)
	w.names[name], w.fds[fid], w.size[fid] = fid, fd, 0
	return nil
}

func (w *wstate) open(name string) error {
	fid := w.names[name]
	seq := w.log.begin("open %s %d", name, fid)
	fd, err := unix.Open(w.path(name), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	w.log.end(seq)
	w.fds[fid] = fd
	return nil
}

// write writes whole chunks (1 to 4, chunk-aligned) or a few blocks
// anywhere up to just past the end, never more than 256 KiB, so each write
// is one FUSE request.
func (w *wstate) write() error {
	fid := pickFid(w.rng, w.fds)
	var off, n int64
	if w.rng.IntN(10) < 6 {
		off = int64(w.rng.IntN(maxFile/chunkSize-4)) * chunkSize
		n = int64(1+w.rng.IntN(4)) * chunkSize
	} else {
		end := min(w.size[fid]+chunkSize, maxFile-8*blockSize)
		off = int64(w.rng.IntN(int(end/blockSize)+1)) * blockSize
		n = int64(1+w.rng.IntN(8)) * blockSize
	}
	seq := w.log.begin("write %d %d %d", fid, off, n)
	buf := make([]byte, 0, n)
	for o := off; o < off+n; o += blockSize {
		buf = append(buf, block(fid, uint32(seq), o)...)
	}
	got, err := unix.Pwrite(w.fds[fid], buf, off)
	if err != nil {
		return fmt.Errorf("write fid %d at %d: %w", fid, off, err)
	}
	if got != len(buf) {
		return fmt.Errorf("write fid %d at %d: short write %d of %d", fid, off, got, len(buf))
	}
	w.log.end(seq)
	w.size[fid] = max(w.size[fid], off+n)
	return nil
}

func (w *wstate) fsync() error {
	fid := pickFid(w.rng, w.fds)
	seq := w.log.begin("fsync %d", fid)
	if err := unix.Fsync(w.fds[fid]); err != nil {
		return fmt.Errorf("fsync fid %d: %w", fid, err)
	}
	w.log.end(seq)
	return nil
}

func (w *wstate) close() error {
	fid := pickFid(w.rng, w.fds)
	seq := w.log.begin("close %d", fid)
	fd := w.fds[fid]
	delete(w.fds, fid)
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close fid %d: %w", fid, err)
	}
	w.log.end(seq)
	return nil
}

// truncate cuts a file by path to a block multiple that is mostly not a
// chunk multiple, sometimes to 0, sometimes extending it.
func (w *wstate) truncate() error {
	name := pick(w.rng, w.names)
	fid := w.names[name]
	var size int64
	switch r := w.rng.IntN(10); {
	case r == 0:
		size = 0
	case r == 1:
		size = w.size[fid] + int64(1+w.rng.IntN(16))*blockSize
	default:
		size = int64(w.rng.IntN(int(w.size[fid]/blockSize)+1)) * blockSize
	}
	size = min(size, maxFile)
	seq := w.log.begin("trunc %s %d %d", name, fid, size)
	if err := unix.Truncate(w.path(name), size); err != nil {
		return fmt.Errorf("truncate %s to %d: %w", name, size, err)
	}
	w.log.end(seq)
	w.size[fid] = size
	return nil
}

// rename renames a file, half the time over another one.
func (w *wstate) rename() error {
	from := pick(w.rng, w.names)
	to := w.freeName()
	if len(w.names) > 1 && w.rng.IntN(2) == 0 {
		for to = pick(w.rng, w.names); to == from; to = pick(w.rng, w.names) {
		}
	}
	seq := w.log.begin("rename %s %s", from, to)
	if err := unix.Rename(w.path(from), w.path(to)); err != nil {
		return fmt.Errorf("rename %s %s: %w", from, to, err)
	}
	w.log.end(seq)
	w.names[to] = w.names[from]
	delete(w.names, from)
	return nil
}

func (w *wstate) unlink() error {
	name := pick(w.rng, w.names)
	seq := w.log.begin("unlink %s", name)
	if err := unix.Unlink(w.path(name)); err != nil {
		return fmt.Errorf("unlink %s: %w", name, err)
	}
	w.log.end(seq)
	delete(w.names, name)
	return nil
}

// fill writes 1 MiB blocks to PATH until a write fails, then fsyncs and
// closes, and prints
//
//	wrote=BYTES write=ERR fsync=ERR close=ERR
//
// with each ERR an errno name (ENOSPC) or "ok".
func fill(args []string) error {
	if len(args) != 1 {
		return errors.New("fill PATH")
	}
	fd, err := unix.Open(args[0], unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	rng := rand.NewChaCha8([32]byte{1})
	var wrote int64
	var werr error
	for wrote < 1<<40 {
		_, _ = rng.Read(buf)
		n, err := unix.Write(fd, buf)
		wrote += int64(max(n, 0))
		if err != nil {
			werr = err
			break
		}
	}
	ferr := unix.Fsync(fd)
	cerr := unix.Close(fd)
	fmt.Printf("wrote=%d write=%s fsync=%s close=%s\n", wrote, errName(werr), errName(ferr), errName(cerr))
	return nil
}

func errName(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &errno):
		if name := unix.ErrnoName(errno); name != "" {
			return name
		}
		return strconv.Itoa(int(errno))
	}
	return err.Error()
}

// create makes N empty files f0000000 ... in DIR, through one directory
// descriptor, and prints "created N".
func create(args []string) error {
	if len(args) != 2 {
		return errors.New("create DIR N")
	}
	n, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	dfd, err := unix.Open(args[0], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	for i := 0; i < n; i++ {
		fd, err := unix.Openat(dfd, fmt.Sprintf("f%07d", i), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return fmt.Errorf("file %d: %w", i, err)
		}
		if err := unix.Close(fd); err != nil {
			return fmt.Errorf("file %d: close: %w", i, err)
		}
	}
	fmt.Printf("created %d\n", n)
	return nil
}

// write writes SIZE bytes of a fixed pseudo-random stream to PATH in
// 64 KiB writes, printing "started" once the first MiB is written, then
// closes and prints "done". The test kills it in between.
func write(args []string) error {
	if len(args) != 2 {
		return errors.New("write PATH SIZE")
	}
	size, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil {
		return err
	}
	f, err := os.Create(args[0])
	if err != nil {
		return err
	}
	rng := rand.NewChaCha8([32]byte{2})
	buf := make([]byte, 64<<10)
	for done := int64(0); done < size; done += int64(len(buf)) {
		_, _ = rng.Read(buf)
		if _, err := f.Write(buf); err != nil {
			return err
		}
		if done+int64(len(buf)) == 1<<20 {
			fmt.Println("started")
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Println("done")
	return nil
}

// read reads PATH over and over in 64 KiB reads, printing "started" once
// the first MiB is read, until it is killed.
func read(args []string) error {
	if len(args) != 1 {
		return errors.New("read PATH")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	var total int64
	for {
		n, err := f.Read(buf)
		total += int64(n)
		if total-int64(n) < 1<<20 && total >= 1<<20 {
			fmt.Println("started")
		}
		if err == io.EOF {
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
	}
}

// hold opens -write PATH and writes 1 MiB + 1 block of the block pattern
// (fid 1, cid 1) into it without closing, opens -read PATH, prints
// "ready", and waits until stdin closes; then it writes one more block,
// closes both and prints "closed" (or the error).
func hold(args []string) error {
	fl := flag.NewFlagSet("hold", flag.ContinueOnError)
	wpath := fl.String("write", "", "file to write and keep open")
	rpath := fl.String("read", "", "file to keep open for reading")
	if err := fl.Parse(args); err != nil {
		return err
	}
	wf, err := os.OpenFile(*wpath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	var off int64
	for ; off < 1<<20+blockSize; off += blockSize {
		if _, err := wf.Write(block(1, 1, off)); err != nil {
			return err
		}
	}
	rf, err := os.Open(*rpath)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if _, err := wf.Write(block(1, 1, off)); err != nil {
		return fmt.Errorf("write after stdin closed: %w", err)
	}
	if err := wf.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if err := rf.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	fmt.Println("closed")
	return nil
}

// exitLocked is lock's exit code when another process holds a conflicting
// lock.
const exitLocked = 4

// lock FILE tries to take a POSIX write lock (fcntl F_SETLK) on all of
// FILE, as a process other than the test: it prints "locked" and exits 0,
// or exits exitLocked if another process holds a conflicting lock.
func lock(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: crashload lock FILE")
	}
	f, err := os.OpenFile(args[0], os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	err = unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
		fmt.Println("conflict")
		os.Exit(exitLocked)
	}
	if err != nil {
		return fmt.Errorf("F_SETLK %s: %w", args[0], err)
	}
	fmt.Println("locked")
	return nil
}
