package test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestExhaustionDiskFull fills a store through its mount until the disk
// is full, on a 64 MiB tmpfs: the writer gets ENOSPC (at write, fsync or
// close time; not EIO, and no hang), files stored before stay intact, and
// once files are deleted the same mount takes writes again. Two layouts:
// the whole store on the small filesystem (objects and registry fill up
// together), and only STORE/objects on it (the registry has room, so this
// is the engine's handling of ENOSPC from the backend alone).
func TestExhaustionDiskFull(t *testing.T) {
	load := crashloadBin(t)
	t.Run("store", func(t *testing.T) {
		store := filepath.Join(mountTmpfs(t, 64<<20), "store")
		diskFull(t, load, store)
	})
	t.Run("objects", func(t *testing.T) {
		store := newStore(t)
		mnt := filepath.Join(t.TempDir(), "mnt")
		if err := os.Mkdir(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		mountAt(t, store, mnt) // creates the store
		unmountPfs(t, mnt)
		objects := filepath.Join(store, "objects")
		if err := unix.Mount("tmpfs", objects, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", 64<<20)); err != nil {
			t.Fatalf("mount a tmpfs on %s: %v", objects, err)
		}
		t.Cleanup(func() {
			if err := unix.Unmount(objects, 0); err != nil {
				t.Errorf("umount %s: %v", objects, err)
				_ = unix.Unmount(objects, unix.MNT_DETACH)
			}
		})
		diskFull(t, load, store)
	})
}

// diskFull is TestExhaustionDiskFull on one store.
func diskFull(t *testing.T, load, store string) {
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"--memory", "16MiB"}
	mountAt(t, store, mnt, args...)
	keep := map[string]string{}
	for i := 0; i < 3; i++ {
		p := filepath.Join(mnt, fmt.Sprintf("keep%d", i))
		keep[p] = writeRandomFile(t, p, 5<<20+int64(i)*1000, uint64(300+i))
	}

	// crashload fill writes 1 MiB at a time until a write fails, then
	// fsyncs and closes, and reports each outcome.
	fill := startLoad(t, load, "fill", filepath.Join(mnt, "fill"))
	code, out := waitLoad(fill, 90*time.Second)
	if code != 0 {
		// A hang (-1): the writer is stuck in the kernel waiting for the
		// daemon; kill the daemon to free it.
		log := readLog(store)
		killDaemon(t, store)
		detach(t, mnt)
		lines := strings.Split(strings.TrimSpace(log), "\n")
		t.Fatalf("crashload fill on a store that fills up: want it to end with ENOSPC, got exit %d (-1: still running after 90s, hung) with %d \"flush failed\" errors in the daemon log, the last:\n%s",
			code, strings.Count(log, "flush failed"), lines[len(lines)-1])
	}
	t.Logf("crashload fill: %s", strings.TrimSpace(out))
	var wrote int64
	var werr, ferr, cerr string
	if _, err := fmt.Sscanf(out, "wrote=%d write=%s fsync=%s close=%s", &wrote, &werr, &ferr, &cerr); err != nil {
		t.Fatalf("crashload fill: output %q: %v", out, err)
	}
	daemonAlive(t, mnt, store, fmt.Sprintf("filling the disk (write: %s, fsync: %s, close: %s)", werr, ferr, cerr))
	sawNoSpace := false
	for _, r := range []struct{ call, err string }{{"write", werr}, {"fsync", ferr}, {"close", cerr}} {
		switch r.err {
		case "ENOSPC":
			sawNoSpace = true
		case "ok":
		default:
			t.Errorf("filling the store: %s failed with %s; want ENOSPC (or success before the disk is full)", r.call, r.err)
		}
	}
	if !sawNoSpace {
		t.Errorf("filling a 64 MiB store with %d bytes: no write, fsync or close failed; want ENOSPC", wrote)
	}

	// Metadata on the full disk: creates fail with ENOSPC or succeed (the
	// registry may have room left), and the daemon lives on.
	if err := os.Mkdir(filepath.Join(mnt, "meta"), 0o755); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("mkdir on a full disk: want success or ENOSPC, got %v", err)
	}
	stdout, stderr, code := runTimeout(t, 90*time.Second, load, "create", filepath.Join(mnt, "meta"), "3000")
	t.Logf("crashload create 3000 on the full disk: exit %d: %s%s", code, stdout, stderr)
	if code != 0 && !strings.Contains(stderr, "no space left on device") && !strings.Contains(stderr, "no such file") {
		t.Errorf("creating files on a full disk: want success or ENOSPC, got exit %d: %s", code, stderr)
	}
	daemonAlive(t, mnt, store, "creating files on the full disk")
	if err := os.RemoveAll(filepath.Join(mnt, "meta")); err != nil {
		daemonAlive(t, mnt, store, "deleting files on the full disk")
		t.Errorf("rm -r the files created on the full disk: %v", err)
	}

	dropCaches(t)
	for p, sum := range keep {
		if got := md5File(t, p); got != sum {
			t.Errorf("%s, stored before the disk filled up: md5 %s, want %s", p, got, sum)
		}
	}

	// Free the space; the same mount works again.
	if err := os.Remove(filepath.Join(mnt, "fill")); err != nil {
		t.Fatalf("rm the file that filled the disk: %v", err)
	}
	after := filepath.Join(mnt, "after")
	sum := writeRandomFile(t, after, 12<<20, 399)
	f, err := os.OpenFile(after, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Errorf("fsync of a file written after freeing space: %v", err)
	}
	f.Close()
	keep[after] = sum
	remount(t, mnt, store, args...)
	for p, sum := range keep {
		if got := md5File(t, p); got != sum {
			t.Errorf("%s after the remount: md5 %s, want %s", p, got, sum)
		}
	}
	unmountPfs(t, mnt)
	fsckClean(t, store, "after the disk filled up and was freed")
}

