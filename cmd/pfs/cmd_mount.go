package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pfs-project/pfs/engine"
	"github.com/pfs-project/pfs/fs"
)

// mountFlags are pfs mount's flags.
type mountFlags struct {
	ef         engineFlags
	readOnly   bool
	allowOther bool
	foreground bool
	debug      bool
	nonempty   bool
	notifyFD   int    // hidden: the daemon reports readiness on this fd
	pprof      string // serve net/http/pprof on this loopback address
}

func newMountCmd(g *globals) *cobra.Command {
	mf := &mountFlags{}
	cmd := &cobra.Command{
		Use:   "mount [flags] MOUNTPOINT",
		Short: "Mount the store at MOUNTPOINT",
		Long: `Mount the store at MOUNTPOINT, an existing empty directory, and serve it
with FUSE. By default pfs runs in the background: the command returns once
the filesystem is mounted (or fails with the reason), and the daemon logs to
STORE/pfs.log. With --foreground it serves until unmounted or interrupted
(SIGINT/SIGTERM unmount), logging to stderr.

'pfs unmount MOUNTPOINT' unmounts and waits until the daemon has written
everything durably. While mounted, the store is locked: the offline
commands (put, get, ls, rm, fsck) refuse to run on it.

As root pfs mounts directly; otherwise it needs fusermount3 (package
fuse3). Installed as /sbin/mount.pfs it also works from mount(8) and
/etc/fstab:

  /var/lib/pfs  /mnt/pfs  pfs  allow_other,memory=256MiB,noauto  0 0`,
		Example: `  pfs mount ~/pfs
  pfs mount --store /data/pfs --memory 512MiB --workers 8 /mnt/pfs
  pfs mount --foreground --debug /mnt/pfs`,
		Args: exactArgs(1, "MOUNTPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMount(cmd.Context(), g, mf, args[0])
		},
	}
	f := cmd.Flags()
	mf.ef.add(f, true)
	f.BoolVar(&mf.readOnly, "read-only", false, "mount read-only")
	f.BoolVar(&mf.allowOther, "allow-other", false, "let other users access the mount (needs user_allow_other in /etc/fuse.conf unless root)")
	f.BoolVarP(&mf.foreground, "foreground", "f", false, "stay in the foreground, log to stderr")
	f.BoolVar(&mf.debug, "debug", false, "log every FUSE request (implies --log-level debug)")
	f.BoolVar(&mf.nonempty, "nonempty", false, "mount over a non-empty directory (its contents are hidden while mounted)")
	f.StringVar(&mf.pprof, "pprof", "", "serve Go profiles (net/http/pprof) on this address, e.g. 127.0.0.1:6060, for performance work")
	f.IntVar(&mf.notifyFD, "notify-fd", 0, "")
	_ = f.MarkHidden("notify-fd")
	return cmd
}

func runMount(ctx context.Context, g *globals, mf *mountFlags, arg string) error {
	mnt, err := checkMountpoint(arg, mf.nonempty)
	if err != nil {
		return withCode(exitMount, err)
	}
	store, err := g.storeDir()
	if err != nil {
		return err
	}
	if err := checkOverlap(store, mnt); err != nil {
		return withCode(exitMount, err)
	}
	// Before the daemon's log is created in it: a mistyped --store must
	// not gain pfs files.
	if err := engine.CheckDir(store); err != nil {
		return err
	}
	cfg, err := mf.ef.config(store)
	if err != nil {
		return err
	}
	def := slog.LevelInfo
	if mf.debug {
		def = slog.LevelDebug
	}
	log, err := g.logger(os.Stderr, def)
	if err != nil {
		return err
	}
	if !mf.foreground {
		return daemonize(ctx, g, mf, store, mnt)
	}
	// In the daemon, report the outcome to the parent waiting in
	// daemonize: "ok", or the error and its exit code.
	notify := func(error) {}
	if mf.notifyFD > 0 {
		nameDaemon(log)
		syscall.CloseOnExec(mf.notifyFD) // fusermount3 must not inherit it
		w := os.NewFile(uintptr(mf.notifyFD), "notify")
		notify = func(err error) {
			msg := "ok\n"
			if err != nil {
				msg = fmt.Sprintf("err %d %s\n", exitCode(err), err)
			}
			_, _ = io.WriteString(w, msg)
			w.Close()
			notify = func(error) {}
		}
	}
	err = serve(ctx, g, mf, cfg, log, store, mnt, func(err error) { notify(err) })
	notify(err) // no-op if already notified
	return err
}

// nameDaemon names the daemon "pfs" for ps, top and the kernel's tracing:
// started as /proc/self/exe, it was called "exe". The name is the thread
// group leader's, which /proc/self/comm sets whichever thread writes it.
func nameDaemon(log *slog.Logger) {
	if err := os.WriteFile("/proc/self/comm", []byte("pfs"), 0); err != nil {
		log.Debug("cannot name the daemon", "err", err)
	}
}

