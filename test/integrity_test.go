package test

import (
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// corruption is one way a disk damages a stored part: it changes the
// object file obj; donor is the object of another file's part of the same
// size.
type corruption struct {
	name    string
	kind    string // what fsck calls it
	corrupt func(t *testing.T, obj, donor string)
}

var corruptions = []corruption{
	{"bitflip", "checksum", func(t *testing.T, obj, _ string) {
		editFile(t, obj, func(b []byte) []byte { b[len(b)/3] ^= 0x10; return b })
	}},
	{"truncated", "checksum", func(t *testing.T, obj, _ string) {
		editFile(t, obj, func(b []byte) []byte { return b[:len(b)/2] })
	}},
	{"zeroed", "checksum", func(t *testing.T, obj, _ string) {
		editFile(t, obj, func(b []byte) []byte { return make([]byte, len(b)) })
	}},
	{"extended", "checksum", func(t *testing.T, obj, _ string) {
		editFile(t, obj, func(b []byte) []byte { return append(b, "trailing garbage"...) })
	}},
	{"deleted", "missing-object", func(t *testing.T, obj, _ string) {
		if err := os.Remove(obj); err != nil {
			t.Fatal(err)
		}
	}},
	{"swapped", "checksum", func(t *testing.T, obj, donor string) {
		b, err := os.ReadFile(donor)
		if err != nil {
			t.Fatal(err)
		}
		editFile(t, obj, func(old []byte) []byte {
			if len(old) != len(b) {
				t.Fatalf("swap: the donor part has %d bytes, the victim %d; want the same size", len(b), len(old))
			}
			return b
		})
	}},
}

// editFile rewrites path (keeping its mode) with edit's result.
func editFile(t *testing.T, path string, edit func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, edit(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrityCorruption damages one part of a file in each way a disk
// can, then checks what a user sees: reading the damaged range fails with
// EIO while the rest of that file and every other file read fine, the
// daemon log names file (inode), offset and part, pfs fsck lists every
// damaged file and exits 1, and fsck --repair marks the damaged files
// without touching any healthy object.
func TestIntegrityCorruption(t *testing.T) {
	const cs = 64 << 10 // chunk size
	const nChunks = 8
	const bad = 3 // the damaged chunk of each victim
	args := []string{"--chunk-size", "64KiB"}
	mnt, store := mountPfs(t, args...)
	src := t.TempDir()
	content := map[string][]byte{} // path in the store -> content
	add := func(name string, size int64, seed uint64) {
		content["/"+name] = copyRandomIn(t, src, mnt, name, size, seed)
	}
	for i, c := range corruptions {
		add("victim-"+c.name, nChunks*cs, uint64(100+i))
	}
	add("donor", nChunks*cs, 200)
	add("healthy", 3*cs+12345, 201)
	unmountPfs(t, mnt)

	parts := lsLong(t, store)
	damaged := map[string]lsPart{} // victim path -> its damaged part
	for _, c := range corruptions {
		p := "/victim-" + c.name
		if len(parts[p]) != nChunks {
			t.Fatalf("pfs ls --long %s: want %d parts (one per chunk), got %+v", p, nChunks, parts[p])
		}
		part := parts[p][bad]
		if part.chunk != bad || part.offset != bad*cs || part.length != cs {
			t.Fatalf("pfs ls --long %s: part %d is %+v; want chunk %d at offset %d, %d bytes", p, bad, part, bad, bad*cs, cs)
		}
		c.corrupt(t, objectPath(store, part.id), objectPath(store, parts["/donor"][bad].id))
		damaged[p] = part
	}
	healthyBefore := healthyObjects(t, store, damaged)

	logFrom := logSize(store)
	mountAt(t, store, mnt, args...)
	for _, c := range corruptions {
		p := "/victim-" + c.name
		path := filepath.Join(mnt, p)
		want := content[p]
		// The damaged range, whole and in part, is EIO.
		for _, r := range [][2]int64{{bad * cs, cs}, {bad*cs + 1000, 100}, {bad*cs - 10, 20}} {
			if _, err := preadFile(path, r[0], int(r[1])); !errors.Is(err, syscall.EIO) {
				t.Errorf("%s (%s part): read %d bytes at %d, in the damaged chunk: want EIO, got %v", p, c.name, r[1], r[0], err)
			}
		}
		if _, err := os.ReadFile(path); !errors.Is(err, syscall.EIO) {
			t.Errorf("%s (%s part): reading the whole file: want EIO, got %v", p, c.name, err)
		}
		// Everything else of the file reads fine.
		for chunk := int64(0); chunk < nChunks; chunk++ {
			if chunk == bad {
				continue
			}
			got, err := preadFile(path, chunk*cs, cs)
			if err != nil || !bytes.Equal(got, want[chunk*cs:(chunk+1)*cs]) {
				t.Errorf("%s (%s part): read chunk %d, which is healthy: want its %d bytes, got %d bytes, err %v", p, c.name, chunk, cs, len(got), err)
			}
		}
		// The log names the file's inode, the offset and the part.
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		part := damaged[p]
		re := regexp.MustCompile(fmt.Sprintf(`(?m)^.*level=ERROR.* ino=%d offset=%d .*part=%s.*$`, st.Ino, part.offset, part.id))
		if !re.MatchString(logSince(t, store, logFrom)) {
			t.Errorf("%s (%s part): want an ERROR line in the daemon log naming ino=%d, offset=%d and part=%s; log:\n%s",
				p, c.name, st.Ino, part.offset, part.id, logSince(t, store, logFrom))
		}
	}
	for _, p := range []string{"/donor", "/healthy"} {
		if got := md5File(t, filepath.Join(mnt, p)); got != md5Bytes(content[p]) {
			t.Errorf("%s, a healthy file: md5 %s, want %s", p, got, md5Bytes(content[p]))
		}
	}
	unmountPfs(t, mnt)

	// fsck lists every damaged file, with the kind of damage, the offset
	// and the part, and nothing about the healthy ones.
	checkFsckDamage := func(when string) {
		t.Helper()
		stdout, stderr, code := runPfs(t, "fsck", "--store", store)
		if code != exitProblems {
			t.Errorf("pfs fsck %s: want exit %d (problems), got %d\nstdout: %s\nstderr: %s", when, exitProblems, code, stdout, stderr)
		}
		for _, c := range corruptions {
			p := "/victim-" + c.name
			want := fmt.Sprintf("problem: %s %s offset %d part %s", c.kind, p, damaged[p].offset, damaged[p].id)
			if !strings.Contains(stdout, want) {
				t.Errorf("pfs fsck %s: want a line starting %q, got:\n%s", when, want, stdout)
			}
		}
		for _, p := range []string{"/donor", "/healthy"} {
			if strings.Contains(stdout, p+" ") {
				t.Errorf("pfs fsck %s: the healthy file %s is listed:\n%s", when, p, stdout)
			}
		}
		if n := strings.Count(stdout, "problem: "); n != len(corruptions) {
			t.Errorf("pfs fsck %s: want %d problems, one per damaged part, got %d:\n%s", when, len(corruptions), n, stdout)
		}
	}
	checkFsckDamage("of the damaged store")

	stdout, stderr, code := runPfs(t, "fsck", "--repair", "--store", store)
	if code == exitUsage || code > exitProblems || stderr != "" {
		t.Errorf("pfs fsck --repair: want exit 0 or 1 and no stderr, got %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if after := healthyObjects(t, store, damaged); after != healthyBefore {
		t.Errorf("pfs fsck --repair changed healthy objects:\nbefore:\n%s\nafter:\n%s", healthyBefore, after)
	}
	status := lsStatus(t, store)
	for p := range content {
		want := "ready"
		if _, ok := damaged[p]; ok {
			want = "damaged"
		}
		if status[p] != want {
			t.Errorf("pfs ls after fsck --repair: %s has status %q, want %q", p, status[p], want)
		}
	}
	checkFsckDamage("after --repair (the damage is still there)")

	// The repaired store mounts; healthy data still reads, damage is EIO.
	mountAt(t, store, mnt, args...)
	for p, want := range content {
		path := filepath.Join(mnt, p)
		if _, ok := damaged[p]; !ok {
			if got := md5File(t, path); got != md5Bytes(want) {
				t.Errorf("after fsck --repair: %s: md5 %s, want %s", p, got, md5Bytes(want))
			}
			continue
		}
		if _, err := preadFile(path, bad*cs, cs); !errors.Is(err, syscall.EIO) {
			t.Errorf("after fsck --repair: %s: read of the damaged chunk: want EIO, got %v", p, err)
		}
		if got, err := preadFile(path, 0, bad*cs); err != nil || !bytes.Equal(got, want[:bad*cs]) {
			t.Errorf("after fsck --repair: %s: read of the healthy chunks before the damage: %d bytes, %v", p, len(got), err)
		}
	}
}

// healthyObjects describes every object of the store except those of
// the damaged parts: name, mode and MD5.
func healthyObjects(t *testing.T, store string, damaged map[string]lsPart) string {
	t.Helper()
	skip := map[string]bool{}
	for _, p := range damaged {
		skip[p.id] = true
	}
	var b strings.Builder
	for _, obj := range objectFiles(t, store) {
		if skip[filepath.Base(obj)] {
			continue
		}
		data, err := os.ReadFile(obj)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(obj)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %v %x\n", obj, fi.Mode(), md5.Sum(data))
	}
	return b.String()
}

// TestIntegrityFsck10k: pfs fsck on a store of 10 000 files verifies every
// part through the worker pool, and finds the one flipped bit among them.
func TestIntegrityFsck10k(t *testing.T) {
	const nFiles = 10_000
	store := newStore(t)
	src := t.TempDir()
	var names []string
	var total int64
	for i := 0; i < nFiles; i++ {
		size := int64(1<<10 + (i*7919)%(63<<10)) // 1 KiB to 64 KiB
		name := filepath.Join(src, fmt.Sprintf("f%05d", i))
		writeRandomFile(t, name, size, uint64(i))
		names = append(names, name)
		total += size
	}
	// Four puts of 2 500 files: well within ARG_MAX.
	for i := 0; i < nFiles; i += 2500 {
		mustPfs(t, append([]string{"put", "--store", store, "--dest", fmt.Sprintf("/d%d/", i/2500)}, names[i:i+2500]...)...)
	}
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}

	dropCaches(t) // the throughput of reading the parts from disk, not from the page cache
	sum := fsckClean(t, store, "of a store of 10 000 files")
	if sum.files != nFiles || sum.parts != nFiles || sum.bytes != total {
		t.Errorf("pfs fsck: %q; want %d files, %d parts (one per file) and %d bytes verified", sum.line, nFiles, nFiles, total)
	}
	t.Logf("fsck of %d files: %s", nFiles, sum.line)

	// On a terminal (script(1) gives it a pty) fsck shows its progress,
	// to the end; through a pipe, as above, it prints only the summary.
	out, _, code := runTimeout(t, 5*time.Minute, "script", "-qec", pfsBin+" fsck --store "+store, "/dev/null")
	if code != 0 || !strings.Contains(out, "100%") || !strings.Contains(out, "no problems found") {
		t.Errorf("pfs fsck on a terminal: want exit 0, a progress bar reaching 100%% and the summary; got exit %d:\n%.2000s", code, out)
	}
	if strings.Contains(fsckOut(t, store), "%") {
		t.Errorf("pfs fsck through a pipe printed a progress bar")
	}
	fmt.Printf("fsck throughput, %d files, page cache dropped: %s\n", nFiles, sum.line)

	// One flipped bit somewhere in the middle is found, and only that.
	objs := objectFiles(t, store)
	victim := objs[len(objs)/2]
	editFile(t, victim, func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b })
	stdout, stderr, code := runPfs(t, "fsck", "--store", store)
	if code != exitProblems || strings.Count(stdout, "problem: ") != 1 ||
		!strings.Contains(stdout, "problem: checksum /d") || !strings.Contains(stdout, "part "+filepath.Base(victim)) {
		t.Errorf("pfs fsck after flipping a bit of %s: want exit %d and one checksum problem naming the part, got exit %d\nstdout: %s\nstderr: %s",
			filepath.Base(victim), exitProblems, code, stdout, stderr)
	}
}

// TestIntegrityRegistryDamage damages the registry (Badger, STORE/registry)
// of a store in the ways a disk or a careless user can. Each time the
// offline commands and mount either fail with one clear line naming the
// registry (no panic, nothing mounted), or, where Badger can recover, show
// every file intact. What they must never do is succeed with the files
// gone: the objects would then be orphans, and fsck --repair deletes
// orphans.
func TestIntegrityRegistryDamage(t *testing.T) {
	mnt, store := mountPfs(t)
	files := map[string][]byte{}
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("f%d", i)
		files[name] = bytes.Repeat([]byte{byte(i)}, 10000)
		if err := os.WriteFile(filepath.Join(mnt, name), files[name], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	unmountPfs(t, mnt)
	reg := filepath.Join(store, "registry")
	find := func(dir, glob string) string {
		t.Helper()
		m, _ := filepath.Glob(filepath.Join(dir, glob))
		if len(m) == 0 {
			ents, _ := os.ReadDir(dir)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Fatalf("no %s in %s (it holds %v)", glob, dir, names)
		}
		return filepath.Base(m[0])
	}
	sst, vlog := find(reg, "*.sst"), find(reg, "*.vlog")

	for _, c := range []struct {
		name   string
		damage func(t *testing.T, reg string)
	}{
		{"registry deleted", func(t *testing.T, reg string) {
			if err := os.RemoveAll(reg); err != nil {
				t.Fatal(err)
			}
		}},
		{"registry emptied", func(t *testing.T, reg string) {
			ents, _ := os.ReadDir(reg)
			for _, e := range ents {
				if err := os.Remove(filepath.Join(reg, e.Name())); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"registry is a file", func(t *testing.T, reg string) {
			if err := os.RemoveAll(reg); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(reg, []byte("not a directory"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"MANIFEST truncated to 0", func(t *testing.T, reg string) {
			editFile(t, filepath.Join(reg, "MANIFEST"), func(b []byte) []byte { return nil })
		}},
		{"MANIFEST truncated", func(t *testing.T, reg string) {
			editFile(t, filepath.Join(reg, "MANIFEST"), func(b []byte) []byte { return b[:len(b)-3] })
		}},
		{"MANIFEST garbled", func(t *testing.T, reg string) {
			editFile(t, filepath.Join(reg, "MANIFEST"), func(b []byte) []byte { return bytes.Repeat([]byte{0xa5}, len(b)) })
		}},
		{"MANIFEST deleted", func(t *testing.T, reg string) {
			if err := os.Remove(filepath.Join(reg, "MANIFEST")); err != nil {
				t.Fatal(err)
			}
		}},
		{".sst garbled", func(t *testing.T, reg string) {
			editFile(t, filepath.Join(reg, sst), func(b []byte) []byte {
				for i := len(b) / 4; i < len(b); i += 7 {
					b[i] ^= 0xff
				}
				return b
			})
		}},
		{".sst truncated", func(t *testing.T, reg string) {
			editFile(t, filepath.Join(reg, sst), func(b []byte) []byte { return b[:len(b)/2] })
		}},
		{".sst deleted", func(t *testing.T, reg string) {
			if err := os.Remove(filepath.Join(reg, sst)); err != nil {
				t.Fatal(err)
			}
		}},
		{".vlog garbled", func(t *testing.T, reg string) {
			editFile(t, filepath.Join(reg, vlog), func(b []byte) []byte { return bytes.Repeat([]byte{0x5a}, len(b)) })
		}},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			s := filepath.Join(t.TempDir(), "store")
			run(t, "", nil, "cp", "-a", store, s)
			c.damage(t, filepath.Join(s, "registry"))
			m := filepath.Join(t.TempDir(), "mnt")
			if err := os.Mkdir(m, 0o755); err != nil {
				t.Fatal(err)
			}
			ourMountsMu.Lock()
			ourMounts[m] = true
			ourMountsMu.Unlock()
			t.Cleanup(func() { cleanupMount(t, m, s) })
			// Offline, read-only: a clear error, or the whole intact tree.
			for _, args := range [][]string{{"ls"}, {"fsck"}, {"get", "/f1", "-"}} {
				stdout, stderr, code := runPfs(t, append([]string{"--store", s}, args...)...)
				what := fmt.Sprintf("pfs %s on a store whose %s", args[0], c.name)
				noPanic(t, what, stderr)
				t.Logf("%s: exit %d: %s", what, code, strings.TrimSpace(stderr))
				if code != 0 {
					wantFailure(t, what, stderr, code, code, "registry")
					continue
				}
				intact := false
				switch args[0] {
				case "ls":
					intact = strings.Count(stdout, "ready    /f") == len(files)
				case "fsck":
					intact = strings.Contains(stdout, fmt.Sprintf("checked %d files", len(files)))
				case "get":
					intact = stdout == string(files["f1"])
				}
				if !intact {
					t.Errorf("%s: want a clear error, or success showing every file intact; got exit 0 with:\n%.600s", what, stdout)
				}
			}

			logFrom := logSize(s)
			_, stderr, code := runPfs(t, "mount", "--store", s, m)
			noPanic(t, "pfs mount of a store whose "+c.name+" (daemon log)", logSince(t, s, logFrom))
			t.Logf("pfs mount: exit %d: %s", code, strings.TrimSpace(stderr))
			if code != 0 {
				wantFailure(t, "pfs mount of a store whose "+c.name, stderr, code, code, "registry")
				if isMounted(m) {
					t.Errorf("pfs mount of a store whose %s: exit %d, but mounted", c.name, code)
				}
				return
			}
			// Badger may recover (a torn last MANIFEST record is how a
			// crash leaves it); then every file must be there, intact.
			ents, err := os.ReadDir(m)
			if err != nil || len(ents) != len(files) {
				t.Errorf("pfs mount of a store whose %s: want a clear error, or a mount with all %d files; got exit 0 and a mount with %d entries (%v): the damage went unnoticed and the files are hidden",
					c.name, len(files), len(ents), err)
			}
			for name, want := range files {
				if b, err := os.ReadFile(filepath.Join(m, name)); err != nil || !bytes.Equal(b, want) {
					t.Errorf("pfs mount of a store whose %s: exit 0, but %s is not intact: %d bytes, %v", c.name, name, len(b), err)
					break
				}
			}
			unmountPfs(t, m)
			if !t.Failed() {
				fsckClean(t, s, "after a mount that recovered from "+c.name)
				return
			}
			stdout, _, _ := runPfs(t, "fsck", "--store", s)
			t.Logf("pfs fsck afterwards (fsck --repair deletes every orphan object it lists):\n%.1500s", stdout)
		})
	}
}

// fsckOut returns what pfs fsck prints to stdout and stderr, not on a
// terminal.
func fsckOut(t *testing.T, store string) string {
	t.Helper()
	stdout, stderr, _ := runPfs(t, "fsck", "--store", store)
	return stdout + stderr
}
