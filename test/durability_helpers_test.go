package test

// Helpers of the durability, integrity, exhaustion and bad-input tests
// (crash_test.go, integrity_test.go, exhaustion_test.go, badinput_test.go).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// crashloadBin builds the load program test/internal/crashload and
// returns its path. The go build cache makes every build after the first
// cheap.
func crashloadBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "crashload")
	out, err := exec.Command("go", "build", "-o", bin, "./internal/crashload").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./internal/crashload: %v\n%s", err, out)
	}
	return bin
}

// loadProc is a running load program: its stdout is read line by line,
// its stderr collected, its stdin a pipe.
type loadProc struct {
	cmd    *exec.Cmd
	out    *bufio.Reader
	stderr *bytes.Buffer
	stdin  io.WriteCloser
}

// startLoad starts a load program; cleanup kills it if it is still
// running.
func startLoad(t *testing.T, name string, args ...string) *loadProc {
	t.Helper()
	cmd := exec.Command(name, args...)
	p := &loadProc{cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p.out = bufio.NewReader(out)
	t.Cleanup(func() {
		if cmd.ProcessState == nil { // not waited for: still running, or waitLoad gave up on it
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return p
}

// waitLine reads lines from the program's stdout until one equals want;
// it fails the test if the output ends first.
func (p *loadProc) waitLine(t *testing.T, want string) {
	t.Helper()
	for {
		line, err := p.out.ReadString('\n')
		if strings.TrimSuffix(line, "\n") == want {
			return
		}
		if err != nil {
			t.Fatalf("waiting for %q from %s: output ended (%v); stderr: %s", want, p.cmd.Path, err, p.stderr)
		}
	}
}

// waitCmd waits for cmd, killing it after timeout (a hang) and failing
// the test then. It returns the exit code.
func waitCmd(t *testing.T, cmd *exec.Cmd, timeout time.Duration, what string) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &ee):
			return ee.ExitCode()
		}
		t.Fatalf("%s: %v", what, err)
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s: still running after %s: hung; killed it", what, timeout)
	}
	return -1
}

// runTimeout runs a command (dd, cat, ...) with a bound on its run time,
// so that a hang fails the test with the command's output instead of
// hitting the go test timeout. It returns stdout, stderr and the exit code.
func runTimeout(t *testing.T, timeout time.Duration, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	what := name + " " + strings.Join(args, " ")
	if ctx.Err() != nil {
		t.Fatalf("%s: still running after %s: hung; killed it\nstdout: %s\nstderr: %s", what, timeout, &out, &errb)
	}
	return out.String(), errb.String(), exitCodeOf(t, err, what, &out, &errb)
}

// killDaemon kills the daemon serving store with SIGKILL, as a crash
// would, and waits until it is gone. The daemon is ours: the pfs mount
// this test ran started it, and its pid is in the store's lock file.
func killDaemon(t *testing.T, store string) {
	t.Helper()
	pid := daemonPid(t, store)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("kill -9 %d (the daemon of %s): %v", pid, store, err)
	}
	waitPidExit(t, pid, time.Minute)
}

// detach cleans up the mount of a dead daemon as an administrator would,
// with umount -l (root: umount2 MNT_DETACH).
func detach(t *testing.T, mnt string) {
	t.Helper()
	if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
		t.Fatalf("umount -l %s: %v", mnt, err)
	}
	if isMounted(mnt) {
		t.Fatalf("umount -l %s returned but it is still mounted", mnt)
	}
}

// logSize returns the current size of STORE/pfs.log, so that logSince
// can return what a later step logged.
func logSize(store string) int64 {
	fi, err := os.Stat(filepath.Join(store, "pfs.log"))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince returns STORE/pfs.log from offset on.
func logSince(t *testing.T, store string, offset int64) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(store, "pfs.log"))
	if err != nil {
		t.Fatalf("read the daemon log: %v", err)
	}
	if offset > int64(len(b)) {
		t.Fatalf("the daemon log shrank from %d to %d bytes", offset, len(b))
	}
	return string(b[offset:])
}

