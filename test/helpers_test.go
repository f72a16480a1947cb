// Package test drives the built pfs binary: the offline CLI (cli_test.go)
// and real FUSE mounts served by a pfs daemon in a subprocess
// (mount_test.go). Nothing here imports pfs packages; a test that passes
// here passes for a user typing the same commands.
//
// Readiness is never a sleep: `pfs mount` returns only once the kernel has
// the mount, and `pfs unmount` only once the daemon has exited.
package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pfsBin is the binary under test: $PFS_BIN, or built by TestMain.
var pfsBin string

// Exit codes of pfs (cmd/pfs/exitcodes.go); repeated here because the
// tests check the binary's contract, not the package.
const (
	exitProblems = 1
	exitUsage    = 2
	exitLocked   = 4
	exitNotFound = 5
	exitDamaged  = 6
	exitMount    = 7
	exitBusy     = 8
	exitUnmount  = 9
)

// cmdTimeout bounds every command a test runs, so a hang fails the test
// with output instead of hitting the go test timeout.
const cmdTimeout = 15 * time.Minute

// ourMounts records every mountpoint a test mounted, for the leftover
// check at the end of TestMain.
var (
	ourMountsMu sync.Mutex
	ourMounts   = map[string]bool{}
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		// Not a skip: a machine without FUSE cannot show pfs works.
		fmt.Fprintf(os.Stderr, "FAIL: the pfs integration tests need FUSE: %v (load it with modprobe fuse)\n", err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "pfs-test-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	// A test that forgets --store must not touch the user's default store.
	os.Setenv("XDG_DATA_HOME", filepath.Join(tmp, "xdg-data"))

	pfsBin = os.Getenv("PFS_BIN")
	if pfsBin == "" {
		pfsBin = filepath.Join(tmp, "pfs")
		build := exec.Command("go", "build", "-o", pfsBin, "../cmd/pfs")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: go build ../cmd/pfs: %v\n%s", err, out)
			return 1
		}
	} else if abs, err := filepath.Abs(pfsBin); err == nil {
		pfsBin = abs
	}

	code := m.Run()

	// The same check as scripts/no-leftover-mounts.sh, for our mounts only:
	// other pfs mounts on the machine are not ours to judge.
	ourMountsMu.Lock()
	defer ourMountsMu.Unlock()
	for mnt := range ourMounts {
		if isMounted(mnt) {
			fmt.Fprintf(os.Stderr, "FAIL: pfs mount left behind at %s; detaching it\n", mnt)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
			code = 1
		}
	}
	return code
}

// pfsCommand returns an unstarted pfs command with a timeout.
func pfsCommand(t *testing.T, args ...string) (*exec.Cmd, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	cmd := exec.CommandContext(ctx, pfsBin, args...)
	return cmd, cancel
}

// runPfs runs pfs with args and returns its stdout, stderr and exit code.
// It fails the test only if pfs could not be run at all.
func runPfs(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runPfsStdin(t, nil, args...)
}

// runPfsStdin is runPfs with stdin.
func runPfsStdin(t *testing.T, stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd, cancel := pfsCommand(t, args...)
	defer cancel()
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	err := cmd.Run()
	code = exitCodeOf(t, err, "pfs "+strings.Join(args, " "), &out, &errb)
	return out.String(), errb.String(), code
}

// exitCodeOf turns the result of running a command into an exit code.
func exitCodeOf(t *testing.T, err error, what string, stdout, stderr *bytes.Buffer) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return ee.ExitCode()
	}
	t.Fatalf("%s: did not run to completion: %v\nstdout: %s\nstderr: %s", what, err, stdout, stderr)
	return -1
}

// mustPfs runs pfs and fails the test unless it exits 0.
func mustPfs(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, code := runPfs(t, args...)
	if code != 0 {
		t.Fatalf("pfs %s: want exit 0, got %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout, stderr
}

// wantFailure checks that a pfs run failed with exit code want and one
// line "pfs: ..." on stderr containing every string in contains.
func wantFailure(t *testing.T, what string, stderr string, code, want int, contains ...string) {
	t.Helper()
	if code != want {
		t.Errorf("%s: want exit %d, got %d; stderr: %q", what, want, code, stderr)
	}
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "pfs: ") {
		t.Errorf("%s: want one stderr line starting with \"pfs: \", got %q", what, stderr)
	}
	for _, c := range contains {
		if !strings.Contains(stderr, c) {
			t.Errorf("%s: want stderr to contain %q, got %q", what, c, stderr)
		}
	}
}

// newStore returns the path of a store directory that does not exist
// yet; pfs creates it on first use.
func newStore(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "store")
}

