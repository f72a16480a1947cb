package test

// The S3 backend end to end (issue 5): a store whose parts live in a
// bucket of a versitygw server this package starts (s3_helpers_test.go)
// must pass what a local store passes, mounted and offline, detect
// objects changed in the bucket, and fail cleanly, lose nothing stored
// and recover when the server goes away mid-write.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestS3MountWorkloads runs the round trips of TestMountWorkloads (cp,
// cat, dd, tar, rsync, sqlite3, git; not the 1 GiB file) on a store in
// S3, remounts without the S3 flags (the store remembers them) and
// verifies again; then fsck must find the store clean, and the bucket and
// the store directory must hold what s3CheckLayout says.
func TestS3MountWorkloads(t *testing.T) {
	srv := startS3Server(t)
	s3Creds(t)
	bucket := srv.newBucket(t)
	const prefix = "pfs/workloads"
	mnt, store := mountPfs(t, srv.args(bucket, prefix)...)
	work := t.TempDir()
	wls := []workload{
		filesWorkload(work, false),
		tarWorkload(work, 1000),
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
	s3CheckLayout(t, srv, bucket, prefix, store)
}

// s3InlineMax is the largest part the engine may keep in the registry
// instead of the bucket (half the smallest chunk size).
const s3InlineMax = 32 << 10

// s3CheckLayout checks where an S3 store keeps what: format.json names
// the bucket and endpoint; the registry is local; every part larger than
// s3InlineMax is the object PREFIX/<part-id> of bucket, of the part's
// size, and there is nothing else under PREFIX/; the store directory
// holds no objects and neither credential.
func s3CheckLayout(t *testing.T, srv *s3Server, bucket, prefix, store string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(store, "format.json"))
	if err != nil {
		t.Fatal(err)
	}
	var format struct {
		Backend string `json:"backend"`
		S3      *struct {
			Endpoint  string `json:"endpoint"`
			Region    string `json:"region"`
			PathStyle bool   `json:"path_style"`
			NoSSL     bool   `json:"no_ssl"`
		} `json:"s3"`
	}
	if err := json.Unmarshal(b, &format); err != nil {
		t.Fatalf("format.json: %v\n%s", err, b)
	}
	if want := "s3://" + bucket + "/" + prefix; format.Backend != want {
		t.Errorf("format.json backend: %q, want %q", format.Backend, want)
	}
	if s := format.S3; s == nil || s.Endpoint != srv.endpoint || s.Region != s3Region || !s.PathStyle || !s.NoSSL {
		t.Errorf("format.json s3: %+v, want endpoint %s, region %s, path style, no SSL\n%s", s, srv.endpoint, s3Region, b)
	}
	if fi, err := os.Stat(filepath.Join(store, "registry")); err != nil || !fi.IsDir() {
		t.Errorf("STORE/registry: want the local registry directory, got %v %v", fi, err)
	}
	if objs := objectFiles(t, store); len(objs) != 0 {
		t.Errorf("an S3 store keeps data in STORE/objects: %v", objs)
	}
	err = filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, secret := range []string{s3Access, s3Secret} {
			if bytes.Contains(data, []byte(secret)) {
				t.Errorf("%s contains a credential (%q); credentials must never be stored", p, secret)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	parts := map[string]int64{} // object name -> stored size
	for p, ps := range s3Parts(t, store) {
		for _, part := range ps {
			if part.status != "stored" {
				t.Errorf("%s: part %s has status %s, want stored", p, part.id, part.status)
			}
			parts[prefix+"/"+part.id] = part.stored
		}
	}
	if len(parts) == 0 {
		t.Fatal("pfs ls --long lists no parts; the layout check checks nothing")
	}
	got := srv.objects(t, bucket, prefix+"/")
	for name, size := range parts {
		if gs, ok := got[name]; ok && gs != size {
			t.Errorf("bucket %s: object %s has %d bytes, the part %d", bucket, name, gs, size)
		} else if !ok && size > s3InlineMax {
			t.Errorf("bucket %s: no object %s for a part of %d bytes", bucket, name, size)
		}
	}
	for name := range got {
		if _, ok := parts[name]; !ok {
			t.Errorf("bucket %s: object %s is no part of the store (garbage, or not %s/<part-id>)", bucket, name, prefix)
		}
	}
	t.Logf("bucket %s: %d objects for %d parts", bucket, len(got), len(parts))
}

// s3Damage is a way to change a part's object in the bucket.
type s3Damage struct {
	name, kind string // kind: what fsck calls it
	apply      func(t *testing.T, srv *s3Server, bucket, obj, donor string)
}

var s3Damages = []s3Damage{
	{"overwritten", "checksum", func(t *testing.T, srv *s3Server, bucket, obj, _ string) {
		b := srv.getObject(t, bucket, obj)
		b[len(b)/2] ^= 0x04
		srv.putObject(t, bucket, obj, b)
	}},
	{"replaced", "checksum", func(t *testing.T, srv *s3Server, bucket, obj, donor string) {
		srv.putObject(t, bucket, obj, srv.getObject(t, bucket, donor)) // same size, other bytes
	}},
	{"truncated", "checksum", func(t *testing.T, srv *s3Server, bucket, obj, _ string) {
		b := srv.getObject(t, bucket, obj)
		srv.putObject(t, bucket, obj, b[:len(b)/3])
	}},
	{"deleted", "missing-object", func(t *testing.T, srv *s3Server, bucket, obj, _ string) {
		srv.removeObject(t, bucket, obj)
	}},
}

// TestS3Corruption changes one part's object of each victim file in the
// bucket behind pfs's back. Reading that range is EIO while the rest of
// the file and the other files read fine, the daemon log names the part,
// pfs fsck exits 1 naming each damaged file, and pfs get refuses the
// file (exit 6) naming the part.
func TestS3Corruption(t *testing.T) {
	const cs = 64 << 10 // chunk size
	const nChunks = 6
	const bad = 2 // the damaged chunk of each victim
	srv := startS3Server(t)
	s3Creds(t)
	bucket := srv.newBucket(t)
	const prefix = "corrupt"
	mnt, store := mountPfs(t, append(srv.args(bucket, prefix), "--chunk-size", "64KiB")...)
	src := t.TempDir()
	content := map[string][]byte{}
	add := func(name string, size int64, seed uint64) {
		content["/"+name] = copyRandomIn(t, src, mnt, name, size, seed)
	}
	for i, d := range s3Damages {
		add("victim-"+d.name, nChunks*cs, uint64(500+i))
	}
	add("donor", nChunks*cs, 600)
	add("healthy", 2*cs+777, 601)
	unmountPfs(t, mnt)

	parts := s3Parts(t, store)
	damaged := map[string]s3Part{}
	for _, d := range s3Damages {
		p := "/victim-" + d.name
		if len(parts[p]) != nChunks {
			t.Fatalf("pfs ls --long %s: want %d parts, one per chunk, got %+v", p, nChunks, parts[p])
		}
		part := parts[p][bad]
		if part.chunk != bad || part.offset != bad*cs || part.length != cs {
			t.Fatalf("pfs ls --long %s: part %d is %+v; want chunk %d at offset %d, %d bytes", p, bad, part, bad, bad*cs, cs)
		}
		d.apply(t, srv, bucket, prefix+"/"+part.id, prefix+"/"+parts["/donor"][bad].id)
		damaged[p] = part
	}

	logFrom := logSize(store)
	mountAt(t, store, mnt) // no S3 flags: the store knows its bucket
	for _, d := range s3Damages {
		p := "/victim-" + d.name
		path := filepath.Join(mnt, p)
		want := content[p]
		for _, r := range [][2]int64{{bad * cs, cs}, {bad*cs + 4000, 100}, {bad*cs - 10, 20}} {
			if _, err := preadFile(path, r[0], int(r[1])); !errors.Is(err, syscall.EIO) {
				t.Errorf("%s: read %d bytes at %d, in the %s part: want EIO, got %v", p, r[1], r[0], d.name, err)
			}
		}
		if _, err := os.ReadFile(path); !errors.Is(err, syscall.EIO) {
			t.Errorf("%s: reading the whole file: want EIO, got %v", p, err)
		}
		for c := int64(0); c < nChunks; c++ {
			if c == bad {
				continue
			}
			got, err := preadFile(path, c*cs, cs)
			if err != nil || !bytes.Equal(got, want[c*cs:(c+1)*cs]) {
				t.Errorf("%s: chunk %d is healthy: want its %d bytes, got %d bytes, err %v", p, c, cs, len(got), err)
			}
		}
		re := regexp.MustCompile(`(?m)^.*level=ERROR.*` + regexp.QuoteMeta(damaged[p].id) + `.*$`)
		if !re.MatchString(logSince(t, store, logFrom)) {
			t.Errorf("%s: want an ERROR line naming part %s in the daemon log; log:\n%s", p, damaged[p].id, logSince(t, store, logFrom))
		}
	}
	for _, p := range []string{"/donor", "/healthy"} {
		if got := md5File(t, filepath.Join(mnt, p)); got != md5Bytes(content[p]) {
			t.Errorf("%s, a healthy file: md5 %s, want %s", p, got, md5Bytes(content[p]))
		}
	}
	unmountPfs(t, mnt)

	stdout, stderr, code := runPfs(t, "fsck", "--store", store)
	if code != exitProblems {
		t.Errorf("pfs fsck of a store with damaged objects: want exit %d, got %d\nstdout: %s\nstderr: %s", exitProblems, code, stdout, stderr)
	}
	for _, d := range s3Damages {
		p := "/victim-" + d.name
		want := fmt.Sprintf("problem: %s %s offset %d part %s", d.kind, p, damaged[p].offset, damaged[p].id)
		if !strings.Contains(stdout, want) {
			t.Errorf("pfs fsck: want a line starting %q, got:\n%s", want, stdout)
		}
	}
	if n := strings.Count(stdout, "problem: "); n != len(s3Damages) {
		t.Errorf("pfs fsck: want %d problems, one per damaged object, got %d:\n%s", len(s3Damages), n, stdout)
	}

	out := t.TempDir()
	for _, d := range s3Damages {
		p := "/victim-" + d.name
		_, stderr, code := runPfs(t, "get", "--store", store, p, filepath.Join(out, d.name))
		wantFailure(t, "pfs get "+p, stderr, code, exitDamaged, damaged[p].id)
	}
	if left, _ := os.ReadDir(out); len(left) != 0 {
		t.Errorf("failed gets left %v behind", left)
	}
	mustPfs(t, "get", "--store", store, "/healthy", filepath.Join(out, "healthy"))
	if got := md5File(t, filepath.Join(out, "healthy")); got != md5Bytes(content["/healthy"]) {
		t.Errorf("pfs get /healthy: md5 %s, want %s", got, md5Bytes(content["/healthy"]))
	}
}

// TestS3ServerStopped kills the S3 server under a mount while a file is
// being written. Reads of data not in memory, fsync and close fail with
// EIO after the bounded retries (no hang); metadata, which is local, keeps
// working; unmounting works; offline commands and a new mount fail saying
// why. Once the server is back on the same port and data, a new mount has
// everything fsynced before the stop, fsck finds nothing committed that
// was not stored, and new writes work.
func TestS3ServerStopped(t *testing.T) {
	srv := startS3Server(t)
	s3Creds(t)
	bucket := srv.newBucket(t)
	args := srv.args(bucket, "outage")
	mnt, store := mountPfs(t, args...)
	src := t.TempDir()

	// Before the stop: a file of three chunks written with dd and
	// fsynced, and a small one.
	srcA := filepath.Join(src, "a")
	sumA := writeRandomFile(t, srcA, 2*chunk+12345, 31)
	run(t, "", nil, "dd", "if="+srcA, "of="+filepath.Join(mnt, "a"), "bs=1M", "status=none", "conv=fsync")
	small := []byte("written and fsynced before the outage\n")
	s3WriteSync(t, filepath.Join(mnt, "small"), small)
	remount(t, mnt, store) // nothing of a or small stays in memory

	// b is being written when the server stops: its first two chunks
	// are full, so their flushes are under way (done, or in flight and
	// cut off).
	dataB := s3Pattern(2*chunk + 2_600_000)
	half := 2*chunk + 1_300_000
	b, err := os.Create(filepath.Join(mnt, "b"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Write(dataB[:half]); err != nil {
		t.Fatalf("write to b: %v", err)
	}
	srv.stop()

	// Reading stored data: EIO.
	d, err := s3Timed(t, store, "read of a while the server is down", nil, func() error {
		_, err := preadFile(filepath.Join(mnt, "a"), chunk, 4096)
		return err
	})
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("read of a while the server is down: want EIO, got %v after %v", err, d)
	}

	// Writing on: the write may be buffered; fsync and close report that
	// the data could not be stored.
	d, err = s3Timed(t, store, "write to b while the server is down", nil, func() error {
		_, err := b.Write(dataB[half:])
		return err
	})
	if err != nil && !errors.Is(err, syscall.EIO) {
		t.Errorf("write to b while the server is down: want success (buffered) or EIO, got %v after %v", err, d)
	}
	d, err = s3Timed(t, store, "fsync of b while the server is down", nil, b.Sync)
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("fsync of b while the server is down: want EIO, got %v after %v", err, d)
	}
	d, err = s3Timed(t, store, "fsync of b again", nil, b.Sync)
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("second fsync of b while the server is down: want EIO again (the data is still not stored), got %v after %v", err, d)
	}
	d, err = s3Timed(t, store, "close of b while the server is down", nil, b.Close)
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("close of b while the server is down: want EIO, got %v after %v", err, d)
	}

	// A file of several chunks: full chunks are flushed in the
	// background, and close reports their failure.
	dataC := s3Pattern(3*chunk + 100)
	d, err = s3Timed(t, store, "write and close of c while the server is down", nil, func() error {
		f, err := os.Create(filepath.Join(mnt, "c"))
		if err != nil {
			return err
		}
		if _, err := f.Write(dataC); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("write and close of a 3-chunk file while the server is down: want EIO, got %v after %v", err, d)
	}

	// Metadata lives in the local registry and keeps working.
	if err := os.Mkdir(filepath.Join(mnt, "dir"), 0o755); err != nil {
		t.Errorf("mkdir while the server is down: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "a")); err != nil || fi.Size() != 2*chunk+12345 {
		t.Errorf("stat of a while the server is down: %v %v", fi, err)
	}

	// Unmounting does not wait for the server.
	if _, stderr, code, _ := s3RunPfs(t, "unmount", mnt); code != 0 || isMounted(mnt) {
		t.Fatalf("pfs unmount while the server is down: exit %d: %s (mounted: %v)\nlog:\n%s", code, stderr, isMounted(mnt), readLog(store))
	}

	// Offline commands and a new mount fail in bounded time, saying why.
	up := writeTemp(t, "up", "new data")
	for _, args := range [][]string{
		{"put", "--store", store, up},
		{"get", "--store", store, "/small", "-"},
		{"fsck", "--store", store},
		{"mount", "--store", store, mnt},
	} {
		stdout, stderr, code, _ := s3RunPfs(t, args...)
		// Not 1 (fsck: problems found) nor 6 (damaged): nothing is damaged.
		if code == 0 || code == exitProblems || code == exitDamaged {
			t.Errorf("pfs %s while the server is down: want an error exit other than 1 (problems) and 6 (damaged), got %d\nstdout: %s\nstderr: %s", args[0], code, stdout, stderr)
		}
		if !strings.Contains(stderr, srv.endpoint) || !strings.Contains(stderr, "connection refused") {
			t.Errorf("pfs %s while the server is down: want stderr to name the endpoint %s and say \"connection refused\", got %q", args[0], srv.endpoint, stderr)
		}
		if isMounted(mnt) {
			t.Fatalf("pfs mount while the server is down mounted %s", mnt)
		}
	}

	// The server comes back with its data.
	srv.restart(t)
	mountAt(t, store, mnt)
	if got := md5File(t, filepath.Join(mnt, "a")); got != sumA {
		t.Errorf("a, fsynced before the outage: md5 %s, want %s", got, sumA)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "small")); err != nil || !bytes.Equal(got, small) {
		t.Errorf("small, fsynced before the outage: %q %v, want %q", got, err, small)
	}
	// What could not be stored is not there. A chunk stored after a
	// failed one may have extended the file, as on a local file system
	// after a write-back error (the writer got EIO): then the failed
	// chunks read as holes. Never garbage, never a chunk half written.
	for name, want := range map[string][]byte{"b": dataB, "c": dataC} {
		got, err := os.ReadFile(filepath.Join(mnt, name))
		if err != nil {
			t.Errorf("%s, written while the server was down: read: %v", name, err)
			continue
		}
		stored, holes, bad := s3WrittenOrHoles(got, want, chunk)
		if bad != "" {
			t.Errorf("%s, written while the server was down: %s", name, bad)
		}
		t.Logf("%s, written while the server was down: %d of %d bytes, %d chunks stored, %d holes", name, len(got), len(want), stored, holes)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "dir")); err != nil || !fi.IsDir() {
		t.Errorf("dir, made while the server was down: %v %v", fi, err)
	}
	// New writes work, and last a remount.
	srcD := filepath.Join(src, "d")
	sumD := writeRandomFile(t, srcD, chunk+99, 32)
	run(t, "", nil, "dd", "if="+srcD, "of="+filepath.Join(mnt, "d"), "bs=1M", "status=none", "conv=fsync")
	run(t, "", nil, "cp", srcD, filepath.Join(mnt, "c")) // over what the outage left
	remount(t, mnt, store)
	for _, name := range []string{"d", "c"} {
		if got := md5File(t, filepath.Join(mnt, name)); got != sumD {
			t.Errorf("%s, written after the outage: md5 %s, want %s", name, got, sumD)
		}
	}
	unmountPfs(t, mnt)
	if code := fsck(t, store); code != 0 {
		t.Errorf("fsck after the outage: want exit 0, got %d", code)
	}
	s3CheckLayout(t, srv, bucket, "outage", store)
}

