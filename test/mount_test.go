package test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// workload is one kind of use of a mount: run writes through the mount,
// verify checks the result, again after a remount.
type workload struct {
	name   string
	run    func(t *testing.T, mnt string)
	verify func(t *testing.T, mnt string)
}

// TestMountWorkloads runs real programs on a mount (cp, cat, dd, tar,
// rsync, sqlite3, git), then unmounts, remounts and verifies everything
// again by hash, so the data comes from the store; finally fsck must find
// the store clean.
func TestMountWorkloads(t *testing.T) {
	mnt, store := mountPfs(t)
	work := t.TempDir()
	wls := []workload{
		filesWorkload(work, true),
		tarWorkload(work, 2000),
		rsyncWorkload(work),
		sqliteWorkload(100_000),
		gitWorkload(),
	}
	for _, w := range wls {
		t.Run(w.name, func(t *testing.T) {
			w.run(t, mnt)
			w.verify(t, mnt)
		})
	}
	remount(t, mnt, store)
	for _, w := range wls {
		t.Run(w.name+"/after-remount", func(t *testing.T) { w.verify(t, mnt) })
	}
	unmountPfs(t, mnt)
	if code := fsck(t, store); code != 0 {
		t.Errorf("fsck after the workloads: want exit 0, got %d", code)
	}
}

// TestMountConfigs repeats smaller workloads under other settings
// (gocryptfs's tests/matrix): small chunks with zstd, and one worker with
// the smallest memory cap.
func TestMountConfigs(t *testing.T) {
	for _, args := range [][]string{
		{"--chunk-size", "64KiB", "--compress", "zstd"},
		{"--workers", "1", "--memory", "8MiB"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			mnt, store := mountPfs(t, args...)
			work := t.TempDir()
			wls := []workload{filesWorkload(work, false), tarWorkload(work, 300)}
			for _, w := range wls {
				w.run(t, mnt)
				w.verify(t, mnt)
			}
			remount(t, mnt, store, args...)
			for _, w := range wls {
				w.verify(t, mnt)
			}
		})
	}
}

// filesWorkload copies files of many sizes in with cp, cat and dd, and
// reads them back with cat and md5sum; big adds a 1 GiB dd.
func filesWorkload(work string, big bool) workload {
	sizes := []int64{0, 1, 4095, 4096, 4097, 65535, 65536, 65537, 1 << 20, chunk - 1, chunk, chunk + 1, 10<<20 + 7, 64 << 20}
	want := map[string]string{} // name in the mount -> md5
	return workload{
		name: "files",
		run: func(t *testing.T, mnt string) {
			src := filepath.Join(work, "files")
			if err := os.MkdirAll(src, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(mnt, "files"), 0o755); err != nil {
				t.Fatal(err)
			}
			for i, size := range sizes {
				p := filepath.Join(src, fmt.Sprintf("s%d", size))
				sum := writeRandomFile(t, p, size, uint64(1000+i))
				// Three ways in: cp, cat >, dd.
				cp := filepath.Join(mnt, "files", fmt.Sprintf("cp-%d", size))
				run(t, "", nil, "cp", p, cp)
				want[cp] = sum
				cat := filepath.Join(mnt, "files", fmt.Sprintf("cat-%d", size))
				in, err := os.Open(p)
				if err != nil {
					t.Fatal(err)
				}
				run(t, "", in, "sh", "-c", `cat > "$1"`, "sh", cat)
				in.Close()
				want[cat] = sum
				dd := filepath.Join(mnt, "files", fmt.Sprintf("dd-%d", size))
				run(t, "", nil, "dd", "if="+p, "of="+dd, "bs=1M", "status=none", "conv=fsync")
				want[dd] = sum
			}
			if big {
				p := filepath.Join(src, "1GiB")
				sum := writeRandomFile(t, p, 1<<30, 77)
				dd := filepath.Join(mnt, "files", "dd-1GiB")
				run(t, "", nil, "dd", "if="+p, "of="+dd, "bs=4M", "status=none", "conv=fsync")
				want[dd] = sum
				if err := os.Remove(p); err != nil { // save the disk
					t.Fatal(err)
				}
			}
		},
		verify: func(t *testing.T, mnt string) {
			if len(want) == 0 {
				t.Fatal("files: nothing was written")
			}
			for p, sum := range want {
				out := run(t, "", nil, "md5sum", p)
				if got := strings.Fields(out)[0]; got != sum {
					t.Errorf("md5sum %s: %s, want %s", p, got, sum)
				}
			}
			// cat through a pipe too, for one mid-size file.
			p := filepath.Join(mnt, "files", fmt.Sprintf("cat-%d", chunk+1))
			if got := md5Bytes([]byte(run(t, "", nil, "cat", p))); got != want[p] {
				t.Errorf("cat %s: md5 %s, want %s", p, got, want[p])
			}
		},
	}
}

