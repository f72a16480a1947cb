package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Each workload below is one group (see groups): it mounts the system,
// measures, records samples and unmounts. Setup inside a group (removing
// leftovers, syncing, laying out files) is never timed.

// treeName is the directory W3 extracts into: a new one each round.
func (r *runner) treeName() string { return fmt.Sprintf("tree%d", r.round) }

// seqWrite is W1: dd of incompressible data into the mount, with an fsync
// at the end. It also takes the daemon's peak RSS for W6.
func (r *runner) seqWrite(ctx context.Context, s *system) error {
	if err := r.mount(ctx, s, false); err != nil {
		return err
	}
	f := filepath.Join(s.mnt, "seq")
	if err := removeIfExists(f); err != nil {
		return err
	}
	if err := syncAll(ctx); err != nil {
		return err
	}
	_, d, err := timed(ctx, "dd", "if="+r.src, "of="+f, "bs=1M", fmt.Sprintf("count=%d", r.cfg.seqSize/miB), "conv=fsync")
	if err != nil {
		return err
	}
	if err := checkSize(f, r.cfg.seqSize); err != nil {
		return err
	}
	r.record("W1", s, mbps(r.cfg.seqSize, d))
	r.logf("  W1  %.2f s  %.0f MB/s", d.Seconds(), mbps(r.cfg.seqSize, d))
	if s.pid != 0 {
		if s.hwm, err = procStatus(s.pid, "VmHWM"); err != nil {
			return err
		}
	}
	return s.unmount(ctx, r.cfg)
}

// seqRead is W2: W1's file read cold (fresh mount, empty page cache),
// then again warm. W6 is the larger peak RSS of W1's and W2's daemons.
func (r *runner) seqRead(ctx context.Context, s *system) error {
	if err := r.mount(ctx, s, true); err != nil {
		return err
	}
	f := filepath.Join(s.mnt, "seq")
	for _, row := range []string{"W2c", "W2w"} {
		_, d, err := timed(ctx, "dd", "if="+f, "of=/dev/null", "bs=1M")
		if err != nil {
			return err
		}
		r.record(row, s, mbps(r.cfg.seqSize, d))
		r.logf("  %s %.2f s  %.0f MB/s", row, d.Seconds(), mbps(r.cfg.seqSize, d))
	}
	if s.pid != 0 {
		hwm, err := procStatus(s.pid, "VmHWM")
		if err != nil {
			return err
		}
		r.record("W6", s, float64(max(hwm, s.hwm))/miB)
		s.hwm = 0
	}
	if s.name == "loopback-pt" {
		// With passthrough the kernel reads the backing file itself and the
		// daemon reads (almost) nothing.
		if rchar, err := procRchar(s.pid); err == nil && rchar > r.cfg.seqSize/2 {
			r.notef("loopback-pt: its daemon read %s during W2, so FUSE passthrough was not in use "+
				"(it needs root and Linux 6.9 or later); loopback-pt then measures the same as loopback", sizeStr(rchar))
		}
	}
	if err := r.checkContent(f, r.cfg.seqSize); err != nil {
		return err
	}
	if err := os.Remove(f); err != nil {
		return err
	}
	return s.unmount(ctx, r.cfg)
}

// extract is W3's first half: untar the Go tree into the mount, then sync.
// W3u adds the unmount after it, which shows work a daemon put off past
// sync: `sync` makes the kernel write its dirty pages to the daemon but
// does not ask a FUSE daemon to flush its own buffers.
func (r *runner) extract(ctx context.Context, s *system) error {
	if err := r.mount(ctx, s, false); err != nil {
		return err
	}
	tree := filepath.Join(s.mnt, r.treeName())
	if err := os.Mkdir(tree, 0o755); err != nil {
		return err
	}
	if err := syncAll(ctx); err != nil {
		return err
	}
	_, d, err := shell(ctx, `tar xf "$1" -C "$2"; sync`, r.tarball, tree)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := s.unmount(ctx, r.cfg); err != nil {
		return err
	}
	du := time.Since(start)
	r.record("W3x", s, d.Seconds())
	r.record("W3u", s, (d + du).Seconds())
	r.logf("  W3x %.2f s, then unmount %.2f s", d.Seconds(), du.Seconds())
	return nil
}