// TestS3ServerStoppedMemoryFull writes more than the memory cap while the
// server is down: the buffered chunks cannot be stored, so the cap fills
// up. The writer must get EIO, not block until the server returns.
func TestS3ServerStoppedMemoryFull(t *testing.T) {
	srv := startS3Server(t)
	s3Creds(t)
	bucket := srv.newBucket(t)
	args := append(srv.args(bucket, "full"), "--chunk-size", "1MiB", "--memory", "8MiB")
	mnt, store := mountPfs(t, args...)
	before := s3Pattern(2<<20 + 5) // two objects and a bit
	s3WriteSync(t, filepath.Join(mnt, "before"), before)
	srv.stop()

	all := s3Pattern(32 << 20)
	written := 0
	d, err := s3Timed(t, store, "writing 32 MiB with an 8 MiB cap while the server is down", func() { srv.restart(t) }, func() error {
		f, err := os.Create(filepath.Join(mnt, "big"))
		if err != nil {
			return err
		}
		for written < len(all) {
			n, err := f.Write(all[written : written+1<<20])
			written += n
			if err != nil {
				f.Close()
				return err
			}
		}
		return f.Close()
	})
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("writing 32 MiB with an 8 MiB memory cap while the server is down: want EIO, got %v after %v (%d bytes written)", err, d, written)
	}
	unmountPfs(t, mnt)
	if srv.cmd == nil {
		srv.restart(t)
	}
	mountAt(t, store, mnt)
	if got, err := os.ReadFile(filepath.Join(mnt, "before")); err != nil || !bytes.Equal(got, before) {
		t.Errorf("before, fsynced before the outage: %d bytes, %v; want its %d bytes", len(got), err, len(before))
	}
	got, err := os.ReadFile(filepath.Join(mnt, "big"))
	if err != nil {
		t.Errorf("big, written while the server was down: read: %v", err)
	} else if _, _, bad := s3WrittenOrHoles(got, all, 1<<20); bad != "" {
		t.Errorf("big, written while the server was down: %s", bad)
	}
	after := s3Pattern(3<<20 + 1)
	s3WriteSync(t, filepath.Join(mnt, "after"), after)
	remount(t, mnt, store)
	if got, err := os.ReadFile(filepath.Join(mnt, "after")); err != nil || !bytes.Equal(got, after) {
		t.Errorf("after, written once the server was back: %d bytes, %v; want its %d bytes", len(got), err, len(after))
	}
	unmountPfs(t, mnt)
	if code := fsck(t, store); code != 0 {
		t.Errorf("fsck after the outage: want exit 0, got %d", code)
	}
	s3CheckLayout(t, srv, bucket, "full", store)
}