// daemonAlive fails the test if the daemon serving mnt died doing what:
// its log shows a crash, or the mount no longer answers. It then detaches
// the dead mount.
func daemonAlive(t *testing.T, mnt, store, what string) {
	t.Helper()
	_, err := os.Stat(mnt)
	ex := crashExcerpt(readLog(store))
	if ex == "" && err == nil {
		return
	}
	if isMounted(mnt) {
		detach(t, mnt)
	}
	t.Fatalf("the daemon died %s; want ENOSPC and a working mount (stat %s: %v); daemon log:\n%s", what, mnt, err, ex)
}

// waitLoad reads the rest of a load program's stdout, waits for it to exit
// and returns its exit code and that output; the code is -1 if it is still
// running after timeout (then it is killed, which frees it from a FUSE
// request only once the daemon answers or dies).
func waitLoad(p *loadProc, timeout time.Duration) (int, string) {
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, _ := io.ReadAll(p.out) // before Wait, which closes the pipe
		done <- result{out, p.cmd.Wait()}
	}()
	select {
	case r := <-done:
		var ee *exec.ExitError
		switch {
		case r.err == nil:
			return 0, string(r.out)
		case errors.As(r.err, &ee):
			return ee.ExitCode(), string(r.out)
		}
		return -2, r.err.Error()
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		return -1, ""
	}
}