// treeRead is W3's second half, cold: tar the tree to a pipe (GNU tar
// skips reading files when it writes to /dev/null itself), then W5 on the
// now warm tree: find | wc -l and ls -lR. The tree stays: removing it
// through the mount would only cost time, and close removes the work dir.
func (r *runner) treeRead(ctx context.Context, s *system) error {
	if err := r.mount(ctx, s, true); err != nil {
		return err
	}
	tree := filepath.Join(s.mnt, r.treeName())
	_, d, err := shell(ctx, `cd "$1"; tar cf - "$2" | cat >/dev/null`, s.mnt, r.treeName())
	if err != nil {
		return err
	}
	r.record("W3t", s, d.Seconds())
	out, df, err := shell(ctx, `find "$1" -type f | wc -l`, tree)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(strings.TrimSpace(out)); err != nil || n != r.treeFiles {
		return fmt.Errorf("W5: find counted %q files, the tarball has %d", strings.TrimSpace(out), r.treeFiles)
	}
	r.record("W5f", s, df.Seconds())
	_, dl, err := shell(ctx, `ls -lR "$1" >/dev/null`, tree)
	if err != nil {
		return err
	}
	r.record("W5l", s, dl.Seconds())
	r.logf("  W3t %.2f s  W5 find %.2f s  ls -lR %.2f s", d.Seconds(), df.Seconds(), dl.Seconds())
	return s.unmount(ctx, r.cfg)
}

// randRead is W4 and W4d: fio 4 KiB random reads on one file, buffered
// then O_DIRECT, starting from a cold mount. The file is written once per
// system (from the random input) and kept for the later rounds.
func (r *runner) randRead(ctx context.Context, s *system) error {
	if err := r.mount(ctx, s, false); err != nil {
		return err
	}
	f := filepath.Join(s.mnt, "fio-read")
	if err := r.layOut(ctx, f, r.cfg.fioSize); err != nil {
		return err
	}
	if err := s.unmount(ctx, r.cfg); err != nil {
		return err
	}
	if err := r.mount(ctx, s, true); err != nil {
		return err
	}
	for _, row := range []string{"W4", "W4d"} {
		args := []string{"--filename=" + f, fmt.Sprintf("--size=%d", r.cfg.fioSize)}
		if row == "W4d" {
			args = append(args, "--direct=1")
		}
		iops, err := r.fio(ctx, "randread", r.runtimeOf(row), args...)
		if err != nil {
			return err
		}
		r.record(row, s, iops)
		r.logf("  %-3s %.0f IOPS", row, iops)
	}
	return s.unmount(ctx, r.cfg)
}

// randWrite is W7: fio 4 KiB random writes, one file per job, fsync at
// the end. --overwrite=1 lays the files out in full the first time, so
// every round overwrites data rather than filling holes.
func (r *runner) randWrite(ctx context.Context, s *system) error {
	if err := r.mount(ctx, s, false); err != nil {
		return err
	}
	dir := filepath.Join(s.mnt, "fio-write")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// fio lays its files out with writes of the job's 4 KiB block size:
	// through a FUSE daemon 25-45 s of the first round. dd writes them
	// in 1 MiB blocks; fio then finds them complete and overwrites.
	for job := range r.cfg.fioJobs {
		f := filepath.Join(dir, fmt.Sprintf("randwrite.%d.0", job)) // fio's NAME.JOB.FILE
		if err := r.layOut(ctx, f, r.cfg.rwSize); err != nil {
			return err
		}
	}
	iops, err := r.fio(ctx, "randwrite", r.runtimeOf("W7"), "--directory="+dir, fmt.Sprintf("--size=%d", r.cfg.rwSize), "--overwrite=1", "--end_fsync=1")
	if err != nil {
		return err
	}
	r.record("W7", s, iops)
	r.logf("  W7  %.0f IOPS", iops)
	return s.unmount(ctx, r.cfg)
}

// sqlite is W8: sqlite3 runs the insert script, then a second sqlite3
// reads every row back.
func (r *runner) sqlite(ctx context.Context, s *system) error {
	if err := r.mount(ctx, s, false); err != nil {
		return err
	}
	db := filepath.Join(s.mnt, "w8.db")
	for _, f := range []string{db, db + "-journal"} {
		if err := removeIfExists(f); err != nil {
			return err
		}
	}
	if err := syncAll(ctx); err != nil {
		return err
	}
	out, d, err := shell(ctx, `sqlite3 "$1" <"$2" >/dev/null; sqlite3 "$1" 'SELECT count(*), sum(length(v)) FROM t'`, db, r.sqlScript)
	if err != nil {
		return err
	}
	if want := fmt.Sprintf("%d|%d", r.cfg.sqlRows, r.cfg.sqlRows*100); strings.TrimSpace(out) != want {
		return fmt.Errorf("W8: read back %q, want %q", strings.TrimSpace(out), want)
	}
	r.record("W8", s, d.Seconds())
	r.logf("  W8  %.2f s", d.Seconds())
	if err := os.Remove(db); err != nil {
		return err
	}
	return s.unmount(ctx, r.cfg)
}