// TestS3Offline: pfs put creates an S3 store; put, get (by path, by ID,
// to stdout), ls, rm and fsck work on it offline, and a mount serves what
// put stored. The bucket holds the parts, and rm deletes them.
func TestS3Offline(t *testing.T) {
	srv := startS3Server(t)
	s3Creds(t)
	bucket := srv.newBucket(t)
	const prefix = "offline/store"
	store := newStore(t)
	src, out := t.TempDir(), t.TempDir()
	sums := map[string]string{} // path in the store -> md5
	ids := map[string]string{}
	for i, size := range []int64{0, 1, chunk - 1, chunk, chunk + 1, 5*chunk + 7} {
		name := fmt.Sprintf("f%d", size)
		p := filepath.Join(src, name)
		sums["/"+name] = writeRandomFile(t, p, size, uint64(700+i))
		putArgs := []string{"put", "--store", store, p}
		if i == 0 {
			putArgs = append(putArgs, srv.args(bucket, prefix)...) // creates the store
		}
		stdout, stderr := mustPfs(t, putArgs...)
		if stderr != "" {
			t.Errorf("pfs put %s: want nothing on stderr, got %q", name, stderr)
		}
		for k, v := range parsePut(t, stdout) {
			ids[k] = v
		}
	}
	if objs := objectFiles(t, store); len(objs) != 0 {
		t.Errorf("pfs put on an S3 store wrote STORE/objects: %v", objs)
	}
	for p, sum := range sums {
		byPath := filepath.Join(out, strings.TrimPrefix(p, "/")+".path")
		mustPfs(t, "get", "--store", store, p, byPath)
		if got := md5File(t, byPath); got != sum {
			t.Errorf("pfs get %s: md5 %s, want %s", p, got, sum)
		}
		byID := filepath.Join(out, strings.TrimPrefix(p, "/")+".id")
		mustPfs(t, "get", "--store", store, ids[p], byID)
		if got := md5File(t, byID); got != sum {
			t.Errorf("pfs get %s (%s): md5 %s, want %s", ids[p], p, got, sum)
		}
	}
	big := fmt.Sprintf("/f%d", 5*chunk+7)
	if stdout, _ := mustPfs(t, "get", "--store", store, big, "-"); md5Bytes([]byte(stdout)) != sums[big] {
		t.Errorf("pfs get %s -: md5 %s, want %s", big, md5Bytes([]byte(stdout)), sums[big])
	}
	parts := s3Parts(t, store)
	if n := len(parts[big]); n != 6 {
		t.Errorf("pfs ls --long %s: %d parts, want 6", big, n)
	}
	if code := fsck(t, store); code != 0 {
		t.Errorf("fsck after puts: want exit 0, got %d", code)
	}
	s3CheckLayout(t, srv, bucket, prefix, store)

	// rm deletes the file's objects from the bucket.
	mustPfs(t, "rm", "--store", store, big)
	objs := srv.objects(t, bucket, prefix+"/")
	for _, part := range parts[big] {
		if _, ok := objs[prefix+"/"+part.id]; ok {
			t.Errorf("pfs rm %s: its part %s is still in the bucket", big, part.id)
		}
	}
	delete(sums, big)
	s3CheckLayout(t, srv, bucket, prefix, store)

	// A mount (no S3 flags) serves what put stored; pfs get what the
	// mount wrote.
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	mountAt(t, store, mnt)
	for p, sum := range sums {
		if got := md5File(t, filepath.Join(mnt, p)); got != sum {
			t.Errorf("%s through the mount: md5 %s, want %s", p, got, sum)
		}
	}
	fromMount := s3Pattern(1<<20 + 3)
	s3WriteSync(t, filepath.Join(mnt, "from-mount"), fromMount)
	unmountPfs(t, mnt)
	if stdout, _ := mustPfs(t, "get", "--store", store, "/from-mount", "-"); stdout != string(fromMount) {
		t.Errorf("pfs get /from-mount: %d bytes, want the %d the mount wrote", len(stdout), len(fromMount))
	}
	if code := fsck(t, store); code != 0 {
		t.Errorf("fsck after the mount: want exit 0, got %d", code)
	}
	s3CheckLayout(t, srv, bucket, prefix, store)

	// The store keeps its backend.
	_, stderr, code := runPfs(t, append([]string{"put", "--store", store, src + "/f1"}, srv.args(bucket, "elsewhere")...)...)
	wantFailure(t, "put naming another backend for an S3 store", stderr, code, exitUsage, "s3://"+bucket+"/"+prefix, "cannot change")
}