// fsckSummary is the summary line of pfs fsck:
// "checked N files, D directories, P parts, B bytes (H) in T, R MB/s".
type fsckSummary struct {
	line                      string
	files, dirs, parts, bytes int64
	took                      time.Duration
	rate                      float64 // MB/s
}

var fsckSummaryRE = regexp.MustCompile(`(?m)^checked (\d+) files, (\d+) directories, (\d+) parts, (\d+) bytes \(\S+\) in (\S+), ([0-9.]+) MB/s$`)

// parseFsck finds the summary line in fsck's stdout.
func parseFsck(t *testing.T, stdout string) fsckSummary {
	t.Helper()
	m := fsckSummaryRE.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("pfs fsck: no summary line \"checked N files, D directories, P parts, B bytes (H) in T, R MB/s\" in:\n%s", stdout)
	}
	s := fsckSummary{line: m[0]}
	for i, p := range []*int64{&s.files, &s.dirs, &s.parts, &s.bytes} {
		v, err := strconv.ParseInt(m[i+1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		*p = v
	}
	d, err := time.ParseDuration(m[5])
	if err != nil {
		t.Fatalf("pfs fsck summary %q: duration: %v", m[0], err)
	}
	s.took = d
	s.rate, _ = strconv.ParseFloat(m[6], 64)
	return s
}

// fsckClean runs pfs fsck on store and fails the test unless it exits 0
// reporting no problems. It returns the summary.
func fsckClean(t *testing.T, store, when string) fsckSummary {
	t.Helper()
	stdout, stderr, code := runPfs(t, "fsck", "--store", store)
	if code != 0 || !strings.Contains(stdout, "\nno problems found\n") || stderr != "" {
		t.Fatalf("pfs fsck %s: want exit 0, \"no problems found\" and no stderr; got exit %d\nstdout: %s\nstderr: %s\nlog:\n%s",
			when, code, stdout, stderr, readLog(store))
	}
	return parseFsck(t, stdout)
}

// lsPart is one "part" line of pfs ls --long.
type lsPart struct {
	chunk, offset, length int64
	id, status            string
}

var lsPartRE = regexp.MustCompile(`^  part chunk=(\d+) offset=(\d+) len=(\d+) id=(\S+) stored=\d+ md5=[0-9a-f]+ compression=\S+ status=(\S+)$`)

// lsLong runs pfs ls --long and returns the parts of each file by path.
func lsLong(t *testing.T, store string) map[string][]lsPart {
	t.Helper()
	stdout, _ := mustPfs(t, "ls", "--long", "--store", store)
	files := map[string][]lsPart{}
	cur := ""
	for _, line := range strings.Split(strings.TrimRight(stdout, "\n"), "\n")[1:] {
		if m := lsPartRE.FindStringSubmatch(line); m != nil {
			if cur == "" {
				t.Fatalf("pfs ls --long: part line before any file: %q", line)
			}
			p := lsPart{id: m[4], status: m[5]}
			p.chunk, _ = strconv.ParseInt(m[1], 10, 64)
			p.offset, _ = strconv.ParseInt(m[2], 10, 64)
			p.length, _ = strconv.ParseInt(m[3], 10, 64)
			files[cur] = append(files[cur], p)
			continue
		}
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("pfs ls --long: want \"ID SIZE HUMAN PARTS STATUS PATH\" or a part line, got %q", line)
		}
		cur = strings.Join(f[5:], " ")
		files[cur] = []lsPart{}
	}
	return files
}

// lsStatus returns the STATUS column of pfs ls for each path.
func lsStatus(t *testing.T, store string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for p, e := range lsEntries(t, store, "/") {
		m[p] = e.status
	}
	return m
}

// objectPath is where the local backend keeps the object of part key in a
// store of the current format (one level of fan-out).
func objectPath(store, key string) string {
	return filepath.Join(store, "objects", key[0:2], key)
}

// preadFile opens path afresh and reads n bytes at off; it returns what
// was read and the errno of a failure.
func preadFile(path string, off int64, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	got, err := f.ReadAt(b, off)
	if err == io.EOF {
		err = nil
	}
	return b[:got], err
}

