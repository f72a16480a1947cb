package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pfs-project/pfs/internal/proc"
)

// kind is how a system is mounted.
type kind int

const (
	native    kind = iota // the work dir itself, no mount
	loopback              // bench/loopback, started and stopped by us
	pfs                   // pfs mount / pfs unmount; pfs runs the daemon
	gocryptfs             // gocryptfs -fg, started and stopped by us
)

// mountTimeout bounds a mount; unmountTimeout bounds an unmount, which for
// pfs includes writing out what it buffered.
const (
	mountTimeout   = 60 * time.Second
	unmountTimeout = 5 * time.Minute
)

// system is one column of the table: a filesystem on the shared disk.
type system struct {
	name string
	kind kind
	args []string // extra arguments for the daemon
	// only names the groups the system runs, if not all: pfs-64M is there
	// for W6, and its other rows (a 64 MiB cache under random I/O) took
	// 5 of a full run's 28.5 minutes against a 20-minute budget.
	only []string
	base string // this system's directory in the work dir
	back string // backing dir: loopback's source, pfs's store, gocryptfs's cipher dir
	mnt  string // where workloads run: the mount point, or back for native
	log  string // daemon output (loopback, gocryptfs; pfs logs to STORE/pfs.log)

	gw *s3Gateway // pfs-s3: the S3 server on loopback that holds the parts

	// While mounted. daemon is set for the daemons we start ourselves.
	mounted bool
	pid     int
	daemon  *exec.Cmd
	exited  chan struct{} // closed once daemon has been waited for

	hwm    int64 // VmHWM (bytes) of the W1 daemon, until W2 records W6
	failed error // the first failure; the system sits out the rest of the run
}

func newSystem(name, work string) *system {
	s := &system{name: name, base: filepath.Join(work, name)}
	s.back = filepath.Join(s.base, "back")
	s.mnt = filepath.Join(s.base, "mnt")
	s.log = filepath.Join(s.base, "daemon.log")
	switch name {
	case "native":
		s.kind, s.mnt = native, s.back
	case "loopback-pt":
		s.kind = loopback
	case "loopback":
		s.kind, s.args = loopback, []string{"-passthrough=false"}
	case "pfs":
		s.kind = pfs
	case "pfs-64M":
		s.kind, s.args, s.only = pfs, []string{"--memory", "64MiB"}, []string{"W1", "W2"}
	case "pfs-s3":
		s.kind, s.gw = pfs, &s3Gateway{dir: filepath.Join(s.base, "s3data"), log: filepath.Join(s.base, "versitygw.log")}
	case "gocryptfs":
		s.kind = gocryptfs
	}
	return s
}

