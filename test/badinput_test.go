package test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBadInputStore: a store path that is a file, a directory that is not
// a store, and a store whose format record is from the future, garbage,
// or invalid: every command fails with one clear line and a non-zero
// exit, and leaves the path untouched. (TestBadFlags covers bad flag
// values, TestMountErrors bad mountpoints, TestMissingStore a missing
// store.)
func TestBadInputStore(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	good := newStore(t)
	mountAt(t, good, mnt)
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unmountPfs(t, mnt)
	src := writeTemp(t, "src", "x")

	withFormat := func(format string) func(t *testing.T) string {
		return func(t *testing.T) string {
			s := filepath.Join(t.TempDir(), "store")
			run(t, "", nil, "cp", "-a", good, s)
			if err := os.WriteFile(filepath.Join(s, "format.json"), []byte(format), 0o600); err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
	for _, c := range []struct {
		name  string
		make  func(t *testing.T) string // returns the store path
		store bool                      // a store: pfs.log and lock may change
		want  []string                  // one of them in every message
	}{
		{"a file", func(t *testing.T) string { return writeTemp(t, "store", "not a store\n") }, false,
			[]string{"not a directory", "no pfs store there"}},
		{"a directory that is not a store", func(t *testing.T) string {
			d := t.TempDir()
			if err := os.WriteFile(filepath.Join(d, "notes.txt"), []byte("mine\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return d
		}, false, []string{"not a pfs store", "no pfs store there"}},
		{"format version 99", withFormat(`{"version": 99, "chunk_size": 4194304, "compression": "none", "backend": "local"}`), true,
			[]string{"format version 99; this pfs reads up to version 2: upgrade pfs"}},
		{"a garbage format.json", withFormat("\x00\x01garbage{{{"), true, []string{"format.json is damaged"}},
		{"an empty format.json", withFormat(""), true, []string{"format.json is damaged"}},
		{"format.json with chunk size 3", withFormat(`{"version": 1, "chunk_size": 3, "compression": "none", "backend": "local"}`), true,
			[]string{"invalid chunk size 3"}},
		{"format.json with an unknown backend", withFormat(`{"version": 1, "chunk_size": 4194304, "compression": "none", "backend": "ftp://x"}`), true,
			[]string{"backend"}},
		{"format.json with an unknown compression", withFormat(`{"version": 1, "chunk_size": 4194304, "compression": "lzma", "backend": "local"}`), true,
			[]string{"lzma"}},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			store := c.make(t)
			snap := snapshot
			if c.store {
				snap = storeSnapshot
			}
			before := snap(t, store)
			for _, args := range [][]string{
				{"mount", mnt}, {"put", src}, {"ls"}, {"fsck"}, {"fsck", "--repair"}, {"get", "/f", "-"}, {"rm", "/f"},
			} {
				all := append([]string{"--store", store}, args...)
				what := fmt.Sprintf("pfs %s on a store that is %s", strings.Join(args, " "), c.name)
				stdout, stderr, code := runPfs(t, all...)
				if code == 0 {
					t.Errorf("%s: want a failure, got exit 0\nstdout: %s", what, stdout)
					continue
				}
				wantFailure(t, what, stderr, code, code)
				if !slices.ContainsFunc(c.want, func(w string) bool { return strings.Contains(stderr, w) }) {
					t.Errorf("%s: want a message saying one of %q, got %q", what, c.want, stderr)
				}
				noPanic(t, what, stderr)
				if isMounted(mnt) {
					t.Fatalf("%s: failed, but %s is mounted", what, mnt)
				}
				if after := snap(t, store); after != before {
					t.Errorf("%s changed what it rejected:\nbefore:\n%s\nafter:\n%s", what, before, after)
					before = after
				}
			}
		})
	}
	fsckClean(t, good, "of the store the bad ones were copied from")
}

// TestBadInputFlagsMore covers the bad flags TestBadFlags does not: those
// of fsck, ls, rm and unmount, flag values that only conflict with an
// existing store, and bad mountpoints TestMountErrors does not try. Each
// is one line on stderr, a non-zero exit, and an untouched store.
func TestBadInputFlagsMore(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	store := newStore(t)
	mountAt(t, store, mnt, "--chunk-size", "16MiB")
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unmountPfs(t, mnt)
	src := writeTemp(t, "src", "x")
	tmpfs := mountTmpfs(t, 1<<20)
	before := storeSnapshot(t, store)

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"fsck", "--workers", "-1"}, exitUsage, "workers"},
		{[]string{"fsck", "--workers", "100000"}, exitUsage, "workers"},
		{[]string{"fsck", "--memory", "0"}, exitUsage, "--memory"},
		{[]string{"fsck", "--repair=maybe"}, exitUsage, "repair"},
		{[]string{"ls", "--memory", "1KiB"}, exitUsage, "memory"},
		{[]string{"ls", "--workers", "0"}, exitUsage, "workers"},
		{[]string{"rm", "--workers", "0", "/f"}, exitUsage, "workers"},
		{[]string{"get", "--memory", "-1", "/f", "-"}, exitUsage, "--memory"},
		{[]string{"put", "--backend", "ftp://x", src}, exitUsage, "backend"},
		{[]string{"mount", "--log-level", "loud", mnt}, exitUsage, "--log-level"},
		{[]string{"mount", "--backend", "bogus", mnt}, exitUsage, "backend"},
		{[]string{"mount", "--chunk-size", "0", mnt}, exitUsage, "--chunk-size"},
		{[]string{"mount", "--memory", "1.5.5MiB", mnt}, exitUsage, "--memory"},
		{[]string{"mount", "--workers", "1e9", mnt}, exitUsage, "--workers"},
		{[]string{"--retry-lock", "soon", "ls"}, exitUsage, "--retry-lock"},
		{[]string{"unmount", "--timeout", "forever", mnt}, exitUsage, "--timeout"},
		{[]string{"unmount"}, exitUsage, "MOUNTPOINT"},
		// Values that only this store rejects: its chunk size and
		// compression are fixed, and --memory must hold two of its chunks.
		{[]string{"put", "--chunk-size", "64KiB", src}, exitUsage, "chunk size"},
		{[]string{"mount", "--chunk-size", "4MiB", mnt}, exitUsage, "chunk size"},
		{[]string{"mount", "--compress", "zstd", mnt}, exitUsage, "compression"},
		{[]string{"mount", "--memory", "16MiB", mnt}, exitUsage, "two chunks"},
		{[]string{"put", "--memory", "16MiB", src}, exitUsage, "two chunks"},
		// A mountpoint that is another file system's mount point.
		{[]string{"mount", tmpfs}, exitMount, "already mounted"},
	} {
		all := append([]string{"--store", store}, c.args...)
		what := "pfs " + strings.Join(all, " ")
		stdout, stderr, code := runPfs(t, all...)
		wantFailure(t, what, stderr, code, c.code, c.want)
		noPanic(t, what, stderr)
		if stdout != "" {
			t.Errorf("%s: want nothing on stdout, got %q", what, stdout)
		}
		if isMounted(mnt) {
			t.Fatalf("%s: rejected, but %s is mounted", what, mnt)
		}
	}
	if after := storeSnapshot(t, store); after != before {
		t.Errorf("the rejected commands changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	fsckClean(t, store, "after the rejected commands")
}

// TestBadInputMountOverStore: a mountpoint that would hide the store from
// its own daemon (the store directory itself, a directory in it, or a
// directory above it, with --nonempty) is refused. Mounted, the daemon
// would reach its own objects and registry through its own mount, and the
// first write deadlocks in the kernel. If such a mount succeeds, the test
// detaches it at once, before anything touches it.
func TestBadInputMountOverStore(t *testing.T) {
	for _, c := range []struct {
		name string
		mnt  func(store string) string
	}{
		{"the store directory", func(store string) string { return store }},
		{"its objects directory", func(store string) string { return filepath.Join(store, "objects") }},
		{"its registry directory", func(store string) string { return filepath.Join(store, "registry") }},
		{"the directory above it", func(store string) string { return filepath.Dir(store) }},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			mnt, store := mountPfs(t)
			if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("data\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			unmountPfs(t, mnt)
			target := c.mnt(store)
			ourMountsMu.Lock()
			ourMounts[target] = true
			ourMountsMu.Unlock()
			what := "pfs mount --nonempty over " + c.name
			_, stderr, code := runPfs(t, "mount", "--nonempty", "--store", store, target)
			if isMounted(target) {
				detach(t, target)
				killDaemon(t, store)
				t.Fatalf("%s: mounted (exit %d); want a refusal: the daemon would reach its own store through its own mount and deadlock on the first write", what, code)
			}
			wantFailure(t, what, stderr, code, exitMount, store)
			fsckClean(t, store, "after "+what+" was refused")
		})
	}
}