// TestS3Config: credentials come from the AWS variables or the shared
// credentials file; wrong credentials, no credentials and a missing
// bucket fail at once (no retries) with a message naming endpoint and
// bucket, and leave nothing behind that keeps the same store directory
// from being created with the right settings next.
func TestS3Config(t *testing.T) {
	srv := startS3Server(t)
	bucket := srv.newBucket(t)
	content := s3Pattern(100_000) // an object, not an inline part
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, content, 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("shared credentials file", func(t *testing.T) {
		s3Creds(t)
		creds := filepath.Join(t.TempDir(), "credentials")
		if err := os.WriteFile(creds, []byte(fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", s3Access, s3Secret)), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("AWS_ACCESS_KEY_ID", "")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "")
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
		store := newStore(t)
		mustPfs(t, append([]string{"put", "--store", store, f}, srv.args(bucket, "shared")...)...)
		if stdout, _ := mustPfs(t, "get", "--store", store, "/f", "-"); stdout != string(content) {
			t.Errorf("get /f: %d bytes, want the %d put", len(stdout), len(content))
		}
		s3CheckLayout(t, srv, bucket, "shared", store)
	})

	for _, c := range []struct {
		name         string
		access, sec  string
		bucket       string
		wantInStderr []string
	}{
		{"wrong secret", s3Access, "not-the-secret", bucket, []string{srv.endpoint, bucket}},
		{"no credentials", "", "", bucket, []string{srv.endpoint, bucket}},
		{"missing bucket", s3Access, s3Secret, "no-such-bucket", []string{srv.endpoint, "no-such-bucket", "does not exist"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s3Creds(t)
			t.Setenv("AWS_ACCESS_KEY_ID", c.access)
			t.Setenv("AWS_SECRET_ACCESS_KEY", c.sec)
			store := newStore(t)
			start := time.Now()
			_, stderr, code := runPfs(t, append([]string{"put", "--store", store, f}, srv.args(c.bucket, "x")...)...)
			took := time.Since(start)
			t.Logf("exit %d after %v: %s", code, took.Round(time.Millisecond), strings.TrimSpace(stderr))
			wantFailure(t, "put with "+c.name, stderr, code, s3ExitError, c.wantInStderr...)
			if took > 20*time.Second {
				t.Errorf("put with %s took %v to fail: a permanent error must not be retried", c.name, took)
			}
			// Corrected, the same store directory works.
			s3Creds(t)
			prefix := "fixed-" + strings.ReplaceAll(c.name, " ", "-")
			stdout, stderr, code := runPfs(t, append([]string{"put", "--store", store, f}, srv.args(bucket, prefix)...)...)
			if code != 0 {
				t.Fatalf("put into the same store directory with the right settings after a failed creation: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			s3CheckLayout(t, srv, bucket, prefix, store)
		})
	}
}

// s3WriteSync writes a file through the mount and fsyncs it.
func s3WriteSync(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		t.Fatalf("write %s: %v", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		t.Fatalf("fsync %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close %s: %v", path, err)
	}
}

// s3Pattern returns n bytes in which no chunk equals another.
func s3Pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// s3WrittenOrHoles checks that got is at most as long as want and that
// each chunk of it is either the bytes written there or all zeros (a
// hole). It counts both kinds, and says what is wrong, if anything.
func s3WrittenOrHoles(got, want []byte, cs int) (stored, holes int, bad string) {
	if len(got) > len(want) {
		return 0, 0, fmt.Sprintf("%d bytes, more than the %d written", len(got), len(want))
	}
	for off := 0; off < len(got); off += cs {
		g, w := got[off:min(off+cs, len(got))], want[off:min(off+cs, len(got))]
		switch {
		case bytes.Equal(g, w):
			stored++
		case !slices.ContainsFunc(g, func(b byte) bool { return b != 0 }):
			holes++
		default:
			return stored, holes, fmt.Sprintf("the chunk at %d is neither what was written nor a hole", off)
		}
	}
	return stored, holes, ""
}