// setup creates the system's directories (and gocryptfs's config).
func (s *system) setup(ctx context.Context) error {
	for _, d := range []string{s.back, s.mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if s.gw != nil {
		// The server runs for the whole run, like a bucket would; only
		// the pfs daemon comes and goes between workloads.
		if err := s.gw.start(ctx); err != nil {
			return err
		}
		s.args = s.gw.pfsArgs()
	}
	if s.kind != gocryptfs {
		return nil
	}
	if err := os.WriteFile(s.passfile(), []byte("pfsbench\n"), 0o600); err != nil {
		return err
	}
	// -scryptn 10 only makes the key derivation at mount fast; it does not
	// change how data is encrypted.
	_, err := output(ctx, "gocryptfs", "-init", "-q", "-scryptn", "10", "-passfile", s.passfile(), s.back)
	return err
}

func (s *system) passfile() string { return filepath.Join(s.base, "passfile") }

// mount mounts the system and returns once it serves requests.
func (s *system) mount(ctx context.Context, cfg config, usr1 <-chan os.Signal) error {
	if s.mounted {
		return fmt.Errorf("%s: already mounted", s.name)
	}
	ctx, cancel := context.WithTimeout(ctx, mountTimeout)
	defer cancel()
	switch s.kind {
	case native:
	case pfs:
		args := append([]string{"mount", "--store", s.back}, s.args...)
		if _, err := output(ctx, cfg.pfsBin, append(args, s.mnt)...); err != nil {
			return err
		}
		pid, err := pfsPid(s.back)
		if err != nil {
			_ = forceUnmount(s.mnt)
			return err
		}
		s.pid = pid
	case loopback:
		args := append([]string{"-notify"}, s.args...)
		cmd := exec.Command(cfg.loopbackBin, append(args, s.mnt, s.back)...)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := s.start(cmd); err != nil {
			return err
		}
		ready := make(chan bool, 1)
		go func() {
			line, _ := bufio.NewReader(stdout).ReadString('\n')
			ready <- strings.TrimSpace(line) == "ready"
		}()
		select {
		case ok := <-ready:
			if !ok {
				return s.abortStart(fmt.Errorf("%s: loopback did not mount: %s", s.name, tail(s.log)))
			}
		case <-ctx.Done():
			return s.abortStart(fmt.Errorf("%s: mount: %w", s.name, ctx.Err()))
		}
	case gocryptfs:
		for len(usr1) > 0 { // a stale notification must not count
			<-usr1
		}
		cmd := exec.Command("gocryptfs", "-fg", "-q", "-passfile", s.passfile(),
			"-notifypid", strconv.Itoa(os.Getpid()), s.back, s.mnt)
		if err := s.start(cmd); err != nil {
			return err
		}
		select {
		case <-usr1:
		case <-s.exited:
			return s.abortStart(fmt.Errorf("%s: gocryptfs exited: %s", s.name, tail(s.log)))
		case <-ctx.Done():
			return s.abortStart(fmt.Errorf("%s: mount: %w", s.name, ctx.Err()))
		}
	}
	if s.kind != native && !isMounted(s.mnt) {
		err := fmt.Errorf("%s: not mounted at %s after mount", s.name, s.mnt)
		if s.daemon != nil {
			return s.abortStart(err)
		}
		return err
	}
	s.mounted = true
	return nil
}

// start starts a daemon of ours, in its own process group so that a ^C on
// the terminal reaches us and we unmount in order.
func (s *system) start(cmd *exec.Cmd) error {
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	cmd.Stderr = logf
	if cmd.Stdout == nil {
		cmd.Stdout = logf
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	s.daemon, s.pid, s.exited = cmd, cmd.Process.Pid, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	return nil
}

// abortStart undoes a start whose mount did not come up, and returns err.
func (s *system) abortStart(err error) error {
	_ = forceUnmount(s.mnt)
	_ = s.daemon.Process.Kill()
	<-s.exited
	s.daemon, s.pid = nil, 0
	return err
}

// unmount unmounts the system and waits until its daemon has exited. If
// the clean way fails it falls back to a lazy unmount and kills the daemon,
// and still reports the failure.
func (s *system) unmount(ctx context.Context, cfg config) error {
	if !s.mounted {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, unmountTimeout)
	defer cancel()
	var err error
	switch s.kind {
	case native:
	case pfs:
		if _, err = output(ctx, cfg.pfsBin, "unmount", s.mnt); err == nil {
			err = waitGone(ctx, s.pid)
		}
		if err != nil {
			_ = forceUnmount(s.mnt)
			if proc.Alive(s.pid) {
				_ = syscall.Kill(s.pid, syscall.SIGTERM)
			}
		}
	case loopback, gocryptfs:
		// Both unmount themselves on SIGTERM, but try once: twice, just
		// after fio, gocryptfs exited leaving its mount behind (probably
		// busy for a moment) and sat out the rest of the run. So unmount
		// first, retrying while busy; a daemon whose mount went away
		// exits by itself, and SIGTERM only makes sure.
		if uerr := unmountBusy(ctx, s.mnt); uerr == nil {
			select {
			case <-s.exited:
			case <-time.After(5 * time.Second):
			}
		}
		_ = s.daemon.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-ctx.Done():
			err = fmt.Errorf("%s: daemon did not exit after SIGTERM: %w", s.name, ctx.Err())
			_ = forceUnmount(s.mnt)
			_ = s.daemon.Process.Kill()
			<-s.exited
		}
		s.daemon = nil
	}
	s.mounted, s.pid = false, 0
	if err == nil && s.kind != native && isMounted(s.mnt) {
		err = fmt.Errorf("%s: still mounted at %s after unmount", s.name, s.mnt)
		_ = forceUnmount(s.mnt)
	}
	if err != nil {
		return fmt.Errorf("%s: unmount: %w", s.name, err)
	}
	return nil
}

// pfsPid reads the daemon's pid from the first line of STORE/lock.
func pfsPid(store string) (int, error) {
	b, err := os.ReadFile(filepath.Join(store, "lock"))
	if err != nil {
		return 0, fmt.Errorf("pfs daemon pid: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pfs daemon pid: %s/lock starts with %q", store, first)
	}
	return pid, nil
}

// waitGone waits for a process we did not start (and so cannot wait for)
// to exit: one that exited and waits to be reaped by init counts as gone
// (W3u once counted init's 1.4-1.7 s as unmount time). pfs unmount already
// waits for its daemon; this only confirms.
func waitGone(ctx context.Context, pid int) error {
	for proc.Alive(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("daemon %d still running: %w", pid, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// unmountBusy unmounts mnt, retrying for up to 10 s while it is busy.
func unmountBusy(ctx context.Context, mnt string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := syscall.Unmount(mnt, 0)
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// forceUnmount is the fallback after a failure: a lazy unmount detaches the
// mount even while something holds it open.
func forceUnmount(mnt string) error {
	if !isMounted(mnt) {
		return nil
	}
	return syscall.Unmount(mnt, syscall.MNT_DETACH)
}

// isMounted reports whether mnt is a mount point in our mount namespace.
func isMounted(mnt string) bool {
	for _, m := range mounts() {
		if m.point == mnt {
			return true
		}
	}
	return false
}

type mountEntry struct{ point, fstype, source string }

// mounts parses /proc/self/mountinfo: field 5 is the mount point, and the
// fstype and source follow the "-" separator.
func mounts() []mountEntry {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []mountEntry
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 7 {
			continue
		}
		i := 6
		for i < len(f) && f[i] != "-" {
			i++
		}
		if i+2 >= len(f) {
			continue
		}
		out = append(out, mountEntry{point: unescapeMount(f[4]), fstype: f[i+1], source: unescapeMount(f[i+2])})
	}
	return out
}

// unescapeMount undoes the kernel's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountOf returns the mount that holds path (the longest matching prefix).
func mountOf(path string) (mountEntry, error) {
	var best mountEntry
	for _, m := range mounts() {
		if (path == m.point || strings.HasPrefix(path, strings.TrimSuffix(m.point, "/")+"/")) && len(m.point) >= len(best.point) {
			best = m
		}
	}
	if best.point == "" {
		return best, errors.New("no mount holds " + path)
	}
	return best, nil
}

// procStatus returns a field of /proc/PID/status in bytes ("VmHWM").
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * kiB, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// procRchar returns the bytes a process has read (rchar in /proc/PID/io).
func procRchar(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/io: no rchar", pid)
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}