// mountPfs mounts a new store with `pfs mount --store STORE args... MNT`
// in the background and returns when the mount is ready: pfs mount itself
// waits for the daemon to report that. Cleanup unmounts it.
func mountPfs(t *testing.T, args ...string) (mnt, store string) {
	t.Helper()
	store = newStore(t)
	mnt = filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	mountAt(t, store, mnt, args...)
	return mnt, store
}

// mountAt mounts store at mnt and registers the unmount as cleanup.
func mountAt(t *testing.T, store, mnt string, args ...string) {
	t.Helper()
	ourMountsMu.Lock()
	ourMounts[mnt] = true
	ourMountsMu.Unlock()
	all := append(append([]string{"mount", "--store", store}, args...), mnt)
	stdout, stderr, code := runPfs(t, all...)
	if code != 0 {
		t.Fatalf("pfs %s: want exit 0 (mounted), got %d\nstdout: %s\nstderr: %s\nlog:\n%s",
			strings.Join(all, " "), code, stdout, stderr, readLog(store))
	}
	if !isMounted(mnt) {
		t.Fatalf("pfs mount exited 0 but %s is not a fuse.pfs mount in /proc/self/mountinfo", mnt)
	}
	t.Cleanup(func() { cleanupMount(t, mnt, store) })
}

// cleanupMount unmounts mnt if it is still mounted: `pfs unmount`,
// retried while busy, else a lazy unmount. Needing the fallback fails the
// test: something kept the mount busy.
func cleanupMount(t *testing.T, mnt, store string) {
	t.Helper()
	if !isMounted(mnt) {
		return
	}
	var stderr string
	var code int
	for try := 0; try < 10; try++ {
		if _, stderr, code = runPfs(t, "unmount", mnt); code == 0 {
			return
		}
		if code != exitBusy {
			break
		}
		time.Sleep(200 * time.Millisecond) // let the user of the mount finish; not readiness
	}
	t.Errorf("cleanup: pfs unmount %s: exit %d: %s; falling back to a lazy unmount\nlog:\n%s", mnt, code, stderr, readLog(store))
	if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
		if out, err := exec.Command("fusermount3", "-uz", mnt).CombinedOutput(); err != nil {
			t.Errorf("cleanup: lazy unmount of %s failed: %v %s", mnt, err, out)
		}
	}
}

// unmountPfs runs `pfs unmount MNT` and fails the test unless it succeeds
// and the mount is gone.
func unmountPfs(t *testing.T, mnt string) {
	t.Helper()
	mustPfs(t, "unmount", mnt)
	if isMounted(mnt) {
		t.Fatalf("pfs unmount %s exited 0 but it is still mounted", mnt)
	}
}

// remount unmounts mnt (waiting for the daemon to write everything) and
// mounts store there again, so what is read next comes from the store.
func remount(t *testing.T, mnt, store string, args ...string) {
	t.Helper()
	unmountPfs(t, mnt)
	mountAt(t, store, mnt, args...)
}

// isMounted reports whether mnt is a pfs mount point.
func isMounted(mnt string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i := 6; i+1 < len(fields); i++ {
			if fields[i] == "-" {
				if fields[i+1] == "fuse.pfs" && unescapeMount(fields[4]) == mnt {
					return true
				}
				break
			}
		}
	}
	return false
}

func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// readLog returns the daemon log of store, for failure messages.
func readLog(store string) string {
	b, err := os.ReadFile(filepath.Join(store, "pfs.log"))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 8<<10 {
		b = append([]byte("...\n"), b[len(b)-8<<10:]...)
	}
	return string(b)
}

// daemonPid returns the pid in store's lock file (the engine writes
// "pid\nholder\n").
func daemonPid(t *testing.T, store string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(store, "lock"))
	if err != nil {
		t.Fatalf("read lock file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		t.Fatalf("lock file %q: want a pid on the first line: %v", b, err)
	}
	return pid
}