// TestBadInputSecondDaemon: a second daemon on a mounted store, started
// directly (pfs mount --foreground), exits with one line naming the
// mount; and a mountpoint whose daemon died gets a hint to unmount it,
// which then works.
func TestBadInputSecondDaemon(t *testing.T) {
	mnt, store := mountPfs(t)
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mnt2 := filepath.Join(t.TempDir(), "mnt2")
	if err := os.Mkdir(mnt2, 0o755); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runPfs(t, "mount", "--foreground", "--store", store, mnt2)
	wantFailure(t, "a second pfs mount --foreground on a mounted store", stderr, code, exitLocked, "mounted at "+mnt)
	if isMounted(mnt2) {
		t.Fatalf("the second daemon mounted %s", mnt2)
	}

	killDaemon(t, store)
	_, stderr, code = runPfs(t, "mount", "--store", store, mnt)
	wantFailure(t, "pfs mount on the mountpoint of a dead daemon", stderr, code, exitMount, "not connected", "pfs unmount "+mnt)
	mustPfs(t, "unmount", mnt)
	if isMounted(mnt) {
		t.Fatalf("pfs unmount of a dead mount exited 0 but %s is still mounted", mnt)
	}
	mountAt(t, store, mnt)
	if b, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(b) != "data\n" {
		t.Errorf("f after the daemon was killed and the store mounted again: %q, %v; want \"data\\n\"", b, err)
	}
	unmountPfs(t, mnt)
	fsckClean(t, store, "after the daemon was killed and the store mounted again")
}