// tarWorkload extracts a tar of a tree of n files into the mount, then
// creates a tar from the mount and compares its extraction with the
// original tree.
func tarWorkload(work string, n int) workload {
	src := filepath.Join(work, fmt.Sprintf("tree%d", n))
	return workload{
		name: fmt.Sprintf("tar-%d-files", n),
		run: func(t *testing.T, mnt string) {
			makeTree(t, src, n, uint64(n))
			tarball := filepath.Join(work, fmt.Sprintf("tree%d.tar", n))
			run(t, "", nil, "tar", "-C", src, "-cf", tarball, ".")
			dst := filepath.Join(mnt, fmt.Sprintf("tar%d", n))
			if err := os.Mkdir(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			run(t, "", nil, "tar", "-C", dst, "-xpf", tarball)
		},
		verify: func(t *testing.T, mnt string) {
			dst := filepath.Join(mnt, fmt.Sprintf("tar%d", n))
			compareTrees(t, src, dst)
			// Re-create the tar from the mount and extract it outside.
			back := t.TempDir()
			tarball := filepath.Join(t.TempDir(), "back.tar")
			run(t, "", nil, "tar", "-C", dst, "-cf", tarball, ".")
			run(t, "", nil, "tar", "-C", back, "-xpf", tarball)
			compareTrees(t, src, back)
		},
	}
}

// rsyncWorkload copies a tree in and out with rsync -a --checksum.
func rsyncWorkload(work string) workload {
	src := filepath.Join(work, "rsync-src")
	return workload{
		name: "rsync",
		run: func(t *testing.T, mnt string) {
			makeTree(t, src, 500, 99)
			run(t, "", nil, "rsync", "-a", "--checksum", src+"/", filepath.Join(mnt, "rsync")+"/")
		},
		verify: func(t *testing.T, mnt string) {
			dst := filepath.Join(mnt, "rsync")
			// A dry run that finds nothing to do: contents, modes and times agree.
			if out := run(t, "", nil, "rsync", "-a", "--checksum", "-n", "-i", src+"/", dst+"/"); out != "" {
				t.Errorf("rsync --checksum -n -i %s/ %s/: want no differences, got:\n%s", src, dst, out)
			}
			back := t.TempDir()
			run(t, "", nil, "rsync", "-a", "--checksum", dst+"/", back+"/")
			compareTrees(t, src, back)
		},
	}
}

// sqliteWorkload inserts rows in 100 transactions and checks integrity.
func sqliteWorkload(rows int) workload {
	const txns = 100
	return workload{
		name: "sqlite3",
		run: func(t *testing.T, mnt string) {
			var sql strings.Builder
			sql.WriteString("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER NOT NULL);\n")
			for i := 0; i < txns; i++ {
				fmt.Fprintf(&sql, `BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < %d)
INSERT INTO t(v, n) SELECT hex(randomblob(32)), x FROM c;
COMMIT;
`, rows/txns)
			}
			sql.WriteString("CREATE INDEX t_v ON t(v);\n")
			run(t, filepath.Join(mnt), strings.NewReader(sql.String()), "sqlite3", "-bail", "db.sqlite")
		},
		verify: func(t *testing.T, mnt string) {
			out := run(t, mnt, strings.NewReader("PRAGMA integrity_check;\nSELECT count(*), sum(n) FROM t;\n"), "sqlite3", "-bail", "db.sqlite")
			want := fmt.Sprintf("ok\n%d|%d\n", rows, txns*(rows/txns)*(rows/txns+1)/2)
			if out != want {
				t.Errorf("sqlite3 integrity_check and count: want %q, got %q", want, out)
			}
		},
	}
}

// gitWorkload makes a repository with a few commits and checks it with
// git fsck.
func gitWorkload() workload {
	git := func(t *testing.T, dir string, args ...string) string {
		t.Helper()
		all := append([]string{"-c", "user.name=pfs test", "-c", "user.email=test@pfs.invalid",
			"-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"}, args...)
		return run(t, dir, nil, "git", all...)
	}
	var head string
	return workload{
		name: "git",
		run: func(t *testing.T, mnt string) {
			repo := filepath.Join(mnt, "repo")
			git(t, mnt, "init", "-q", repo)
			makeTree(t, filepath.Join(repo, "src"), 300, 7)
			git(t, repo, "add", "-A")
			git(t, repo, "commit", "-q", "-m", "first")
			for i := 0; i < 3; i++ {
				if err := os.WriteFile(filepath.Join(repo, "CHANGES"), bytes.Repeat([]byte(fmt.Sprintf("change %d\n", i)), 1000*(i+1)), 0o644); err != nil {
					t.Fatal(err)
				}
				git(t, repo, "add", "-A")
				git(t, repo, "commit", "-q", "-m", fmt.Sprintf("change %d", i))
			}
			git(t, repo, "gc", "-q")
			head = strings.TrimSpace(git(t, repo, "rev-parse", "HEAD"))
		},
		verify: func(t *testing.T, mnt string) {
			repo := filepath.Join(mnt, "repo")
			git(t, repo, "fsck", "--full", "--strict", "--no-progress")
			if st := git(t, repo, "status", "--porcelain"); st != "" {
				t.Errorf("git status in the mounted repo: want clean, got:\n%s", st)
			}
			if got := strings.TrimSpace(git(t, repo, "rev-parse", "HEAD")); got != head {
				t.Errorf("git HEAD: %s, want %s", got, head)
			}
			if n := strings.TrimSpace(git(t, repo, "rev-list", "--count", "HEAD")); n != "4" {
				t.Errorf("git rev-list --count HEAD: %s, want 4", n)
			}
		},
	}
}

// TestDaemonName: the mount daemon shows as pfs in ps and top (it was
// "exe", the name of the /proc/self/exe it is started as).
func TestDaemonName(t *testing.T) {
	_, store := mountPfs(t)
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", daemonPid(t, store)))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(comm)); got != "pfs" {
		t.Errorf("daemon's name: %q, want pfs", got)
	}
}