// checkMountpoint returns the absolute mountpoint, after checking that it
// is an existing directory that is not already a mount point and, unless
// nonempty, is empty.
func checkMountpoint(arg string, nonempty bool) (string, error) {
	mnt, err := filepath.Abs(arg)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w", arg, err)
	}
	fi, err := os.Stat(mnt)
	switch {
	case errors.Is(err, syscall.ENOTCONN):
		return "", fmt.Errorf("mountpoint %s: transport endpoint is not connected (a mount whose daemon died? run 'pfs unmount %s')", mnt, mnt)
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("mountpoint %s: does not exist (create it with mkdir)", mnt)
	case err != nil:
		return "", fmt.Errorf("mountpoint %s: %w", mnt, unwrapPathError(err))
	case !fi.IsDir():
		return "", fmt.Errorf("mountpoint %s: not a directory", mnt)
	}
	if resolved, err := filepath.EvalSymlinks(mnt); err == nil {
		mnt = resolved
	}
	if m, ok, err := findMount(mnt); err != nil {
		return "", fmt.Errorf("mountpoint %s: %w", mnt, err)
	} else if ok {
		return "", fmt.Errorf("mountpoint %s: already mounted (%s from %s)", mnt, m.FSType, m.Source)
	}
	if !nonempty {
		d, err := os.Open(mnt)
		if err != nil {
			return "", fmt.Errorf("mountpoint %s: %w", mnt, unwrapPathError(err))
		}
		names, _ := d.Readdirnames(1)
		d.Close()
		if len(names) > 0 {
			return "", fmt.Errorf("mountpoint %s: not empty (pass --nonempty to mount over its contents)", mnt)
		}
	}
	return mnt, nil
}

// checkOverlap refuses a mountpoint that is the store, inside it or above
// it: the daemon would reach its own registry and objects through its own
// mount, and its first write would deadlock in the kernel.
func checkOverlap(store, mnt string) error {
	st := store
	if resolved, err := filepath.EvalSymlinks(store); err == nil {
		st = resolved
	} else if parent, err := filepath.EvalSymlinks(filepath.Dir(store)); err == nil {
		st = filepath.Join(parent, filepath.Base(store)) // a store not made yet
	}
	inside := func(a, b string) bool { return a == b || strings.HasPrefix(a, strings.TrimSuffix(b, "/")+"/") }
	switch {
	case inside(mnt, st):
		return fmt.Errorf("mountpoint %s: inside the store %s; mount it elsewhere", mnt, store)
	case inside(st, mnt):
		return fmt.Errorf("mountpoint %s: the store %s is inside it, and the mount would hide the store from its own daemon; mount it elsewhere", mnt, store)
	}
	return nil
}