// md5File returns the hex MD5 of a file.
func md5File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func md5Bytes(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// writeRandomFile writes size pseudo-random bytes (the same for the same
// seed) to path and returns their hex MD5.
func writeRandomFile(t *testing.T, path string, size int64, seed uint64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var key [32]byte
	copy(key[:], strconv.FormatUint(seed, 10))
	rng := rand.NewChaCha8(key)
	h := md5.New()
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(int64(len(buf)), left)
		_, _ = rng.Read(buf[:n]) // never fails
		h.Write(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
		left -= n
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// run runs a command (cp, tar, sqlite3, ...) and fails the test if it
// exits non-zero or writes anything to stderr (as gocryptfs's
// TestCpWarnings: a warning is a bug too). It returns stdout.
func run(t *testing.T, dir string, stdin io.Reader, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Stdin = dir, stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	what := name + " " + strings.Join(args, " ")
	if code := exitCodeOf(t, cmd.Run(), what, &out, &errb); code != 0 || errb.Len() > 0 {
		t.Fatalf("%s (in %s): want exit 0 and no stderr, got exit %d\nstdout: %s\nstderr: %s", what, dir, code, out.String(), errb.String())
	}
	return out.String()
}

// treeEntry is what compareTrees checks of each entry.
type treeEntry struct {
	mode   fs.FileMode
	size   int64
	md5    string
	target string
}

// scanTree returns the entries below root by relative path.
func scanTree(t *testing.T, root string) map[string]treeEntry {
	t.Helper()
	m := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := treeEntry{mode: fi.Mode()}
		switch {
		case fi.Mode().IsRegular():
			e.size = fi.Size()
			e.md5 = md5File(t, p)
		case fi.Mode()&fs.ModeSymlink != 0:
			e.target, _ = os.Readlink(p)
		}
		m[rel] = e
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s: %v", root, err)
	}
	return m
}

// compareTrees fails the test unless got has exactly the entries of want,
// with the same type, permissions, size, content hash and link target.
func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	w, g := scanTree(t, want), scanTree(t, got)
	bad := 0
	for p, we := range w {
		ge, ok := g[p]
		switch {
		case !ok:
			t.Errorf("%s: missing in %s", p, got)
		case ge != we:
			t.Errorf("%s: want %+v, got %+v", p, we, ge)
		default:
			continue
		}
		if bad++; bad > 20 {
			t.Fatalf("too many differences between %s and %s", want, got)
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%s: in %s but not in %s", p, got, want)
		}
	}
	if len(w) == 0 {
		t.Fatalf("compareTrees: %s is empty; the test compares nothing", want)
	}
}

// makeTree creates a tree of nFiles files (mostly small, a few of a few
// hundred KiB) in nested directories, with symlinks, empty directories and
// varied permissions.
func makeTree(t *testing.T, root string, nFiles int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	perms := []fs.FileMode{0o644, 0o600, 0o755, 0o640, 0o444}
	for i := 0; i < nFiles; i++ {
		dir := filepath.Join(root, fmt.Sprintf("d%02d", i%37), fmt.Sprintf("e%d", i%5))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		size := rng.IntN(8 << 10)
		if i%97 == 0 {
			size = rng.IntN(600 << 10)
		}
		if i%50 == 0 {
			size = 0
		}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(rng.UintN(256))
		}
		p := filepath.Join(dir, fmt.Sprintf("file %04d.dat", i))
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, perms[i%len(perms)]); err != nil {
			t.Fatal(err)
		}
		if i%40 == 0 {
			if err := os.Symlink(filepath.Base(p), filepath.Join(dir, fmt.Sprintf("link%04d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 0; i < 5; i++ {
		if err := os.MkdirAll(filepath.Join(root, "empty", fmt.Sprint(i)), 0o750); err != nil {
			t.Fatal(err)
		}
	}
}

// objectFiles returns the regular files under STORE/objects.
func objectFiles(t *testing.T, store string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(filepath.Join(store, "objects"), func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list objects: %v", err)
	}
	return files
}

// diskUsage returns the bytes allocated to the files below root.
func diskUsage(t *testing.T, root string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		total += st.Blocks * 512
		return nil
	})
	if err != nil {
		t.Fatalf("du %s: %v", root, err)
	}
	return total
}

// waitPidExit waits until process pid has exited, using a pidfd (no
// polling). It fails the test after timeout.
func waitPidExit(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return
	}
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(timeout.Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("poll pidfd of %d: %v", pid, err)
		}
		if n == 0 {
			t.Fatalf("process %d still running after %s", pid, timeout)
		}
		return
	}
}

// parsePut parses pfs put's output by path.
func parsePut(t *testing.T, stdout string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		id, p, ok := strings.Cut(line, " ")
		if !ok || len(id) != 36 {
			t.Fatalf("pfs put: want lines \"<file-id> <path>\", got %q", line)
		}
		m[p] = id
	}
	return m
}

// nobodyDir returns a new directory that user nobody can reach
// (t.TempDir's directories are 0700), and fails the test if a directory
// above TMPDIR is not searchable by others.
func nobodyDir(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed to act as another user: %v", err)
	}
	base := t.TempDir()
	for d := base; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for d := os.TempDir(); ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm()&0o001 == 0 {
			t.Fatalf("user nobody cannot reach the test's directories: %s is not searchable by others (%v); use a TMPDIR they can traverse (make test-integ makes its own)", d, fi.Mode())
		}
		if d == "/" {
			break
		}
	}
	return base
}

// asNobody runs script with sh as user nobody; args are $1, $2, ...
func asNobody(t *testing.T, script string, args ...string) (string, string, int) {
	t.Helper()
	all := append([]string{"--reuid=nobody", "--regid=nogroup", "--clear-groups", "sh", "-c", script, "sh"}, args...)
	return runTimeout(t, time.Minute, "setpriv", all...)
}
