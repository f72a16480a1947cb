package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// runner holds one run: the work dir, the inputs, the systems and the
// samples taken so far.
type runner struct {
	cfg  config
	work string // on the disk under test: every system's files live here
	// shm holds the inputs (random data, the tarball, the SQL script) in
	// RAM, so that reading them costs no disk I/O and survives drop_caches.
	shm       string
	src       string
	tarball   string
	treeFiles int
	sqlScript string

	sys     []*system
	round   int            // the current round, from 1
	usr1    chan os.Signal // gocryptfs -notifypid tells us it is mounted
	samples map[string]map[string][]float64
	notes   []string
	spent   map[string]time.Duration // per group, all systems and rounds, for the budget
	prepped time.Duration            // preparing the inputs and the systems
}

func newRunner(cfg config) (*runner, error) {
	parent := cfg.dir
	if parent == "" {
		parent = "/var/tmp"
		if ramBacked(parent) {
			parent = "bench/work" // run.sh runs us from the repo root
		}
	}
	parent, err := filepath.Abs(parent)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	// Mount points in /proc/self/mountinfo have their symlinks resolved.
	if parent, err = filepath.EvalSymlinks(parent); err != nil {
		return nil, err
	}
	if ramBacked(parent) {
		return nil, fmt.Errorf("%s is in RAM (tmpfs); give a directory on a disk with -dir or BENCH_DIR", parent)
	}
	if need, free := cfg.diskNeeded(), freeBytes(parent); free < need {
		return nil, fmt.Errorf("%s has %s free; this run needs about %s", parent, sizeStr(free), sizeStr(need))
	}
	work, err := os.MkdirTemp(parent, "pfsbench-")
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, work: work, usr1: make(chan os.Signal, 1), samples: map[string]map[string][]float64{},
		spent: map[string]time.Duration{}}
	signal.Notify(r.usr1, syscall.SIGUSR1)
	shmParent := "/dev/shm"
	if !ramBacked(shmParent) || freeBytes(shmParent) < cfg.inputBytes()+256*miB {
		shmParent = work
		r.notef("/dev/shm is missing or small: inputs are read from the disk under test")
	}
	if r.shm, err = os.MkdirTemp(shmParent, "pfsbench-in-"); err != nil {
		_ = os.RemoveAll(work)
		return nil, err
	}
	for _, name := range cfg.systems {
		r.sys = append(r.sys, newSystem(name, work))
	}
	return r, nil
}

// diskNeeded is a generous estimate of the space the run takes on the
// disk: every system holds its W1, W4 and W7 files at once.
func (c config) diskNeeded() int64 {
	per := c.seqSize + c.fioSize + int64(c.fioJobs)*c.rwSize + 512*miB
	return int64(len(c.systems)) * per * 5 / 4
}

// inputBytes is the size of the inputs kept in RAM.
func (c config) inputBytes() int64 { return max(c.seqSize, c.fioSize) + 200*miB }

func freeBytes(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0
	}
	return int64(st.Bavail) * st.Bsize
}

// ramBacked reports whether dir is on tmpfs or ramfs.
func ramBacked(dir string) bool {
	const tmpfsMagic, ramfsMagic = 0x01021994, 0x858458f6
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Type == tmpfsMagic || st.Type == ramfsMagic
}