// dropCaches drops the kernel's page cache, so that what is read next
// comes from the daemon.
func dropCaches(t *testing.T) {
	t.Helper()
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		t.Fatalf("drop caches: %v", err)
	}
}

// procStatusKiB returns a "Name:   N kB" field of /proc/PID/status.
func procStatusKiB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read /proc/%d/status: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			v, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil || len(f) != 2 || f[1] != "kB" {
				t.Fatalf("/proc/%d/status: %q: want \"%s: N kB\"", pid, line, field)
			}
			return v
		}
	}
	t.Fatalf("/proc/%d/status has no %s line", pid, field)
	return 0
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory and returns
// it; cleanup unmounts it.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("mount -t tmpfs -o size=%d tmpfs %s: %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("umount tmpfs %s: %v", dir, err)
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// storeSnapshot is snapshot without the files every open of a store
// rewrites (the lock file, which gets the opener's pid) or appends to
// (pfs.log): what must not change when a command is rejected.
func storeSnapshot(t *testing.T, store string) string {
	t.Helper()
	var keep []string
	for _, line := range strings.Split(snapshot(t, store), "\n") {
		p, _, _ := strings.Cut(line, " ")
		if p == filepath.Join(store, "lock") || p == filepath.Join(store, "pfs.log") {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}

// noPanic fails the test if s (stderr or a log) shows a Go panic or a
// fatal runtime error, quoting the start of it.
func noPanic(t *testing.T, what, s string) {
	t.Helper()
	if ex := crashExcerpt(s); ex != "" {
		t.Errorf("%s: want a clean error, got a crash:\n%s", what, ex)
	}
}

// crashExcerpt returns the start of the first Go panic or fatal runtime
// error in s, "" if there is none.
func crashExcerpt(s string) string {
	i := -1
	for _, sign := range []string{"panic: ", "fatal error: ", "unexpected fault address", "unexpected signal"} {
		if j := strings.Index(s, sign); j >= 0 && (i < 0 || j < i) {
			i = j
		}
	}
	if i < 0 {
		return ""
	}
	if start := strings.LastIndexByte(s[:i], '\n'); start >= 0 {
		i = start + 1
	}
	return s[i:min(len(s), i+1500)]
}

// shResult is the outcome of one shell command run by startSh.
type shResult struct {
	cmd            string
	stdout, stderr string
	err            error
	hung           bool
}

// startSh starts each shell command line at once, each in its own
// process, and returns a channel that yields their results.
func startSh(timeout time.Duration, cmds []string) <-chan shResult {
	res := make(chan shResult, len(cmds))
	for _, c := range cmds {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, "sh", "-c", c)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			res <- shResult{cmd: c, stdout: out.String(), stderr: errb.String(), err: err, hung: ctx.Err() != nil}
		}()
	}
	return res
}

// parallel runs the shell command lines at once and fails the test unless
// each exits 0 with nothing on stderr within timeout (else: a hang). It
// returns their stdouts in order.
func parallel(t *testing.T, timeout time.Duration, cmds []string) []string {
	t.Helper()
	res := startSh(timeout, cmds)
	outs := map[string]string{}
	for range cmds {
		r := <-res
		switch {
		case r.hung:
			t.Errorf("%s: still running after %s: hung; killed it\nstderr: %s", r.cmd, timeout, r.stderr)
		case r.err != nil || r.stderr != "":
			t.Errorf("%s: want exit 0 and no stderr, got %v\nstderr: %s", r.cmd, r.err, r.stderr)
		}
		outs[r.cmd] = r.stdout
	}
	if t.Failed() {
		t.FailNow()
	}
	var ordered []string
	for _, c := range cmds {
		ordered = append(ordered, outs[c])
	}
	return ordered
}

// copyRandomIn writes a random file of size bytes named name in src, cp's
// it to the same name in mnt and returns its content.
func copyRandomIn(t *testing.T, src, mnt, name string, size int64, seed uint64) []byte {
	t.Helper()
	p := filepath.Join(src, name)
	writeRandomFile(t, p, size, seed)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	run(t, "", nil, "cp", p, filepath.Join(mnt, name))
	return b
}
