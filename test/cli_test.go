package test

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

const chunk = 4 << 20 // the default chunk size

// TestPutGetRoundTrip stores files of sizes around the chunk boundaries
// and a large one, and gets each back by path and by ID.
func TestPutGetRoundTrip(t *testing.T) {
	store := newStore(t)
	src, out := t.TempDir(), t.TempDir()
	for _, size := range []int64{0, 1, chunk - 1, chunk, chunk + 1, 300 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			name := fmt.Sprintf("f%d.bin", size)
			p := filepath.Join(src, name)
			want := writeRandomFile(t, p, size, uint64(size))
			stdout, stderr := mustPfs(t, "put", "--store", store, p)
			if stderr != "" {
				t.Errorf("pfs put with stderr not a terminal: want no output on stderr (no progress bar, no logs), got %q", stderr)
			}
			ids := parsePut(t, stdout)
			id, ok := ids["/"+name]
			if len(ids) != 1 || !ok {
				t.Fatalf("pfs put %s: want one line for /%s, got %q", p, name, stdout)
			}

			byPath := filepath.Join(out, name+".by-path")
			if _, stderr := mustPfs(t, "get", "--store", store, "/"+name, byPath); stderr != "" {
				t.Errorf("pfs get with stderr not a terminal: want no output on stderr, got %q", stderr)
			}
			if got := md5File(t, byPath); got != want {
				t.Errorf("get by path: md5 %s, want %s", got, want)
			}
			byID := filepath.Join(out, name+".by-id")
			mustPfs(t, "get", "--store", store, id, byID)
			if got := md5File(t, byID); got != want {
				t.Errorf("get by ID %s: md5 %s, want %s", id, got, want)
			}
			if fi, err := os.Stat(byID); err != nil || fi.Size() != size {
				t.Errorf("get by ID: want %d bytes, got %v %v", size, fi, err)
			}
		})
	}
	if code := fsck(t, store); code != 0 {
		t.Errorf("fsck after round trips: want exit 0, got %d", code)
	}
}

// TestGetOutputs checks the default output name, a directory as OUTPUT,
// stdout, and a missing file.
func TestGetOutputs(t *testing.T) {
	store := newStore(t)
	src := filepath.Join(t.TempDir(), "hello.txt")
	want := writeRandomFile(t, src, 12345, 7)
	mustPfs(t, "put", "--store", store, src, "--dest", "/docs/")

	// Default: the base name in the current directory.
	cwd := t.TempDir()
	cmd, cancel := pfsCommand(t, "get", "--store", store, "/docs/hello.txt")
	defer cancel()
	cmd.Dir = cwd
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pfs get without OUTPUT: %v: %s", err, out)
	}
	if got := md5File(t, filepath.Join(cwd, "hello.txt")); got != want {
		t.Errorf("get into cwd: md5 %s, want %s", got, want)
	}

	// A directory: into it.
	dir := t.TempDir()
	mustPfs(t, "get", "--store", store, "/docs/hello.txt", dir)
	if got := md5File(t, filepath.Join(dir, "hello.txt")); got != want {
		t.Errorf("get into a directory: md5 %s, want %s", got, want)
	}

	// Stdout.
	stdout, _ := mustPfs(t, "get", "--store", store, "/docs/hello.txt", "-")
	if got := md5Bytes([]byte(stdout)); got != want {
		t.Errorf("get to stdout: md5 %s, want %s", got, want)
	}

	// Missing path and ID: exit 5, no output file.
	for _, arg := range []string{"/docs/nope.txt", "0b7e4f3c-9c1d-4f7e-8a51-3c1e2d9f4a10"} {
		target := filepath.Join(dir, "missing")
		_, stderr, code := runPfs(t, "get", "--store", store, arg, target)
		wantFailure(t, "get "+arg, stderr, code, exitNotFound, arg)
		if _, err := os.Stat(target); err == nil {
			t.Errorf("get %s failed but created %s", arg, target)
		}
	}

	// A directory in the store is not a file.
	_, stderr, code := runPfs(t, "get", "--store", store, "/docs", filepath.Join(dir, "x"))
	if code == 0 || !strings.Contains(stderr, "not a regular file") {
		t.Errorf("get of a directory: want an error saying \"not a regular file\", got exit %d %q", code, stderr)
	}
}