// TestExhaustionMemoryCap runs 8 writers and 8 readers (dd and cat, each
// its own process) on files larger than the memory cap of 32 MiB and
// checks that the daemon's peak resident memory stays within the cap plus
// the stated overhead (160 MiB: Go runtime, Badger, FUSE buffers).
func TestExhaustionMemoryCap(t *testing.T) {
	const memCap = 32 << 20
	const overhead = 160 << 20
	mnt, store := mountPfs(t, "--memory", "32MiB")
	pid := daemonPid(t, store)
	src := filepath.Join(t.TempDir(), "src")
	writeRandomFile(t, src, 128<<20, 77)

	// Phase 1: 8 writers of 64 to 120 MiB.
	var cmds []string
	want := map[string]int64{}
	for i := 0; i < 8; i++ {
		mib := 64 + 8*i
		p := filepath.Join(mnt, fmt.Sprintf("r%d", i))
		cmds = append(cmds, fmt.Sprintf("dd if=%s of=%s bs=1M count=%d status=none", src, p, mib))
		want[p] = int64(mib) << 20
	}
	parallel(t, 10*time.Minute, cmds)
	phase1 := procStatusKiB(t, pid, "VmHWM")

	// Phase 2: 8 more writers while 8 readers read phase 1's files.
	cmds = cmds[:0]
	for i := 0; i < 8; i++ {
		mib := 64 + 8*i
		p := filepath.Join(mnt, fmt.Sprintf("w%d", i))
		cmds = append(cmds, fmt.Sprintf("dd if=%s of=%s bs=1M count=%d status=none", src, p, mib))
		want[p] = int64(mib) << 20
		cmds = append(cmds, fmt.Sprintf("cat %s | md5sum", filepath.Join(mnt, fmt.Sprintf("r%d", i))))
	}
	dropCaches(t) // the readers must go through the daemon
	outs := parallel(t, 10*time.Minute, cmds)
	peak := procStatusKiB(t, pid, "VmHWM")
	for i := 0; i < 8; i++ {
		got := strings.Fields(outs[2*i+1])[0]
		if w := md5Prefix(t, src, want[filepath.Join(mnt, fmt.Sprintf("r%d", i))]); got != w {
			t.Errorf("cat r%d while 8 writers ran: md5 %s, want %s", i, got, w)
		}
	}

	msg := fmt.Sprintf("memory cap: daemon peak RSS (VmHWM) %d MiB with --memory 32MiB (after 8 writers: %d MiB; after 8 writers + 8 readers: %d MiB); bound %d MiB",
		peak>>10, phase1>>10, peak>>10, (memCap+overhead)>>20)
	t.Log(msg)
	fmt.Println(msg)
	if peak<<10 > memCap+overhead {
		t.Errorf("daemon peak RSS %d MiB exceeds the cap %d MiB plus the stated overhead %d MiB", peak>>10, memCap>>20, overhead>>20)
	}

	remount(t, mnt, store, "--memory", "32MiB")
	for p, size := range want {
		if got, w := md5File(t, p), md5Prefix(t, src, size); got != w {
			t.Errorf("%s after the remount: md5 %s, want %s", p, got, w)
		}
	}
}

// md5Prefix returns the MD5 of the first n bytes of path.
func md5Prefix(t *testing.T, path string, n int64) string {
	t.Helper()
	out := run(t, "", nil, "sh", "-c", fmt.Sprintf("head -c %d %s | md5sum", n, path))
	return strings.Fields(out)[0]
}

// TestExhaustionTinyMemory: with a cap of two chunks (--memory 128KiB
// --chunk-size 64KiB) 4 writers and 4 readers at once still finish: the
// memory cap makes them wait for each other, never forever.
func TestExhaustionTinyMemory(t *testing.T) {
	args := []string{"--memory", "128KiB", "--chunk-size", "64KiB"}
	mnt, store := mountPfs(t, args...)
	src := filepath.Join(t.TempDir(), "src")
	writeRandomFile(t, src, 8<<20, 78)
	for i := 0; i < 4; i++ {
		run(t, "", nil, "cp", src, filepath.Join(mnt, fmt.Sprintf("r%d", i)))
	}
	dropCaches(t)
	var cmds []string
	for i := 0; i < 4; i++ {
		cmds = append(cmds,
			fmt.Sprintf("dd if=%s of=%s bs=256k status=none conv=fsync", src, filepath.Join(mnt, fmt.Sprintf("w%d", i))),
			fmt.Sprintf("cat %s | md5sum", filepath.Join(mnt, fmt.Sprintf("r%d", i))))
	}
	outs := parallel(t, 5*time.Minute, cmds)
	want := md5Prefix(t, src, 8<<20)
	for i := 0; i < 4; i++ {
		if got := strings.Fields(outs[2*i+1])[0]; got != want {
			t.Errorf("cat r%d with a two-chunk memory cap: md5 %s, want %s", i, got, want)
		}
	}
	remount(t, mnt, store, args...)
	for i := 0; i < 4; i++ {
		for _, n := range []string{"r", "w"} {
			if got := md5File(t, filepath.Join(mnt, fmt.Sprintf("%s%d", n, i))); got != want {
				t.Errorf("%s%d after the remount: md5 %s, want %s", n, i, got, want)
			}
		}
	}
	unmountPfs(t, mnt)
	fsckClean(t, store, "after load under a two-chunk memory cap")
}

