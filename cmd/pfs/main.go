// Command pfs mounts a pfs store with FUSE (pfs mount, pfs unmount) and
// works on an unmounted store offline (pfs put, get, ls, rm, fsck).
//
// This package is wiring only: flags, opening the store, printing, and exit
// codes (exitcodes.go). What a file is lives in package engine. One file
// per subcommand, cmd_<verb>.go.
//
// Every failure ends in one line "pfs: <what>: <why>" on stderr and a
// non-zero exit code; runtime errors never print the usage text.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pfs-project/pfs/chunkstore"
	"github.com/pfs-project/pfs/engine"
	"github.com/pfs-project/pfs/internal/hugepages"
)

func main() {
	// A store holds every user's data, so nothing pfs creates in it may
	// be readable by others, including the files Badger creates with 0644.
	// pfs get sets the stored mode on what it writes explicitly.
	syscall.Umask(0o077)
	args := os.Args[1:]
	switch filepath.Base(os.Args[0]) {
	case "mount.pfs", "mount.fuse.pfs":
		var err error
		if args, err = mountHelperArgs(args); err != nil {
			fmt.Fprintf(os.Stderr, "pfs: %v\n", err)
			os.Exit(exitUsage)
		}
	}
	os.Exit(run(args))
}

// run executes the command line args and returns the exit code.
func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		// SIGINT or SIGTERM: the command cleaned up (put and get remove
		// their temporary files); "context canceled" would say nothing.
		fmt.Fprintln(os.Stderr, "pfs: interrupted")
		return exitInterrupted
	}
	code := exitCode(err)
	var ee *codedError
	msg := err.Error()
	if errors.As(err, &ee) && ee.usage {
		msg += " (see 'pfs --help')"
	}
	fmt.Fprintf(os.Stderr, "pfs: %s\n", msg)
	return code
}