// daemonize starts this program again as the mount daemon: in a new
// session, stdin /dev/null, stdout and stderr appended to STORE/pfs.log,
// and a pipe on fd 3 on which it reports "ok" once mounted or the error.
// It returns when the daemon has reported or died. If ctx ends first
// (Ctrl-C), the daemon gets SIGTERM: it gives up, or unmounts again.
func daemonize(ctx context.Context, g *globals, mf *mountFlags, store, mnt string) error {
	if err := os.MkdirAll(store, 0o700); err != nil {
		return fmt.Errorf("store %s: %w", store, unwrapPathError(err))
	}
	logPath := filepath.Join(store, "pfs.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("log %s: %w", logPath, unwrapPathError(err))
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	defer r.Close()

	args := []string{"mount", "--store", store, "--foreground", "--notify-fd", "3",
		"--workers", strconv.Itoa(mf.ef.workers)}
	if mf.ef.memory.set {
		args = append(args, "--memory", mf.ef.memory.String())
	}
	if mf.ef.chunkSize.set {
		args = append(args, "--chunk-size", mf.ef.chunkSize.String())
	}
	if mf.ef.compress != "" {
		args = append(args, "--compress", mf.ef.compress)
	}
	if mf.ef.backend != "" {
		args = append(args, "--backend", mf.ef.backend)
	}
	if s3 := mf.ef.s3; s3.Endpoint != "" || s3.Region != "" {
		args = append(args, "--s3-endpoint", s3.Endpoint, "--s3-region", s3.Region)
	}
	for _, b := range []struct {
		on   bool
		flag string
	}{
		{mf.readOnly, "--read-only"}, {mf.allowOther, "--allow-other"}, {mf.debug, "--debug"}, {mf.nonempty, "--nonempty"},
		{mf.ef.s3.PathStyle, "--s3-path-style"}, {mf.ef.s3.NoSSL, "--s3-no-ssl"},
	} {
		if b.on {
			args = append(args, b.flag)
		}
	}
	if mf.pprof != "" {
		args = append(args, "--pprof", mf.pprof)
	}
	if g.logLevel != "" {
		args = append(args, "--log-level", g.logLevel)
	}
	if g.retryLock > 0 {
		args = append(args, "--retry-lock", g.retryLock.String())
	}
	args = append(args, "--", mnt)

	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Args[0] = "pfs"
	cmd.Dir = "/" // do not keep the caller's directory busy
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	slog.New(slog.NewTextHandler(logf, nil)).Info("starting daemon", "store", store, "mountpoint", mnt)
	err = cmd.Start()
	w.Close() // the daemon has the only write end now
	if err != nil {
		return withCode(exitMount, fmt.Errorf("mount: start daemon: %w", err))
	}
	result := make(chan []byte, 1)
	go func() {
		msg, _ := io.ReadAll(r) // ends when the daemon closes fd 3 or exits
		result <- msg
	}()
	var msg []byte
	select {
	case msg = <-result:
	case <-ctx.Done():
		signal.Reset(syscall.SIGINT, syscall.SIGTERM) // a second Ctrl-C kills us
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-result
		_ = cmd.Wait()
		return fmt.Errorf("mount: %w", ctx.Err())
	}
	line := strings.TrimSpace(string(msg))
	switch {
	case line == "ok":
		_ = cmd.Process.Release()
		return nil
	case strings.HasPrefix(line, "err "):
		_ = cmd.Wait()
		code, text, _ := strings.Cut(strings.TrimPrefix(line, "err "), " ")
		c, err := strconv.Atoi(code)
		if err != nil || c == exitOK {
			c = exitMount
		}
		return &codedError{code: c, err: errors.New(text)}
	}
	status := "exited"
	if err := cmd.Wait(); err != nil {
		status = "exited: " + err.Error()
	}
	return withCode(exitMount, fmt.Errorf("mount: daemon %s before the mount was ready: see %s", status, logPath))
}

// serve opens the store, mounts it, calls ready, and serves until the
// filesystem is unmounted (by 'pfs unmount', fusermount3 -u, or a signal
// to this process). Then it closes the store, which makes every write
// durable, and returns. ctx (ended by SIGINT or SIGTERM) only matters
// until the mount is up: after that a signal unmounts cleanly instead.
func serve(ctx context.Context, g *globals, mf *mountFlags, cfg engine.Config, log *slog.Logger, store, mnt string, ready func(error)) error {
	if mf.pprof != "" {
		ln, err := net.Listen("tcp", mf.pprof)
		if err != nil {
			return fmt.Errorf("--pprof: %w", err)
		}
		go func() { _ = http.Serve(ln, nil) }() // net/http/pprof registers on the default mux
		defer ln.Close()
	}
	cfg.Logger = log
	cfg.ReadOnly = mf.readOnly
	cfg.Holder = "mounted at " + mnt
	e, err := openRetry(ctx, g, cfg)
	if err == nil && ctx.Err() != nil {
		err = closeStore(e, fmt.Errorf("mount: %w", ctx.Err()))
	}
	if err != nil {
		return err
	}
	srv, err := fs.Mount(e, mnt, fs.Options{
		ReadOnly:   mf.readOnly,
		AllowOther: mf.allowOther,
		Debug:      mf.debug,
		FsName:     store,
		Logger:     log,
	})
	if err != nil {
		if cerr := e.Close(); cerr != nil {
			log.Error("close store after failed mount", "err", cerr)
		}
		return withCode(exitMount, fmt.Errorf("mount %s at %s: %w", store, mnt, err))
	}
	log.Info("mounted", "store", store, "mountpoint", mnt, "pid", os.Getpid(),
		"workers", cfg.Workers, "memory", cfg.Memory, "read_only", mf.readOnly)
	ready(nil)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		for sig := range sigs {
			log.Info("unmounting on signal", "signal", sig.String())
			unmountOnSignal(srv, log, mnt)
		}
	}()
	srv.Wait()
	log.Info("unmounted; closing store", "mountpoint", mnt)
	if err := e.Close(); err != nil {
		log.Error("close store", "err", err)
		return fmt.Errorf("close store %s: %w", store, err)
	}
	log.Info("store closed; everything is durable", "store", store)
	return nil
}

// unmountOnSignal unmounts, retrying for a while if the mount is busy.
func unmountOnSignal(srv *fs.Server, log *slog.Logger, mnt string) {
	for try := 1; ; try++ {
		err := srv.Unmount()
		if err == nil {
			return
		}
		if try == 10 {
			log.Error("cannot unmount; still serving: close the files under the mountpoint, or run 'pfs unmount --lazy'",
				"mountpoint", mnt, "err", err)
			return
		}
		log.Warn("unmount failed, retrying", "mountpoint", mnt, "err", err)
		time.Sleep(time.Second)
	}
}