// TestSparseFile stores a 3 GiB file that is almost all hole: the holes
// must take no space in the store, and it must come back identical.
func TestSparseFile(t *testing.T) {
	store := newStore(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "sparse.img")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	const size = 3 << 30
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	block := bytes.Repeat([]byte("pfs sparse block "), 4096/16)[:4096]
	for _, off := range []int64{0, 1<<30 + 12345, 2 << 30, size - 4096} {
		if _, err := f.WriteAt(block, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := md5File(t, src)

	mustPfs(t, "put", "--store", store, src)
	objects := diskUsage(t, filepath.Join(store, "objects"))
	if objects > 16<<20 {
		t.Errorf("a 3 GiB file with 16 KiB of data takes %d bytes in STORE/objects; want holes to take no space (< 16 MiB)", objects)
	}

	out := filepath.Join(dir, "sparse.out")
	mustPfs(t, "get", "--store", store, "/sparse.img", out)
	if fi, err := os.Stat(out); err != nil || fi.Size() != size {
		t.Fatalf("get: want a %d-byte file, got %v %v", int64(size), fi, err)
	}
	if got := md5File(t, out); got != want {
		t.Errorf("get of the sparse file: md5 %s, want %s", got, want)
	}
	if du := diskUsage(t, out); du > 64<<20 {
		t.Errorf("get wrote the holes out: %s allocates %d bytes; want it sparse (< 64 MiB)", out, du)
	}
	ls := lsEntries(t, store, "/")
	if e := ls["/sparse.img"]; e.size != size {
		t.Errorf("ls: /sparse.img size %d, want %d", e.size, int64(size))
	}
}

// TestCorruptPart flips one byte of a stored object: get must fail naming
// the part and leave no output, and fsck must find it.
func TestCorruptPart(t *testing.T) {
	store := newStore(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "victim.bin")
	writeRandomFile(t, src, 1<<20, 42)
	mustPfs(t, "put", "--store", store, src, "--dest", "/data/victim.bin")
	objs := objectFiles(t, store)
	if len(objs) != 1 {
		t.Fatalf("a 1 MiB file: want one object under STORE/objects, got %d: %v", len(objs), objs)
	}
	b, err := os.ReadFile(objs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(objs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	part := filepath.Base(objs[0])

	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(out, "victim.bin")
	_, stderr, code := runPfs(t, "get", "--store", store, "/data/victim.bin", target)
	wantFailure(t, "get of a corrupt file", stderr, code, exitDamaged, "part", part, "offset")
	if left, _ := os.ReadDir(out); len(left) != 0 {
		t.Errorf("get failed but left %v in the output directory; want nothing (no file, no temporary)", left)
	}

	stdout, stderr, code := runPfs(t, "fsck", "--store", store)
	if code != exitProblems {
		t.Errorf("fsck of a corrupt store: want exit %d, got %d\nstdout: %s\nstderr: %s", exitProblems, code, stdout, stderr)
	}
	if !strings.Contains(stdout, "/data/victim.bin") {
		t.Errorf("fsck: want a problem naming /data/victim.bin, got stdout %q", stdout)
	}
}

// TestRmLeavesNothing removes files by ID, by path and recursively: no
// object may stay behind.
func TestRmLeavesNothing(t *testing.T) {
	store := newStore(t)
	dir := t.TempDir()
	var files []string
	for i, size := range []int64{100, chunk + 5, 3 * chunk, 0} {
		p := filepath.Join(dir, fmt.Sprintf("f%d", i))
		writeRandomFile(t, p, size, uint64(i))
		files = append(files, p)
	}
	ids := parsePut(t, mustOut(mustPfs(t, "put", "--store", store, files[0], files[1])))
	mustPfs(t, "put", "--store", store, files[2], files[3], "--dest", "/sub/deeper/")
	if len(objectFiles(t, store)) == 0 {
		t.Fatal("after put: no objects under STORE/objects; the test would prove nothing")
	}

	_, stderr, code := runPfs(t, "rm", "--store", store, "/sub")
	wantFailure(t, "rm of a directory without -r", stderr, code, exitUsage, "is a directory", "-r")

	mustPfs(t, "rm", "--store", store, ids["/f0"])
	mustPfs(t, "rm", "--store", store, "/f1")
	mustPfs(t, "rm", "--store", store, "-r", "/sub")

	if left := objectFiles(t, store); len(left) != 0 {
		t.Errorf("after rm of everything: want no objects, got %v", left)
	}
	if code := fsck(t, store); code != 0 {
		t.Errorf("fsck after rm: want exit 0, got %d", code)
	}
	if ls := lsEntries(t, store, "/"); len(ls) != 1 {
		t.Errorf("after rm of everything: want only / in ls, got %v", ls)
	}
	_, stderr, code = runPfs(t, "rm", "--store", store, "/f1")
	wantFailure(t, "rm of a missing file", stderr, code, exitNotFound, "/f1")
}

// TestPutManyFiles stores 50 files with one pfs put.
func TestPutManyFiles(t *testing.T) {
	store := newStore(t)
	dir := t.TempDir()
	want := map[string]string{}
	var args []string
	for i := 0; i < 50; i++ {
		p := filepath.Join(dir, fmt.Sprintf("file%02d", i))
		want["/many/"+filepath.Base(p)] = writeRandomFile(t, p, int64(i*i*1000), uint64(i))
		args = append(args, p)
	}
	stdout, _ := mustPfs(t, append([]string{"put", "--store", store, "--dest", "/many/"}, args...)...)
	ids := parsePut(t, stdout)
	if len(ids) != 50 {
		t.Fatalf("put of 50 files: want 50 lines, got %d: %q", len(ids), stdout)
	}
	checkStored(t, store, want)
}

// TestConcurrentPuts runs several pfs put processes on one store at once.
// Offline commands take the store lock and do not wait by default: each
// either succeeds or fails cleanly with exit 4 and the lock message. With
// --retry-lock they all succeed, one after the other.
func TestConcurrentPuts(t *testing.T) {
	store := newStore(t)
	mustPfs(t, "put", "--store", store, writeTemp(t, "seed", "x")) // create the store
	dir := t.TempDir()
	const procs, perProc = 4, 5
	srcs := make([][]string, procs)
	want := map[string]string{}
	for p := 0; p < procs; p++ {
		for i := 0; i < perProc; i++ {
			f := filepath.Join(dir, fmt.Sprintf("p%d-f%d", p, i))
			want[fmt.Sprintf("/p%d/%s", p, filepath.Base(f))] = writeRandomFile(t, f, int64(1+i)*300_000, uint64(p*100+i))
			srcs[p] = append(srcs[p], f)
		}
	}
	type result struct {
		stdout, stderr string
		code           int
	}
	runAll := func(extra ...string) []result {
		res := make([]result, procs)
		var wg sync.WaitGroup
		for p := 0; p < procs; p++ {
			wg.Add(1)
			go func() { // no t.Fatal in here
				defer wg.Done()
				args := append([]string{"put", "--store", store, "--dest", fmt.Sprintf("/p%d/", p)}, extra...)
				cmd := exec.Command(pfsBin, append(args, srcs[p]...)...)
				var o, e bytes.Buffer
				cmd.Stdout, cmd.Stderr = &o, &e
				err := cmd.Run()
				res[p] = result{o.String(), e.String(), cmd.ProcessState.ExitCode()}
				if err != nil && cmd.ProcessState == nil {
					res[p] = result{"", err.Error(), -1}
				}
			}()
		}
		wg.Wait()
		return res
	}

	ok := 0
	for p, r := range runAll() {
		switch r.code {
		case 0:
			ok++
			if n := len(parsePut(t, r.stdout)); n != perProc {
				t.Errorf("put %d: want %d lines, got %q", p, perProc, r.stdout)
			}
		case exitLocked:
			wantFailure(t, fmt.Sprintf("concurrent put %d", p), r.stderr, r.code, exitLocked, "is in use by pid", "pfs put", "--retry-lock")
		default:
			t.Errorf("concurrent put %d: want exit 0 or %d (locked), got %d: %s", p, exitLocked, r.code, r.stderr)
		}
	}
	if ok == 0 {
		t.Errorf("concurrent puts: none of %d succeeded; at least the first to lock must", procs)
	}

	for p, r := range runAll("--retry-lock", "5m") {
		if r.code != 0 {
			t.Errorf("put %d with --retry-lock 5m: want exit 0, got %d: %s", p, r.code, r.stderr)
		}
	}
	checkStored(t, store, want)
	if code := fsck(t, store); code != 0 {
		t.Errorf("fsck after concurrent puts: want exit 0, got %d", code)
	}
}

// TestConcurrentCreate: several puts on a store that does not exist yet;
// with --retry-lock all succeed and the store is consistent.
func TestConcurrentCreate(t *testing.T) {
	store := newStore(t)
	const procs = 3
	want := map[string]string{}
	cmds := make([]*exec.Cmd, procs)
	outs := make([]*bytes.Buffer, procs)
	for p := range procs {
		f := filepath.Join(t.TempDir(), fmt.Sprintf("c%d", p))
		want["/"+filepath.Base(f)] = writeRandomFile(t, f, 100_000, uint64(p))
		cmd, cancel := pfsCommand(t, "put", "--store", store, "--retry-lock", "5m", f)
		defer cancel()
		outs[p] = &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = outs[p], outs[p]
		cmds[p] = cmd
	}
	for _, cmd := range cmds {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for p, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("put %d on a new store, run concurrently: %v\n%s", p, err, outs[p])
		}
	}
	checkStored(t, store, want)
	if code := fsck(t, store); code != 0 {
		t.Errorf("fsck after concurrent creation: want exit 0, got %d", code)
	}
}

// TestLockedByOfflineCommand: while one pfs put runs, another command on
// the store fails at once with a message naming the holder.
func TestLockedByOfflineCommand(t *testing.T) {
	store := newStore(t)
	mustPfs(t, "put", "--store", store, writeTemp(t, "seed", "x")) // create the store

	holder, cancel := pfsCommand(t, "put", "--store", store, "-", "--dest", "/stream.bin")
	defer cancel()
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var hout, herr bytes.Buffer
	holder.Stdout, holder.Stderr = &hout, &herr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	// pfs put reads stdin only after it holds the store. A pipe holds 64 KiB,
	// so once this 1 MiB write returns, the lock is certainly taken.
	h := md5.New()
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	h.Write(data)
	if _, err := stdin.Write(data); err != nil {
		t.Fatalf("write to pfs put's stdin: %v (stderr %s)", err, herr.String())
	}

	_, stderr, code := runPfs(t, "ls", "--store", store)
	wantFailure(t, "ls while pfs put holds the store", stderr, code, exitLocked,
		"store "+store, fmt.Sprintf("pid %d", holder.Process.Pid), "pfs put")

	stdin.Close()
	if err := holder.Wait(); err != nil {
		t.Fatalf("the holding pfs put: %v\nstderr: %s", err, herr.String())
	}
	checkStored(t, store, map[string]string{"/stream.bin": hex.EncodeToString(h.Sum(nil))})
}

// TestBadFlags: each bad flag or argument gives one line of error and exit
// 2, and leaves the store untouched (a new one is not even created).
func TestBadFlags(t *testing.T) {
	dir := t.TempDir()
	file := writeTemp(t, "f", "data")
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	existing := newStore(t)
	mustPfs(t, "put", "--store", existing, file)
	before := snapshot(t, existing)

	cases := []struct {
		args []string
		want string // in the message
	}{
		{[]string{"put", "--memory", "0", file}, "--memory"},
		{[]string{"put", "--memory", "-5MiB", file}, "--memory"},
		{[]string{"put", "--memory", "lots", file}, "--memory"},
		{[]string{"put", "--memory", "64KiB", file}, "memory"},
		{[]string{"put", "--chunk-size", "3", file}, "chunk size"},
		{[]string{"put", "--chunk-size", "100000", file}, "power of two"},
		{[]string{"put", "--chunk-size", "1G", file}, "chunk size"},
		{[]string{"put", "--compress", "foo", file}, "compression"},
		{[]string{"put", "--workers", "-1", file}, "workers"},
		{[]string{"put", "--workers", "0", file}, "workers"},
		{[]string{"put", "--workers", "many", file}, "--workers"},
		{[]string{"put", "--log-level", "loud", file}, "--log-level"},
		{[]string{"put"}, "FILE"},
		{[]string{"put", "-", file}, "stdin"},
		{[]string{"get"}, "ID|PATH"},
		{[]string{"get", "--workers", "0", "/f"}, "workers"},
		{[]string{"ls", "--bogus"}, "--bogus"},
		{[]string{"ls", "/a", "/b"}, "PATH"},
		{[]string{"fsck", "extra"}, "no arguments"},
		{[]string{"rm"}, "ID or PATH"},
		{[]string{"mount", "--memory", "0", mnt}, "--memory"},
		{[]string{"mount", "--chunk-size", "3", mnt}, "chunk size"},
		{[]string{"mount", "--compress", "foo", mnt}, "compression"},
		{[]string{"mount", "--workers", "-1", mnt}, "workers"},
		{[]string{"mount"}, "MOUNTPOINT"},
		{[]string{"frobnicate"}, "unknown command"},
	}
	for _, c := range cases {
		for _, store := range []string{filepath.Join(dir, "never-created"), existing} {
			args := append([]string{"--store", store}, c.args...)
			stdout, stderr, code := runPfs(t, args...)
			what := "pfs " + strings.Join(args, " ")
			wantFailure(t, what, stderr, code, exitUsage, c.want)
			if stdout != "" {
				t.Errorf("%s: want nothing on stdout, got %q", what, stdout)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "never-created")); err == nil {
			t.Fatalf("pfs %s: rejected, but created the store directory", strings.Join(c.args, " "))
		}
		if isMounted(mnt) {
			t.Fatalf("pfs %s: rejected, but %s is mounted", strings.Join(c.args, " "), mnt)
		}
	}
	if after := snapshot(t, existing); after != before {
		t.Errorf("rejected commands changed the existing store:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestDefaultStore: without --store, pfs uses $XDG_DATA_HOME/pfs (TestMain
// points XDG_DATA_HOME into a temporary directory).
func TestDefaultStore(t *testing.T) {
	src := writeTemp(t, "default.txt", "default store\n")
	mustPfs(t, "put", src, "--dest", "/TestDefaultStore/default.txt")
	store := filepath.Join(os.Getenv("XDG_DATA_HOME"), "pfs")
	if _, err := os.Stat(filepath.Join(store, "format.json")); err != nil {
		t.Fatalf("put without --store: want a store created at %s: %v", store, err)
	}
	stdout, _ := mustPfs(t, "get", "/TestDefaultStore/default.txt", "-")
	if stdout != "default store\n" {
		t.Errorf("get from the default store: want %q, got %q", "default store\n", stdout)
	}
	mustPfs(t, "rm", "-r", "/TestDefaultStore")
}

// TestMissingStore: commands that read a store do not create one.
func TestMissingStore(t *testing.T) {
	store := filepath.Join(t.TempDir(), "nothing-here")
	for _, args := range [][]string{{"ls"}, {"get", "/x", "-"}, {"rm", "/x"}, {"fsck"}} {
		_, stderr, code := runPfs(t, append([]string{"--store", store}, args...)...)
		wantFailure(t, "pfs "+args[0]+" on a missing store", stderr, code, exitNotFound, store)
		if _, err := os.Stat(store); err == nil {
			t.Fatalf("pfs %s on a missing store created it", args[0])
		}
	}
}

// TestLs checks ls and ls --long against what was put.
func TestLs(t *testing.T) {
	store := newStore(t)
	dir := t.TempDir()
	big := filepath.Join(dir, "big.bin")
	writeRandomFile(t, big, chunk+(1<<20), 5)
	empty := writeTemp(t, "empty", "")
	ids := parsePut(t, mustOut(mustPfs(t, "put", "--store", store, big)))
	ids2 := parsePut(t, mustOut(mustPfs(t, "put", "--store", store, empty, "--dest", "/dir/sub/empty")))

	ls := lsEntries(t, store, "/")
	for p, want := range map[string]lsEntry{
		"/big.bin":       {id: ids["/big.bin"], size: chunk + 1<<20, human: "5.0MiB", parts: "2", status: "ready"},
		"/dir/":          {parts: "-", human: "-", status: "ready"},
		"/dir/sub/":      {parts: "-", human: "-", status: "ready"},
		"/dir/sub/empty": {id: ids2["/dir/sub/empty"], size: 0, human: "0B", parts: "0", status: "ready"},
		"/":              {parts: "-", human: "-", status: "ready"},
	} {
		got, ok := ls[p]
		if !ok {
			t.Errorf("ls: no line for %s; got %v", p, ls)
			continue
		}
		if want.id == "" {
			want.id, want.size = got.id, got.size // directories: any ID and size
		}
		if got != want {
			t.Errorf("ls %s: want %+v, got %+v", p, want, got)
		}
	}
	if len(ls) != 5 {
		t.Errorf("ls: want 5 entries, got %d: %v", len(ls), ls)
	}

	// A subtree only.
	if sub := lsEntries(t, store, "/dir/sub"); len(sub) != 2 {
		t.Errorf("ls /dir/sub: want the directory and its file, got %v", sub)
	}
	_, stderr, code := runPfs(t, "ls", "--store", store, "/nope")
	wantFailure(t, "ls of a missing path", stderr, code, exitNotFound, "/nope")

	// --long: one line per part, with the MD5 of that part's bytes.
	data, err := os.ReadFile(big)
	if err != nil {
		t.Fatal(err)
	}
	stdout, _ := mustPfs(t, "ls", "--store", store, "--long", "/big.bin")
	var parts []map[string]string
	for _, line := range strings.Split(stdout, "\n") {
		if !strings.HasPrefix(line, "  part ") {
			continue
		}
		kv := map[string]string{}
		for _, f := range strings.Fields(line)[1:] {
			k, v, _ := strings.Cut(f, "=")
			kv[k] = v
		}
		parts = append(parts, kv)
	}
	if len(parts) != 2 {
		t.Fatalf("ls --long /big.bin: want 2 part lines, got:\n%s", stdout)
	}
	sort.Slice(parts, func(i, j int) bool {
		a, _ := strconv.Atoi(parts[i]["offset"])
		b, _ := strconv.Atoi(parts[j]["offset"])
		return a < b
	})
	for i, want := range []struct{ chunk, offset, length int }{{0, 0, chunk}, {1, chunk, 1 << 20}} {
		p := parts[i]
		wantMD5 := md5Bytes(data[want.offset : want.offset+want.length])
		for k, v := range map[string]string{
			"chunk": fmt.Sprint(want.chunk), "offset": fmt.Sprint(want.offset), "len": fmt.Sprint(want.length),
			"md5": wantMD5, "compression": "none", "status": "stored", "stored": fmt.Sprint(want.length),
		} {
			if p[k] != v {
				t.Errorf("ls --long part %d: %s=%s, want %s (line %v)", i, k, p[k], v, p)
			}
		}
		if len(p["id"]) != 36 {
			t.Errorf("ls --long part %d: id=%q, want a UUID", i, p["id"])
		}
	}
}

// lsEntry is one parsed line of pfs ls.
type lsEntry struct {
	id                   string
	size                 int64
	human, parts, status string
}

// lsEntries runs pfs ls and parses it by path.
func lsEntries(t *testing.T, store, path string) map[string]lsEntry {
	t.Helper()
	stdout, _ := mustPfs(t, "ls", "--store", store, path)
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "ID ") {
		t.Fatalf("pfs ls: want a header line first, got %q", stdout)
	}
	m := map[string]lsEntry{}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("pfs ls: want \"ID SIZE HUMAN PARTS STATUS PATH\", got %q", line)
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			t.Fatalf("pfs ls: SIZE %q: %v", f[1], err)
		}
		m[strings.Join(f[5:], " ")] = lsEntry{id: f[0], size: size, human: f[2], parts: f[3], status: f[4]}
	}
	return m
}

// checkStored gets every path of want from the store and compares hashes.
func checkStored(t *testing.T, store string, want map[string]string) {
	t.Helper()
	dir := t.TempDir()
	i := 0
	for p, sum := range want {
		out := filepath.Join(dir, fmt.Sprint(i))
		i++
		mustPfs(t, "get", "--store", store, p, out)
		if got := md5File(t, out); got != sum {
			t.Errorf("%s: md5 %s, want %s", p, got, sum)
		}
	}
}

// fsck runs pfs fsck and returns its exit code, logging its output when
// it is not 0.
func fsck(t *testing.T, store string) int {
	t.Helper()
	stdout, stderr, code := runPfs(t, "fsck", "--store", store)
	if code != 0 {
		t.Logf("pfs fsck --store %s: exit %d\nstdout: %s\nstderr: %s", store, code, stdout, stderr)
	}
	return code
}

func mustOut(stdout, _ string) string { return stdout }

// writeTemp writes content to a new file in a temporary directory.
func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// snapshot describes every file under dir (name, size, mtime, content
// hash), to show a store was not touched.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d %d", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := md5.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %x", h.Sum(nil))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return b.String()
}