// TestMountErrors checks the mountpoint checks of pfs mount.
func TestMountErrors(t *testing.T) {
	dir := t.TempDir()
	store := newStore(t)

	_, stderr, code := runPfs(t, "mount", "--store", store, filepath.Join(dir, "missing"))
	wantFailure(t, "mount on a missing directory", stderr, code, exitMount, "does not exist")

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = runPfs(t, "mount", "--store", store, file)
	wantFailure(t, "mount on a file", stderr, code, exitMount, "not a directory")

	full := filepath.Join(dir, "full")
	if err := os.MkdirAll(filepath.Join(full, "something"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = runPfs(t, "mount", "--store", store, full)
	wantFailure(t, "mount on a non-empty directory", stderr, code, exitMount, "not empty", "--nonempty")
	if _, err := os.Stat(store); err == nil {
		t.Errorf("rejected mounts created the store %s", store)
	}

	// --nonempty mounts over it.
	mountAt(t, store, full, "--nonempty")
	unmountPfs(t, full)

	mnt, store1 := mountPfs(t)
	_, stderr, code = runPfs(t, "mount", "--store", newStore(t), mnt)
	wantFailure(t, "mount on a mount point", stderr, code, exitMount, "already mounted", "fuse.pfs", store1)

	_, stderr, code = runPfs(t, "unmount", dir)
	wantFailure(t, "unmount of a directory that is no mount", stderr, code, exitUnmount, "not mounted")
	_, stderr, code = runPfs(t, "unmount", "/proc")
	wantFailure(t, "unmount of a mount that is not pfs", stderr, code, exitUnmount, "not a pfs mount")
}

// TestStoreLockedByMount: a mounted store refuses a second mount and the
// offline commands, naming the mountpoint and the daemon's pid.
func TestStoreLockedByMount(t *testing.T) {
	mnt, store := mountPfs(t)
	pid := daemonPid(t, store)
	if err := os.WriteFile(filepath.Join(mnt, "hello"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	mnt2 := filepath.Join(t.TempDir(), "mnt2")
	if err := os.Mkdir(mnt2, 0o755); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runPfs(t, "mount", "--store", store, mnt2)
	wantFailure(t, "second mount of a mounted store", stderr, code, exitLocked,
		"mounted at "+mnt, fmt.Sprintf("pid %d", pid))
	if isMounted(mnt2) {
		t.Errorf("the refused second mount is mounted at %s", mnt2)
	}

	msg := fmt.Sprintf("store %s is mounted at %s by pid %d: use the files under %s, or run 'pfs unmount %s' first", store, mnt, pid, mnt, mnt)
	src := writeTemp(t, "f", "data")
	for _, args := range [][]string{{"put", src}, {"get", "/hello", "-"}, {"ls"}, {"rm", "/hello"}, {"fsck"}} {
		_, stderr, code := runPfs(t, append([]string{"--store", store}, args...)...)
		wantFailure(t, "pfs "+args[0]+" while mounted", stderr, code, exitLocked, msg)
	}

	// pfs unmount returns once the daemon has exited and released the
	// store, so an offline command right after it works.
	unmountPfs(t, mnt)
	stdout, _ := mustPfs(t, "get", "--store", store, "/hello", "-")
	if stdout != "hello\n" {
		t.Errorf("get /hello after unmount: want %q, got %q", "hello\n", stdout)
	}
}

// TestUnmountBusy: unmounting a mount in use fails naming the process
// that uses it; --lazy detaches it, and the daemon exits once that process
// lets go.
func TestUnmountBusy(t *testing.T) {
	mnt, store := mountPfs(t)
	if err := os.Mkdir(filepath.Join(mnt, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "dir", "kept"), []byte("kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	daemon := daemonPid(t, store)

	user := exec.Command("sleep", "3600")
	user.Dir = filepath.Join(mnt, "dir") // its cwd keeps the mount busy
	if err := user.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = user.Process.Kill()
		_ = user.Wait()
	}()

	_, stderr, code := runPfs(t, "unmount", mnt)
	wantFailure(t, "unmount of a busy mount", stderr, code, exitBusy,
		fmt.Sprintf("pid %d (sleep)", user.Process.Pid), "--lazy")
	if !isMounted(mnt) {
		t.Fatalf("the refused unmount unmounted %s", mnt)
	}

	// --lazy with --timeout 0 detaches and returns at once.
	mustPfs(t, "unmount", "--lazy", "--timeout", "0", mnt)
	if isMounted(mnt) {
		t.Errorf("pfs unmount --lazy: %s is still mounted", mnt)
	}
	if _, _, code := runPfs(t, "ls", "--store", store); code != exitLocked {
		t.Errorf("ls while the detached mount is still in use: want exit %d (locked), got %d", exitLocked, code)
	}
	_ = user.Process.Kill()
	_ = user.Wait()
	waitPidExit(t, daemon, 5*time.Minute)
	stdout, _ := mustPfs(t, "get", "--store", store, "/dir/kept", "-")
	if stdout != "kept\n" {
		t.Errorf("get /dir/kept after the lazy unmount: want %q, got %q", "kept\n", stdout)
	}
}

// TestReadOnlyMount: writes fail with EROFS, reads work.
func TestReadOnlyMount(t *testing.T) {
	mnt, store := mountPfs(t)
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	remount(t, mnt, store, "--read-only")
	if b, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(b) != "data" {
		t.Errorf("read on a read-only mount: want \"data\", got %q %v", b, err)
	}
	err := os.WriteFile(filepath.Join(mnt, "g"), []byte("x"), 0o644)
	if err == nil || !strings.Contains(err.Error(), "read-only file system") {
		t.Errorf("create on a read-only mount: want EROFS, got %v", err)
	}
}

// TestMountHelper: pfs installed as mount.pfs takes mount(8)'s arguments.
func TestMountHelper(t *testing.T) {
	helper := filepath.Join(t.TempDir(), "mount.pfs")
	if err := os.Symlink(pfsBin, helper); err != nil {
		t.Fatal(err)
	}
	store := newStore(t)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	ourMountsMu.Lock()
	ourMounts[mnt] = true
	ourMountsMu.Unlock()
	t.Cleanup(func() { cleanupMount(t, mnt, store) })

	out, err := exec.Command(helper, store, mnt, "-o", "rw,noauto,nosuid,memory=64MiB,workers=2").CombinedOutput()
	if err != nil {
		t.Fatalf("mount.pfs STORE MNT -o ...: %v: %s", err, out)
	}
	if !isMounted(mnt) {
		t.Fatalf("mount.pfs exited 0 but %s is not mounted", mnt)
	}
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("via helper"), 0o644); err != nil {
		t.Fatal(err)
	}
	unmountPfs(t, mnt)

	out, err = exec.Command(helper, store, mnt, "-o", "bogus_option").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `unknown option "bogus_option"`) {
		t.Errorf("mount.pfs -o bogus_option: want an error naming the option, got %v: %s", err, out)
	}
}

// TestForegroundSignal: pfs mount --foreground serves until SIGTERM, then
// unmounts, closes the store and exits 0 with everything durable. The
// test waits for readiness on the daemon's notify pipe, as pfs mount does.
func TestForegroundSignal(t *testing.T) {
	store := newStore(t)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	ourMountsMu.Lock()
	ourMounts[mnt] = true
	ourMountsMu.Unlock()
	t.Cleanup(func() { cleanupMount(t, mnt, store) })

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd, cancel := pfsCommand(t, "mount", "--store", store, "--foreground", "--notify-fd", "3", mnt)
	defer cancel()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	msg, _ := io.ReadAll(r) // until the daemon reports and closes its end
	if strings.TrimSpace(string(msg)) != "ok" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("pfs mount --foreground: want \"ok\" on the notify fd, got %q\nstderr: %s", msg, stderr.String())
	}
	if !isMounted(mnt) {
		t.Fatalf("pfs mount --foreground reported ok but %s is not mounted", mnt)
	}
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("durable\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pfs mount --foreground after SIGTERM: want exit 0, got %v\nstderr: %s", err, stderr.String())
	}
	if isMounted(mnt) {
		t.Errorf("pfs mount --foreground exited after SIGTERM but %s is still mounted", mnt)
	}
	if !strings.Contains(stderr.String(), "store closed") {
		t.Errorf("foreground log on stderr: want it to say the store was closed, got:\n%s", stderr.String())
	}
	stdout, _ := mustPfs(t, "get", "--store", store, "/f", "-")
	if stdout != "durable\n" {
		t.Errorf("get /f after SIGTERM: want %q, got %q", "durable\n", stdout)
	}
}
