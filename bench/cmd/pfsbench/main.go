// Command pfsbench is the benchmark behind `make bench` (bench/run.sh). On
// one disk it runs workloads W1–W8 against the native directory, go-fuse's
// loopback with and without FUSE passthrough, pfs with default settings and
// with --memory 64MiB, and gocryptfs. Systems are interleaved within each
// round, each workload runs once per round, and the table of medians goes
// to stdout and to bench/results/latest.md. See bench/README.md.
//
// It needs root: cold runs drop the page cache, and go-fuse's passthrough
// needs CAP_SYS_ADMIN. It fails only when something breaks, never on a
// missed target.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

const (
	kiB = 1 << 10
	miB = 1 << 20
	giB = 1 << 30
)

// config is what one run measures, from the flags.
type config struct {
	quick       bool
	rounds      int
	dir         string   // parent of the work dir; must be on the disk
	systems     []string // names from allSystems, in column order
	pfsBin      string
	loopbackBin string
	out         string // the markdown report
	keep        bool   // keep the work dir (stores, logs) for debugging

	seqSize    int64         // W1, W2
	fioSize    int64         // W4: one file shared by the jobs
	fioRuntime time.Duration // W4, W4d, W7
	rwSize     int64         // W7: per job
	fioJobs    int
	sqlRows    int // W8
	sqlTxns    int
	tree       string // W3: the tree that is tarred and extracted
}

// allSystems is every system and the column order of the table.
var allSystems = []string{"native", "loopback-pt", "loopback", "pfs", "pfs-64M", "pfs-s3", "gocryptfs"}

// defaultSystems are the ones the issue asks for. pfs-s3 (no target
// applies) is left out to keep the full run near its 20-minute budget;
// -systems adds it.
var defaultSystems = slices.DeleteFunc(slices.Clone(allSystems), func(s string) bool { return s == "pfs-s3" })

func main() {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pfsbench: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "pfsbench: %v\n", err)
		stop()
		os.Exit(1)
	}
}

func parseFlags() (config, error) {
	var cfg config
	var systems string
	flag.BoolVar(&cfg.quick, "quick", false, "1 round, smaller files and 5 s fio runs (under 4 minutes)")
	flag.IntVar(&cfg.rounds, "rounds", 0, "rounds (default 3, or 1 with -quick)")
	flag.StringVar(&cfg.dir, "dir", "", "parent of the work dir, on the disk to measure (default /var/tmp, else bench/work)")
	flag.StringVar(&systems, "systems", strings.Join(defaultSystems, ","), "comma-separated systems to run, of "+strings.Join(allSystems, ","))
	flag.StringVar(&cfg.pfsBin, "pfs", "bin/pfs", "the pfs binary")
	flag.StringVar(&cfg.loopbackBin, "loopback", "bin/pfs-loopback", "the go-fuse loopback binary (bench/loopback)")
	flag.StringVar(&cfg.out, "out", "", "where to write the report (default bench/results/latest.md, or bench/results/quick.md with -quick, so a quick run never replaces the full one)")
	flag.StringVar(&cfg.tree, "tree", "", "the tree W3 extracts (default the Go source tree; its runtime/ with -quick)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the work dir (stores, daemon logs) after the run")
	flag.DurationVar(&cfg.fioRuntime, "fio-runtime", 0, "runtime of each fio run (default 8s, 5s with -quick)")
	flag.Parse()
	if flag.NArg() != 0 {
		return cfg, fmt.Errorf("unexpected arguments: %q", flag.Args())
	}

	cfg.seqSize, cfg.fioSize, cfg.rwSize, cfg.fioJobs = 2*giB, 1*giB, 256*miB, 4
	cfg.sqlRows, cfg.sqlTxns = 100000, 1000
	// The issue asks for 30 s fio runs, but 6 systems × 3 rounds × 3 runs
	// × 30 s is 27 minutes, past the 20-minute budget for the whole run.
	// 5 s runs are mostly pfs's cold start: a random read that misses
	// loads and verifies a whole chunk, so W4 starts at ~200 IOPS until
	// the file is cached, and 5 s runs measured 5-14k IOPS where 10 s runs
	// measured 125k. 8 s keeps the steady state in the figure and the run
	// under 20 minutes (10 s runs made it 21). -fio-runtime 30s gives the
	// long runs.
	rounds, runtime := 3, 8*time.Second
	if cfg.quick {
		cfg.seqSize, cfg.fioSize, cfg.rwSize = 256*miB, 256*miB, 64*miB
		cfg.sqlRows, cfg.sqlTxns = 20000, 200
		rounds, runtime = 1, 5*time.Second
	}
	if cfg.rounds == 0 {
		cfg.rounds = rounds
	}
	if cfg.out == "" {
		cfg.out = "bench/results/latest.md"
		if cfg.quick {
			cfg.out = "bench/results/quick.md"
		}
	}
	if cfg.fioRuntime == 0 {
		cfg.fioRuntime = runtime
	}
	if cfg.rounds < 1 {
		return cfg, fmt.Errorf("-rounds %d: want at least 1", cfg.rounds)
	}
	if cfg.fioRuntime < time.Second {
		return cfg, fmt.Errorf("-fio-runtime %v: want at least 1s", cfg.fioRuntime)
	}
	for _, name := range strings.Split(systems, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(allSystems, name) {
			return cfg, fmt.Errorf("-systems: unknown system %q (have %s)", name, strings.Join(allSystems, ", "))
		}
		if slices.Contains(cfg.systems, name) {
			return cfg, fmt.Errorf("-systems: %q twice", name)
		}
		cfg.systems = append(cfg.systems, name)
	}
	if len(cfg.systems) == 0 {
		return cfg, errors.New("-systems: none given")
	}
	// Keep the table's column order whatever order -systems used.
	var ordered []string
	for _, name := range allSystems {
		if slices.Contains(cfg.systems, name) {
			ordered = append(ordered, name)
		}
	}
	cfg.systems = ordered
	for _, p := range []*string{&cfg.pfsBin, &cfg.loopbackBin, &cfg.out, &cfg.tree} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return cfg, err
		}
		*p = abs
	}
	return cfg, nil
}

// run prepares the inputs, runs the rounds and writes the report. Every
// mount is undone and the work dir removed on the way out, failed or not.
func run(ctx context.Context, cfg config) (err error) {
	start := time.Now()
	if os.Geteuid() != 0 {
		return errors.New("needs root: cold runs drop the page cache and loopback-pt needs CAP_SYS_ADMIN")
	}
	if err := checkTools(cfg); err != nil {
		return err
	}
	r, err := newRunner(cfg)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := r.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := r.prepare(ctx); err != nil {
		return err
	}
	r.prepped = time.Since(start)
	if err := r.rounds(ctx); err != nil {
		return err
	}
	report := r.report(time.Since(start))
	fmt.Print(report)
	if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(cfg.out, []byte(report), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "pfsbench: wrote %s\n", cfg.out)
	var failed []string
	for _, s := range r.sys {
		if s.failed != nil {
			failed = append(failed, s.name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s failed (see Errors in the report)", strings.Join(failed, ", "))
	}
	return nil
}