// layOut writes f from the random input with dd in 1 MiB blocks, durably,
// unless it already has that size (written in an earlier round).
func (r *runner) layOut(ctx context.Context, f string, size int64) error {
	if fi, err := os.Stat(f); err == nil && fi.Size() == size {
		return nil
	}
	_, err := output(ctx, "dd", "if="+r.src, "of="+f, "bs=1M", fmt.Sprintf("count=%d", size/miB), "conv=fsync")
	return err
}

// runtimeOf is how long a fio row runs. W4d runs half as long as the
// others (at least 5 s, at most as long as they do): it follows W4 on the
// same mount, so every cache is as warm as it gets and its figure is
// steady from the start.
func (r *runner) runtimeOf(row string) time.Duration {
	if row == "W4d" {
		return min(r.cfg.fioRuntime, max(5*time.Second, r.cfg.fioRuntime/2).Round(time.Second))
	}
	return r.cfg.fioRuntime
}

// fio runs one fio job group of cfg.fioJobs psync jobs doing 4 KiB I/O
// for runtime and returns the IOPS of all jobs together.
func (r *runner) fio(ctx context.Context, rw string, runtime time.Duration, extra ...string) (float64, error) {
	args := append([]string{
		"--name=" + rw, "--rw=" + rw, "--bs=4k", "--ioengine=psync",
		fmt.Sprintf("--numjobs=%d", r.cfg.fioJobs),
		fmt.Sprintf("--runtime=%d", int(runtime.Seconds())), "--time_based",
		"--fallocate=none", "--group_reporting", "--output-format=json",
	}, extra...)
	out, err := output(ctx, "fio", args...)
	if err != nil {
		return 0, err
	}
	// fio may print notes before the JSON.
	if i := strings.IndexByte(out, '{'); i > 0 {
		out = out[i:]
	}
	var res struct {
		Jobs []struct {
			Error int `json:"error"`
			Read  struct {
				IOPS float64 `json:"iops"`
			} `json:"read"`
			Write struct {
				IOPS float64 `json:"iops"`
			} `json:"write"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return 0, fmt.Errorf("fio output: %w", err)
	}
	if len(res.Jobs) != 1 || res.Jobs[0].Error != 0 {
		return 0, fmt.Errorf("fio: %d job groups, error %v", len(res.Jobs), res.Jobs)
	}
	if strings.HasSuffix(rw, "read") {
		return res.Jobs[0].Read.IOPS, nil
	}
	return res.Jobs[0].Write.IOPS, nil
}

// checkContent compares 16 random 64 KiB blocks of f with the input it
// was written from; a benchmark of wrong data means nothing.
func (r *runner) checkContent(f string, size int64) error {
	got, err := os.Open(f)
	if err != nil {
		return err
	}
	defer got.Close()
	want, err := os.Open(r.src)
	if err != nil {
		return err
	}
	defer want.Close()
	const block = 64 * kiB
	a, b := make([]byte, block), make([]byte, block)
	for range 16 {
		off := rand.Int64N(size/block) * block
		if _, err := got.ReadAt(a, off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: %w", f, err)
		}
		if _, err := want.ReadAt(b, off); err != nil {
			return err
		}
		if !bytes.Equal(a, b) {
			return fmt.Errorf("%s: bytes at %d differ from what W1 wrote", f, off)
		}
	}
	return nil
}

func checkSize(f string, size int64) error {
	fi, err := os.Stat(f)
	if err != nil {
		return err
	}
	if fi.Size() != size {
		return fmt.Errorf("%s: size %d, wrote %d", f, fi.Size(), size)
	}
	return nil
}

func removeIfExists(f string) error {
	if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// mbps is throughput in MB/s (10^6 bytes per second, as dd prints).
func mbps(n int64, d time.Duration) float64 {
	return float64(n) / 1e6 / d.Seconds()
}