// close unmounts whatever is still mounted and removes the work dir and
// the inputs. It runs on every exit path, so it must not use the run's
// (maybe cancelled) context.
func (r *runner) close() error {
	signal.Stop(r.usr1)
	ctx, cancel := context.WithTimeout(context.Background(), unmountTimeout)
	defer cancel()
	var errs []error
	for _, s := range r.sys {
		if err := s.unmount(ctx, r.cfg); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range r.sys {
		if s.gw != nil {
			s.gw.stop()
		}
	}
	for _, m := range mounts() {
		if strings.HasPrefix(m.point, r.work+"/") {
			errs = append(errs, fmt.Errorf("left mounted: %s (%s)", m.point, m.fstype))
			_ = forceUnmount(m.point)
		}
	}
	if err := os.RemoveAll(r.shm); err != nil {
		errs = append(errs, err)
	}
	if r.cfg.keep {
		fmt.Fprintf(os.Stderr, "pfsbench: kept %s\n", r.work)
	} else if err := os.RemoveAll(r.work); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// prepare writes the inputs and sets up every system.
func (r *runner) prepare(ctx context.Context) error {
	r.logf("preparing inputs in %s, systems in %s", r.shm, r.work)
	// Incompressible data: ChaCha8 output, as random as /dev/urandom to
	// any compressor and several times faster to make.
	r.src = filepath.Join(r.shm, "random")
	if err := writeRandom(r.src, max(r.cfg.seqSize, r.cfg.fioSize)); err != nil {
		return err
	}
	tree := r.cfg.tree
	if tree == "" {
		if tree = goSrc(); tree == "" {
			return errors.New("no Go source tree: neither /usr/local/go/src nor $(go env GOROOT)/src")
		}
		if r.cfg.quick {
			tree = filepath.Join(tree, "runtime") // a tenth of the files
		}
	}
	r.cfg.tree = tree
	n, err := countFiles(tree)
	if err != nil {
		return err
	}
	r.treeFiles = n
	r.tarball = filepath.Join(r.shm, "tree.tar")
	if _, err := output(ctx, "tar", "cf", r.tarball, "-C", filepath.Dir(tree), filepath.Base(tree)); err != nil {
		return err
	}
	r.sqlScript = filepath.Join(r.shm, "insert.sql")
	if err := os.WriteFile(r.sqlScript, sqlInsert(r.cfg.sqlRows, r.cfg.sqlTxns), 0o644); err != nil {
		return err
	}
	for _, s := range r.sys {
		if err := s.setup(ctx); err != nil {
			return fmt.Errorf("%s: setup: %w", s.name, err)
		}
	}
	return nil
}

func writeRandom(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	rng := rand.NewChaCha8([32]byte{'p', 'f', 's'})
	if _, err := io.CopyN(f, rng, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// goSrc finds the Go source tree for W3.
func goSrc() string {
	if fi, err := os.Stat("/usr/local/go/src"); err == nil && fi.IsDir() {
		return "/usr/local/go/src"
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return ""
	}
	src := filepath.Join(strings.TrimSpace(string(out)), "src")
	if fi, err := os.Stat(src); err == nil && fi.IsDir() {
		return src
	}
	return ""
}

// countFiles counts regular files, what `find -type f` counts in W5.
func countFiles(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	})
	return n, err
}

// sqlInsert is W8's script: rows rows of 100 random bytes, in txns
// transactions, with a rollback journal (sqlite3's default, synchronous
// FULL: every commit syncs the journal and the database).
func sqlInsert(rows, txns int) []byte {
	var b bytes.Buffer
	b.WriteString("PRAGMA journal_mode=DELETE;\nCREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);\n")
	per := rows / txns
	for range txns {
		b.WriteString("BEGIN;\n")
		for range per {
			b.WriteString("INSERT INTO t(v) VALUES(randomblob(100));\n")
		}
		b.WriteString("COMMIT;\n")
	}
	return b.Bytes()
}

// A group is the part of a round that one system does under its own mount.
// Groups run in this order, each over every system before the next, so
// systems are interleaved at the finest grain the dependencies allow
// (W2 reads W1's file, W3's tar and W5 walk the extracted tree).
type group struct {
	name string
	run  func(r *runner, ctx context.Context, s *system) error
}

// groupTimeout ends a group that hangs (a deadlocked daemon, say); its
// commands are killed and the system sits out the rest of the run.
const groupTimeout = 15 * time.Minute

var groups = []group{
	{"W1", (*runner).seqWrite},
	{"W2", (*runner).seqRead},
	{"W3 extract", (*runner).extract},
	{"W3 tar, W5", (*runner).treeRead},
	{"W4", (*runner).randRead},
	{"W7", (*runner).randWrite},
	{"W8", (*runner).sqlite},
}

// rounds runs every group on every system, cfg.rounds times. The system
// order rotates each round so that none always runs first or last. A
// system that fails sits out the rest of the run; the others go on.
func (r *runner) rounds(ctx context.Context) error {
	n := len(r.sys)
	start := time.Now()
	for round := range r.cfg.rounds {
		if round > 0 {
			per := time.Since(start) / time.Duration(round)
			r.logf("%d round(s) took %v; about %v to go", round, time.Since(start).Round(time.Second),
				(per * time.Duration(r.cfg.rounds-round)).Round(time.Second))
		}
		r.round = round + 1
		order := make([]*system, n)
		for i := range n {
			order[i] = r.sys[(i+round)%n]
		}
		for _, g := range groups {
			for _, s := range order {
				if s.failed != nil || (s.only != nil && !slices.Contains(s.only, g.name)) {
					continue
				}
				r.logf("round %d/%d  %-11s %s", round+1, r.cfg.rounds, s.name, g.name)
				gctx, cancel := context.WithTimeout(ctx, groupTimeout)
				gstart := time.Now()
				err := g.run(r, gctx, s)
				r.spent[g.name] += time.Since(gstart)
				if gctx.Err() == context.DeadlineExceeded {
					err = fmt.Errorf("timed out after %v (hung?): %w", groupTimeout, err)
				}
				cancel()
				if ctx.Err() != nil {
					return errors.New("interrupted")
				}
				if err != nil {
					s.failed = fmt.Errorf("round %d, %s: %w", round+1, g.name, err)
					r.logf("FAILED %s: %v", s.name, s.failed)
					if uerr := s.unmount(ctx, r.cfg); uerr != nil {
						r.logf("%v", uerr)
					}
				}
			}
		}
	}
	return nil
}

// mount mounts s; cold first drops the page cache, so that nothing of the
// system's files is cached in the kernel (a FUSE system's own cache went
// with its previous daemon).
func (r *runner) mount(ctx context.Context, s *system, cold bool) error {
	if cold {
		if err := dropCaches(ctx); err != nil {
			return err
		}
	}
	return s.mount(ctx, r.cfg, r.usr1)
}

func (r *runner) record(row string, s *system, v float64) {
	if r.samples[row] == nil {
		r.samples[row] = map[string][]float64{}
	}
	r.samples[row][s.name] = append(r.samples[row][s.name], v)
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s pfsbench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// notef adds a note to the report (once).
func (r *runner) notef(format string, args ...any) {
	note := fmt.Sprintf(format, args...)
	for _, n := range r.notes {
		if n == note {
			return
		}
	}
	r.notes = append(r.notes, note)
}

// output runs a command and returns its stdout; a failure carries stderr.
// The command gets its own process group, and the whole group is killed
// if ctx ends, pipelines included.
func output(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = "…" + msg[len(msg)-2000:]
		}
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.String(), nil
}

// timed runs a command and returns how long it took.
func timed(ctx context.Context, name string, args ...string) (string, time.Duration, error) {
	start := time.Now()
	out, err := output(ctx, name, args...)
	return out, time.Since(start), err
}

// shell runs a bash script with pipefail; args are $1, $2, …
func shell(ctx context.Context, script string, args ...string) (string, time.Duration, error) {
	return timed(ctx, "bash", append([]string{"-c", "set -eo pipefail\n" + script, "bash"}, args...)...)
}

func syncAll(ctx context.Context) error {
	_, err := output(ctx, "sync")
	return err
}

// dropCaches makes the next read cold: `sync; echo 3 > drop_caches`.
func dropCaches(ctx context.Context) error {
	if err := syncAll(ctx); err != nil {
		return err
	}
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200)
}

func checkTools(cfg config) error {
	tools := []string{"dd", "tar", "bash", "find", "ls", "sync", "fio", "sqlite3"}
	if slices.Contains(cfg.systems, "gocryptfs") {
		tools = append(tools, "gocryptfs")
	}
	if slices.Contains(cfg.systems, "pfs-s3") {
		if _, err := versitygwPath(); err != nil {
			return err
		}
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s is missing (bench/run.sh installs fio, gocryptfs and sqlite3)", t)
		}
	}
	for _, b := range []struct{ sys, bin string }{{"pfs", cfg.pfsBin}, {"loopback", cfg.loopbackBin}} {
		for _, name := range cfg.systems {
			if strings.HasPrefix(name, b.sys) {
				if _, err := os.Stat(b.bin); err != nil {
					return fmt.Errorf("%s needs %s: %w", name, b.bin, err)
				}
			}
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("/dev/fuse: %w (load the fuse module: modprobe fuse)", err)
	}
	return nil
}

func sizeStr(n int64) string {
	switch {
	case n >= giB && n%giB == 0:
		return fmt.Sprintf("%d GiB", n/giB)
	case n >= giB:
		return fmt.Sprintf("%.1f GiB", float64(n)/giB)
	case n >= miB:
		return fmt.Sprintf("%d MiB", n/miB)
	}
	return fmt.Sprintf("%d KiB", n/kiB)
}