// globals are the flags every subcommand has.
type globals struct {
	store     string
	logLevel  string
	retryLock time.Duration
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "pfs",
		Short: "pfs: a parallel, chunked FUSE filesystem with MD5-checked parts",
		Long: `pfs stores files as fixed-size parts, each checked against its MD5 on every
load. Mount a store with 'pfs mount', or work on an unmounted store with
put, get, ls, rm and fsck.

The store is a directory, by default $XDG_DATA_HOME/pfs (else
~/.local/share/pfs); it is created on first use by put or mount.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		// An unknown subcommand is a usage error, not a runtime one.
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.store, "store", "", "store directory (default $XDG_DATA_HOME/pfs, else ~/.local/share/pfs)")
	pf.StringVar(&g.logLevel, "log-level", "", "log level: debug, info, warn or error (default: none for offline commands, info for a mount)")
	pf.DurationVar(&g.retryLock, "retry-lock", 0, "if another process holds the store, retry for up to this long (e.g. 5m) instead of failing at once")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &codedError{code: exitUsage, err: err, usage: true}
	})
	root.AddCommand(
		newPutCmd(g), newGetCmd(g), newLsCmd(g), newRmCmd(g), newFsckCmd(g),
		newMountCmd(g), newUnmountCmd(),
	)
	return root
}

// codedError carries an exit code with an error.
type codedError struct {
	code  int
	err   error
	usage bool // a command-line mistake: point at --help
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &codedError{code: code, err: err}
}

// usageErrorf reports a command-line mistake (exit 2, pointing at --help).
func usageErrorf(format string, a ...any) error {
	return &codedError{code: exitUsage, err: fmt.Errorf(format, a...), usage: true}
}

// exitCode picks the exit code for err: an explicit one if set, else by
// what the error wraps.
func exitCode(err error) int {
	var ee *codedError
	var le *engine.LockedError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &le):
		return exitLocked
	case errors.Is(err, engine.ErrInvalid):
		return exitUsage
	case errors.Is(err, chunkstore.ErrChecksum), errors.Is(err, chunkstore.ErrNotFound):
		return exitDamaged
	case errors.Is(err, engine.ErrNotFound):
		return exitNotFound
	case strings.HasPrefix(err.Error(), "unknown command"),
		strings.HasPrefix(err.Error(), "unknown flag"),
		strings.HasPrefix(err.Error(), "unknown shorthand flag"):
		return exitUsage
	}
	return exitError
}

// exactArgs and the other argument checks make cobra's argument errors
// usage errors.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErrorf("%s: want %s, got %d argument(s)", cmd.Name(), what, len(args))
		}
		return nil
	}
}

func rangeArgs(lo, hi int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usageErrorf("%s: want %s, got %d argument(s)", cmd.Name(), what, len(args))
		}
		return nil
	}
}

func minArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usageErrorf("%s: want %s", cmd.Name(), what)
		}
		return nil
	}
}

// storeDir returns the absolute store directory: --store, else the
// default under $XDG_DATA_HOME or ~/.local/share.
func (g *globals) storeDir() (string, error) {
	dir := g.store
	if dir == "" {
		if x := os.Getenv("XDG_DATA_HOME"); x != "" && filepath.IsAbs(x) {
			dir = filepath.Join(x, "pfs")
		} else {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("no --store given and no home directory: %w", err)
			}
			dir = filepath.Join(home, ".local", "share", "pfs")
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("store %s: %w", dir, err)
	}
	return abs, nil
}

// logOff is a level above every message: no logging.
const logOff = slog.LevelError + 100

// logger returns the logger for the command, writing to w (stderr; for the
// mount daemon stderr is STORE/pfs.log).
func (g *globals) logger(w io.Writer, def slog.Level) (*slog.Logger, error) {
	lvl := def
	if g.logLevel != "" {
		if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
			return nil, usageErrorf("--log-level %q: want debug, info, warn or error", g.logLevel)
		}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})), nil
}

// engineFlags are the engine settings a command accepts. Sizes are
// checked while parsing; the rest by Config.Validate before the store is
// touched.
type engineFlags struct {
	memory    sizeFlag
	chunkSize sizeFlag
	workers   int
	compress  string
	backend   string
	s3        engine.S3Options
}

// add registers the flags; newStore adds the ones that only matter when
// the command may create the store.
func (f *engineFlags) add(fs *pflag.FlagSet, newStore bool) {
	def := engine.DefaultConfig("")
	fs.Var(&f.memory, "memory", fmt.Sprintf("cap on buffered and cached chunk data, e.g. 256MiB (default %s: 1/16 of RAM, 64MiB..1GiB)", formatSize(def.Memory)))
	fs.IntVar(&f.workers, "workers", def.Workers, "parallel flush/fetch workers")
	if newStore {
		fs.Var(&f.chunkSize, "chunk-size", "chunk size of a new store, a power of two from 64KiB to 64MiB (default 4MiB; an existing store keeps its own)")
		fs.StringVar(&f.compress, "compress", "", "compression of a new store: none or zstd (default none; an existing store keeps its own)")
		fs.StringVar(&f.backend, "backend", "", "where a new store keeps its parts: local (STORE/objects) or s3://bucket/prefix (default local)")
		fs.StringVar(&f.s3.Endpoint, "s3-endpoint", "", "S3 endpoint host[:port] for an s3:// backend (default AWS); credentials come from AWS_* variables")
		fs.StringVar(&f.s3.Region, "s3-region", "", "S3 region for an s3:// backend")
		fs.BoolVar(&f.s3.PathStyle, "s3-path-style", false, "use path-style S3 URLs (MinIO and most self-hosted services)")
		fs.BoolVar(&f.s3.NoSSL, "s3-no-ssl", false, "talk plain HTTP to the S3 endpoint")
	}
}

// config returns the engine configuration for dir, validated.
func (f *engineFlags) config(dir string) (engine.Config, error) {
	cfg := engine.DefaultConfig(dir)
	if f.memory.set {
		cfg.Memory = f.memory.v
	}
	if f.chunkSize.set {
		cfg.ChunkSize = f.chunkSize.v
	}
	cfg.Workers = f.workers
	cfg.Compression = f.compress
	cfg.Backend = f.backend
	cfg.S3 = f.s3
	if f.backend != "" && f.backend != "local" && !strings.HasPrefix(f.backend, "s3://") {
		return cfg, usageErrorf("--backend %q: want local or s3://bucket/prefix", f.backend)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, withCode(exitUsage, err)
	}
	return cfg, nil
}

// storeExists reports whether dir holds a pfs store (its format record).
func storeExists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "format.json"))
	return err == nil
}

// openOptions say how an offline command opens the store.
type openOptions struct {
	holder   string // e.g. "pfs put"
	create   bool   // create the store if it does not exist
	readOnly bool
	flags    *engineFlags
}

// openStore validates the configuration, then opens the store. Nothing on
// disk is touched before the configuration is known to be good. A store
// held by another process gives a message saying what to do instead.
func openStore(ctx context.Context, g *globals, o openOptions) (*engine.Engine, error) {
	dir, err := g.storeDir()
	if err != nil {
		return nil, err
	}
	cfg, err := o.flags.config(dir)
	if err != nil {
		return nil, err
	}
	// Offline commands log nothing unless asked: what goes wrong is in the
	// error they return, on one line.
	log, err := g.logger(os.Stderr, logOff)
	if err != nil {
		return nil, err
	}
	if !o.create && !storeExists(dir) {
		return nil, withCode(exitNotFound, fmt.Errorf("store %s: no pfs store there (create one with 'pfs put' or 'pfs mount')", dir))
	}
	cfg.Logger = log
	cfg.ReadOnly = o.readOnly
	cfg.Holder = o.holder
	return openRetry(ctx, g, cfg)
}

// openRetry opens the store; while another process holds it, it retries
// for up to --retry-lock.
func openRetry(ctx context.Context, g *globals, cfg engine.Config) (*engine.Engine, error) {
	// Keep the garbage collector honest about the cap: without a limit Go
	// lets the heap grow to twice the live data before collecting.
	debug.SetMemoryLimit(cfg.ProcessMemory())
	// The registry builds its tables and memtables in fresh heap: with the
	// heap in huge pages, an untar of the Go tree took 44 000-57 000 page
	// faults instead of 88 000-93 000, and 0.5-1 s less of the daemon's CPU.
	go hugepages.Watch(ctx)
	deadline := time.Now().Add(g.retryLock)
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		e, err := engine.Open(ctx, cfg)
		var le *engine.LockedError
		if err == nil {
			return e, nil
		}
		if !errors.As(err, &le) {
			if strings.Contains(err.Error(), cfg.Dir) {
				return nil, err // the engine already says which store
			}
			return nil, fmt.Errorf("open store %s: %w", cfg.Dir, err)
		}
		// The holder writes its pid into the lock file just after taking
		// the lock; give it a moment rather than report "pid 0".
		for i := 0; le.Pid == 0 && i < 10; i++ {
			time.Sleep(5 * time.Millisecond)
			le.Pid, le.Holder = engine.ReadLock(le.Dir)
		}
		if time.Now().Add(delay).After(deadline) {
			return nil, withCode(exitLocked, errors.New(lockedMessage(le, cfg.Dir)))
		}
		select {
		case <-ctx.Done():
			return nil, withCode(exitLocked, errors.New(lockedMessage(le, cfg.Dir)))
		case <-time.After(delay):
		}
	}
}

// lockedMessage says who holds the store and what to do instead.
func lockedMessage(le *engine.LockedError, dir string) string {
	if le.Dir != "" {
		dir = le.Dir
	}
	if mnt, ok := strings.CutPrefix(le.Holder, "mounted at "); ok {
		return fmt.Sprintf("store %s is mounted at %s by pid %d: use the files under %s, or run 'pfs unmount %s' first",
			dir, mnt, le.Pid, mnt, mnt)
	}
	holder := le.Holder
	if holder == "" {
		holder = "another process"
	}
	return fmt.Sprintf("store %s is in use by pid %d (%s): wait for it to finish, or pass --retry-lock 5m to wait",
		dir, le.Pid, holder)
}

// closeStore closes e and returns err, or the close error if err is nil.
// Close flushes everything, so its error matters as much as the command's.
func closeStore(e *engine.Engine, err error) error {
	if cerr := e.Close(); cerr != nil && err == nil {
		return fmt.Errorf("close store: %w", cerr)
	}
	return err
}

// storePath cleans a path in the store to the "/a/b" form.
func storePath(p string) string {
	return path.Clean("/" + p)
}

// lookup finds what a command-line argument names: a file ID (UUID) or a
// path in the store. It returns the attributes and the path (for an ID,
// the first path found that leads to it).
func lookup(ctx context.Context, e *engine.Engine, arg string) (*engine.Attr, string, error) {
	if id, err := uuid.Parse(arg); err == nil && len(arg) == 36 {
		a, err := e.ByID(ctx, id)
		if err == nil {
			p, perr := findPath(ctx, e, a.Ino)
			if perr != nil {
				p = arg
			}
			return a, p, nil
		}
		if !errors.Is(err, engine.ErrNotFound) {
			return nil, "", fmt.Errorf("%s: %w", arg, err)
		}
		// Not an ID in this store; it may still be a path.
	}
	p := storePath(arg)
	a, err := e.Resolve(ctx, p)
	if err != nil {
		if errors.Is(err, engine.ErrNotFound) {
			return nil, "", withCode(exitNotFound, fmt.Errorf("%s: no such file or file ID in the store", arg))
		}
		return nil, "", fmt.Errorf("%s: %w", arg, err)
	}
	return a, p, nil
}

var errFound = errors.New("found")

// findPath returns the first path, in walk order, of inode ino.
func findPath(ctx context.Context, e *engine.Engine, ino engine.Ino) (string, error) {
	var found string
	err := e.Walk(ctx, "/", func(p string, a *engine.Attr) error {
		if a.Ino == ino {
			found = p
			return errFound
		}
		return nil
	})
	if errors.Is(err, errFound) {
		return found, nil
	}
	if err == nil {
		err = engine.ErrNotFound
	}
	return "", err
}

func isDir(a *engine.Attr) bool     { return a.Mode&syscall.S_IFMT == syscall.S_IFDIR }
func isRegular(a *engine.Attr) bool { return a.Mode&syscall.S_IFMT == syscall.S_IFREG }
func isSymlink(a *engine.Attr) bool { return a.Mode&syscall.S_IFMT == syscall.S_IFLNK }