// TestExhaustionKilledClients: a writer and a reader killed with SIGKILL
// in the middle of their work, and a lazy unmount (umount -l) while a
// process holds files open for writing (with buffered data) and reading,
// leave a store that fsck finds clean, with the killed writer's file a
// prefix of what it wrote, the held file complete, and every other file
// intact.
func TestExhaustionKilledClients(t *testing.T) {
	load := crashloadBin(t)
	args := []string{"--chunk-size", "64KiB", "--memory", "4MiB"}
	mnt, store := mountPfs(t, args...)
	src := filepath.Join(t.TempDir(), "src")
	sum := writeRandomFile(t, src, 6<<20, 90)
	intact := filepath.Join(mnt, "intact")
	run(t, "", nil, "cp", src, intact)

	// A writer and a reader, each killed in the middle of its work.
	w := startLoad(t, load, "write", filepath.Join(mnt, "killed-writer"), fmt.Sprint(1<<30))
	w.waitLine(t, "started")
	r := startLoad(t, load, "read", intact)
	r.waitLine(t, "started")
	for _, p := range []*loadProc{w, r} {
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatalf("kill -9 %s: %v", p.cmd.Path, err)
		}
		_ = p.cmd.Wait()
	}
	if got := md5File(t, intact); got != sum {
		t.Errorf("intact, which a killed reader was reading: md5 %s, want %s", got, sum)
	}
	checkWriterPrefix(t, filepath.Join(mnt, "killed-writer"))

	// umount -l while files are open: the daemon serves the open files
	// until they are closed, then writes everything and exits.
	h := startLoad(t, load, "hold", "-write", filepath.Join(mnt, "held"), "-read", intact)
	h.waitLine(t, "ready")
	daemon := daemonPid(t, store)
	detach(t, mnt)
	if err := h.stdin.Close(); err != nil { // tells it to write once more and close
		t.Fatal(err)
	}
	h.waitLine(t, "closed")
	if code := waitCmd(t, h.cmd, time.Minute, "crashload hold"); code != 0 {
		t.Fatalf("crashload hold: after umount -l, writing and closing its open files: exit %d: %s", code, h.stderr)
	}
	waitPidExit(t, daemon, 5*time.Minute)

	fsckClean(t, store, "after killed clients and a lazy unmount with open files")
	mountAt(t, store, mnt, args...)
	if got := md5File(t, intact); got != sum {
		t.Errorf("intact after the remount: md5 %s, want %s", got, sum)
	}
	checkWriterPrefix(t, filepath.Join(mnt, "killed-writer"))
	held, err := os.ReadFile(filepath.Join(mnt, "held"))
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for off := int64(0); off < 1<<20+2*crashBlock; off += crashBlock {
		want = append(want, crashBlockData(1, 1, off)...)
	}
	if !bytes.Equal(held, want) {
		t.Errorf("held, written before and after umount -l and closed after it: %d bytes, want the %d bytes written", len(held), len(want))
	}
}

// checkWriterPrefix checks that path, written by a crashload write that
// was killed, holds a prefix of crashload's stream: at least the first MiB
// (written before "started"), and never bytes it did not write.
func checkWriterPrefix(t *testing.T, path string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read the killed writer's file: %v", err)
	}
	want := make([]byte, len(got))
	_, _ = rand.NewChaCha8([32]byte{2}).Read(want) // crashload write's stream; never fails
	if len(got) < 1<<20 || !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		t.Errorf("%s, written by a killed writer: %d bytes, first difference from what it wrote at %d; want at least the first MiB and only what it wrote", path, len(got), i)
	}
}