// TestBadInputNames: names of 255 bytes work and 256 give ENAMETOOLONG;
// names with newlines, control characters and invalid UTF-8 round-trip
// byte for byte, through a remount and through the offline commands.
func TestBadInputNames(t *testing.T) {
	mnt, store := mountPfs(t)
	long := strings.Repeat("n", 255)
	tooLong := strings.Repeat("n", 256)
	if err := os.WriteFile(filepath.Join(mnt, long), []byte("long"), 0o644); err != nil {
		t.Fatalf("create a 255-byte name: %v", err)
	}
	long2 := strings.Repeat("m", 254) + "\xff"
	if err := os.Rename(filepath.Join(mnt, long), filepath.Join(mnt, long2)); err != nil {
		t.Fatalf("rename to a 255-byte name: %v", err)
	}
	if err := os.Mkdir(filepath.Join(mnt, strings.Repeat("d", 255)), 0o755); err != nil {
		t.Fatalf("mkdir of a 255-byte name: %v", err)
	}
	for _, c := range []struct {
		what string
		err  error
	}{
		{"create", os.WriteFile(filepath.Join(mnt, tooLong), nil, 0o644)},
		{"mkdir", os.Mkdir(filepath.Join(mnt, tooLong), 0o755)},
		{"symlink", os.Symlink("target", filepath.Join(mnt, tooLong))},
		{"link", os.Link(filepath.Join(mnt, long2), filepath.Join(mnt, tooLong))},
		{"rename", os.Rename(filepath.Join(mnt, long2), filepath.Join(mnt, tooLong))},
		{"mknod", unix.Mknod(filepath.Join(mnt, tooLong), unix.S_IFIFO|0o644, 0)},
		{"stat", func() error { _, err := os.Stat(filepath.Join(mnt, tooLong)); return err }()},
	} {
		if !errors.Is(c.err, syscall.ENAMETOOLONG) {
			t.Errorf("%s with a 256-byte name: want ENAMETOOLONG, got %v", c.what, c.err)
		}
	}

	odd := []string{
		"new\nline", "\nleading newline", "trailing newline\n", "tab\there", "\x01\x02\x7f control",
		"invalid \xff\xfe utf-8", "\xc3\x28 bad continuation", "lone \x80", "日本語のファイル名", "emoji 🦫",
		"-rf", " leading space", "trailing space ", "back\\slash", `quote" and '`, "%s%n%d", "*?[glob]", "..dots..", "...",
	}
	if err := os.Mkdir(filepath.Join(mnt, "odd"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range odd {
		if err := os.WriteFile(filepath.Join(mnt, "odd", name), []byte(name), 0o644); err != nil {
			t.Errorf("create %q: %v", name, err)
		}
	}
	checkOdd := func(when string) {
		t.Helper()
		ents, err := os.ReadDir(filepath.Join(mnt, "odd"))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range ents {
			got = append(got, e.Name())
		}
		want := slices.Sorted(slices.Values(odd))
		if !slices.Equal(got, want) {
			t.Errorf("%s: readdir: want exactly\n%q\ngot\n%q", when, want, got)
		}
		for _, name := range odd {
			if b, err := os.ReadFile(filepath.Join(mnt, "odd", name)); err != nil || string(b) != name {
				t.Errorf("%s: read %q: %q, %v", when, name, b, err)
			}
		}
		if b, err := os.ReadFile(filepath.Join(mnt, long2)); err != nil || string(b) != "long" {
			t.Errorf("%s: read the 255-byte name: %q, %v", when, b, err)
		}
	}
	checkOdd("before the remount")
	remount(t, mnt, store)
	checkOdd("after the remount")
	unmountPfs(t, mnt)

	// Offline: get by path, for names no shell would pass unquoted.
	for _, name := range odd {
		stdout, stderr, code := runPfs(t, "get", "--store", store, "/odd/"+name, "-")
		if code != 0 || stdout != name {
			t.Errorf("pfs get /odd/%q -: want %q and exit 0, got %q, exit %d, %s", name, name, stdout, code, stderr)
		}
	}
	fsckClean(t, store, "after odd names")
}

// TestBadInputDeepPath makes a directory tree 300 levels deep, so that the
// full path (4 800 bytes) is longer than PATH_MAX, walking it with openat
// as the kernel will not take the path whole; then checks it after a
// remount, offline, and removes it.
func TestBadInputDeepPath(t *testing.T) {
	const depth = 300
	const level = "level-0123456" // 13 bytes + "/" per level
	mnt, store := mountPfs(t)
	fd, err := unix.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var storePath strings.Builder
	for i := 0; i < depth; i++ {
		name := fmt.Sprintf("%s%03d", level, i)
		storePath.WriteString("/" + name)
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatalf("mkdirat at depth %d: %v", i, err)
		}
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatalf("openat at depth %d: %v", i, err)
		}
		fd = next
	}
	leaf, err := unix.Openat(fd, "leaf", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
	if err != nil {
		t.Fatalf("create the leaf at depth %d: %v", depth, err)
	}
	if _, err := unix.Write(leaf, []byte("deep\n")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Close(leaf); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	full := mnt + storePath.String() + "/leaf"
	if _, err := os.Stat(full); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Fatalf("stat of the %d-byte path: want ENAMETOOLONG (it is longer than PATH_MAX), got %v", len(full), err)
	}

	readLeaf := func(when string) {
		t.Helper()
		fd, err := unix.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < depth; i++ {
			next, err := unix.Openat(fd, fmt.Sprintf("%s%03d", level, i), unix.O_RDONLY|unix.O_DIRECTORY, 0)
			unix.Close(fd)
			if err != nil {
				t.Fatalf("%s: openat at depth %d: %v", when, i, err)
			}
			fd = next
		}
		defer unix.Close(fd)
		lf, err := unix.Openat(fd, "leaf", unix.O_RDONLY, 0)
		if err != nil {
			t.Fatalf("%s: open the leaf: %v", when, err)
		}
		defer unix.Close(lf)
		buf := make([]byte, 100)
		n, err := unix.Read(lf, buf)
		if err != nil || string(buf[:n]) != "deep\n" {
			t.Errorf("%s: read the leaf: %q, %v; want \"deep\\n\"", when, buf[:n], err)
		}
	}
	readLeaf("before the remount")
	remount(t, mnt, store)
	readLeaf("after the remount")
	unmountPfs(t, mnt)

	// Offline, the path is just a string.
	p := storePath.String() + "/leaf"
	if stdout, stderr, code := runPfs(t, "get", "--store", store, p, "-"); code != 0 || stdout != "deep\n" {
		t.Errorf("pfs get of the %d-byte path: want \"deep\\n\" and exit 0, got %q, exit %d, %s", len(p), stdout, code, stderr)
	}
	if stdout, _ := mustPfs(t, "ls", "--store", store, p); !strings.HasSuffix(strings.TrimSpace(stdout), " "+p) {
		t.Errorf("pfs ls of the %d-byte path: want a line ending with the path, got %q", len(p), stdout)
	}
	fsckClean(t, store, "with a 300-level tree")

	mountAt(t, store, mnt)
	if err := os.RemoveAll(filepath.Join(mnt, level+"000")); err != nil {
		t.Fatalf("rm -r of the 300-level tree: %v", err)
	}
	unmountPfs(t, mnt)
	fsckClean(t, store, "after removing the 300-level tree")
	if objs := objectFiles(t, store); len(objs) != 0 {
		t.Errorf("after removing everything: want no objects, got %d", len(objs))
	}
}

// TestBadInputHugeDirectory puts 100 000 files in one directory (created
// by a child process in a tight loop), lists it with ls, and again after
// a remount and offline.
func TestBadInputHugeDirectory(t *testing.T) {
	const n = 100_000
	load := crashloadBin(t)
	mnt, store := mountPfs(t)
	dir := filepath.Join(mnt, "big")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stdout, stderr, code := runTimeout(t, 10*time.Minute, load, "create", dir, strconv.Itoa(n))
	created := time.Since(start)
	if code != 0 || stdout != fmt.Sprintf("created %d\n", n) {
		t.Fatalf("crashload create %d files: exit %d, %q, %s", n, code, stdout, stderr)
	}
	count := func(when string) time.Duration {
		t.Helper()
		start := time.Now()
		out := run(t, "", nil, "sh", "-c", fmt.Sprintf("ls %s | wc -l", dir))
		took := time.Since(start)
		if got, _ := strconv.Atoi(strings.TrimSpace(out)); got != n {
			t.Errorf("%s: ls | wc -l: %s, want %d", when, strings.TrimSpace(out), n)
		}
		return took
	}
	listed := count("after creating them")
	remount(t, mnt, store)
	relisted := count("after the remount")
	unmountPfs(t, mnt)
	start = time.Now()
	out, _ := mustPfs(t, "ls", "--store", store, "/big")
	offline := time.Since(start)
	if got := strings.Count(out, "\n") - 2; got != n { // header and /big/
		t.Errorf("pfs ls /big: %d entries, want %d", got, n)
	}
	sum := fsckClean(t, store, "with 100 000 files in one directory")
	if sum.files != n {
		t.Errorf("pfs fsck: %q; want %d files", sum.line, n)
	}
	msg := fmt.Sprintf("100 000 files in one directory: created in %s (%.0f files/s), ls | wc -l %s, after a remount %s, pfs ls offline %s, fsck %s",
		created.Round(time.Millisecond), n/created.Seconds(), listed.Round(time.Millisecond), relisted.Round(time.Millisecond),
		offline.Round(time.Millisecond), sum.took)
	t.Log(msg)
	fmt.Println(msg)
}

// TestBadInputPermissions: with --allow-other another user reaches the
// mount, and the kernel enforces root's modes on them: nobody reads a 0644
// file but cannot read or write a 0600 one, nor create or delete in a
// 0755 directory of root's. The store itself is 0700 and nothing in it is
// readable by others.
func TestBadInputPermissions(t *testing.T) {
	base := nobodyDir(t)
	mnt := filepath.Join(base, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(base, "store") // reachable by nobody, so that its own mode is what keeps them out
	mountAt(t, store, mnt, "--allow-other")
	write := func(name string, mode os.FileMode) {
		p := filepath.Join(mnt, name)
		if err := os.WriteFile(p, []byte("root's "+name+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("public", 0o644)
	write("secret", 0o600)
	// Small parts live in the registry; this one is an object file.
	writeRandomFile(t, filepath.Join(mnt, "big"), 1<<20, 1)
	if err := os.Mkdir(filepath.Join(mnt, "rootdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("rootdir/inside", 0o644)

	// Positive control: nobody reaches the mount and reads what is public.
	if out, stderr, code := asNobody(t, `id -u; cat "$1"; ls "$2"`, filepath.Join(mnt, "public"), filepath.Join(mnt, "rootdir")); code != 0 || out != "65534\nroot's public\ninside\n" {
		t.Fatalf("as nobody on an --allow-other mount: id, cat of a 0644 file, ls of a 0755 dir: exit %d, %q, %s; want them to work", code, out, stderr)
	}
	for _, c := range []struct{ what, script string }{
		{"read a 0600 file of root", `cat "$1"/secret`},
		{"write a 0600 file of root", `echo x >> "$1"/secret`},
		{"write a 0644 file of root", `echo x >> "$1"/public`},
		{"truncate a 0644 file of root", `: > "$1"/public`},
		{"create a file in a 0755 dir of root", `touch "$1"/rootdir/mine`},
		{"mkdir in a 0755 dir of root", `mkdir "$1"/rootdir/mine`},
		{"delete in a 0755 dir of root", `rm -f "$1"/rootdir/inside`},
		{"rename in a 0755 dir of root", `mv "$1"/rootdir/inside "$1"/rootdir/moved`},
		{"chmod a file of root", `chmod 666 "$1"/public`},
		{"create in the 0755 root of the mount", `touch "$1"/mine`},
	} {
		_, stderr, code := asNobody(t, c.script, mnt)
		if code == 0 || !strings.Contains(stderr, "ermission denied") && !strings.Contains(stderr, "Operation not permitted") {
			t.Errorf("as nobody: %s: want permission denied, got exit %d, stderr %q", c.what, code, stderr)
		}
	}
	for name, want := range map[string]string{"secret": "root's secret\n", "public": "root's public\n", "rootdir/inside": "root's rootdir/inside\n"} {
		if b, err := os.ReadFile(filepath.Join(mnt, name)); err != nil || string(b) != want {
			t.Errorf("%s after nobody's attempts: %q, %v; want %q", name, b, err, want)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(mnt, "rootdir")); len(ents) != 1 {
		t.Errorf("rootdir after nobody's attempts: %d entries, want 1", len(ents))
	}
	unmountPfs(t, mnt)

	// The store: 0700, and no file or directory in it open to others.
	fi, err := os.Stat(store)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("store directory %s: mode %v, want 0700", store, fi.Mode().Perm())
	}
	var open []string
	err = filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm()&0o077 != 0 {
			rel, _ := filepath.Rel(store, p)
			open = append(open, fmt.Sprintf("%s %v", rel, info.Mode().Perm()))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(open) > 0 {
		t.Errorf("files in the store readable or writable by group or others (want none; the store holds everyone's data):\n%s", strings.Join(open, "\n"))
	}
	// And nobody cannot look into it.
	if _, stderr, code := asNobody(t, `ls "$1"`, store); code == 0 || !strings.Contains(stderr, "ermission denied") {
		t.Errorf("as nobody: ls of the store: want permission denied, got exit %d, %q", code, stderr)
	}
	if _, stderr, code := asNobody(t, `cat "$1"`, objectFiles(t, store)[0]); code == 0 || !strings.Contains(stderr, "ermission denied") {
		t.Errorf("as nobody: cat of an object: want permission denied, got exit %d, %q", code, stderr)
	}
}
