package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/pfs-project/pfs/engine"
	"github.com/pfs-project/pfs/internal/proc"
)

func newUnmountCmd() *cobra.Command {
	var lazy bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:     "unmount [flags] MOUNTPOINT",
		Aliases: []string{"umount"},
		Short:   "Unmount a pfs mount and wait until its data is durable",
		Long: `Unmount the pfs filesystem at MOUNTPOINT, then wait until its daemon has
flushed everything to the store and exited (up to --timeout). If files
under MOUNTPOINT are in use, the error names the processes using them.

--lazy detaches the mount at once even while it is in use; the daemon
finishes when the last file under it is closed, and unmount waits for that
too (up to --timeout; --timeout 0 returns at once).`,
		Example: `  pfs unmount ~/pfs
  pfs unmount --lazy /mnt/pfs`,
		Args: exactArgs(1, "MOUNTPOINT"),
		RunE: func(_ *cobra.Command, args []string) error {
			return runUnmount(args[0], lazy, timeout)
		},
	}
	cmd.Flags().BoolVarP(&lazy, "lazy", "z", false, "detach now, even if busy (umount -l)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the daemon to finish writing and exit")
	return cmd
}

func runUnmount(arg string, lazy bool, timeout time.Duration) error {
	mnt, err := filepath.Abs(arg)
	if err != nil {
		return withCode(exitUnmount, fmt.Errorf("unmount %s: %w", arg, err))
	}
	m, ok, err := findMount(mnt)
	if err == nil && !ok {
		// Maybe a path through a symlink; EvalSymlinks fails on a dead mount,
		// which findMount has then already matched by its literal path.
		if resolved, rerr := filepath.EvalSymlinks(mnt); rerr == nil && resolved != mnt {
			mnt = resolved
			m, ok, err = findMount(mnt)
		}
	}
	switch {
	case err != nil:
		return withCode(exitUnmount, fmt.Errorf("unmount %s: %w", mnt, err))
	case !ok:
		return withCode(exitUnmount, fmt.Errorf("unmount %s: not mounted", mnt))
	case m.FSType != pfsFSType:
		return withCode(exitUnmount, fmt.Errorf("unmount %s: not a pfs mount (it is %s from %s)", mnt, m.FSType, m.Source))
	}

	// Find the daemon before unmounting: afterwards it releases the lock.
	// A pidfd pins the process, so a reused pid cannot fool the wait.
	pid := daemonPid(m.Source, mnt)
	pidfd := -1
	if pid > 0 {
		if fd, err := unix.PidfdOpen(pid, 0); err == nil {
			pidfd = fd
			defer unix.Close(fd)
		}
	}

	if err := unmount(mnt, lazy); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return withCode(exitBusy, fmt.Errorf("unmount %s: %s", mnt, busyMessage(mnt)))
		}
		return withCode(exitUnmount, fmt.Errorf("unmount %s: %w", mnt, err))
	}
	if pid <= 0 || timeout == 0 {
		return nil
	}
	if lazy && !waitExit(pid, pidfd, 2*time.Second) {
		fmt.Fprintf(os.Stderr, "pfs: %s detached; waiting for the daemon (pid %d) to exit, which it does once the last file under it is closed\n", mnt, pid)
	}
	if !waitExit(pid, pidfd, timeout) {
		return withCode(exitUnmount, fmt.Errorf("unmount %s: unmounted, but the daemon (pid %d) has not exited after %s, so its data may not be durable yet: see %s",
			mnt, pid, timeout, filepath.Join(m.Source, "pfs.log")))
	}
	return nil
}

// daemonPid returns the pid of the daemon serving mnt, from the store's
// lock file (engine.ReadLock), or 0 if the lock is not held for this mount.
func daemonPid(store, mnt string) int {
	pid, holder := engine.ReadLock(store)
	if pid <= 0 {
		return 0
	}
	if at, ok := strings.CutPrefix(holder, "mounted at "); ok && at != mnt {
		return 0 // the store is mounted elsewhere now; not our daemon
	}
	return pid
}

// unmount detaches the filesystem: directly as root, else via fusermount3.
func unmount(mnt string, lazy bool) error {
	if os.Geteuid() == 0 {
		flags := 0
		if lazy {
			flags = unix.MNT_DETACH
		}
		if err := unix.Unmount(mnt, flags); err != nil {
			return err
		}
		return nil
	}
	prog, err := exec.LookPath("fusermount3")
	if err != nil {
		if prog, err = exec.LookPath("fusermount"); err != nil {
			return errors.New("fusermount3 not found (install fuse3)")
		}
	}
	args := []string{"-u"}
	if lazy {
		args = append(args, "-z")
	}
	var stderr bytes.Buffer
	cmd := exec.Command(prog, append(args, "--", mnt)...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "busy") {
			return unix.EBUSY
		}
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("%s: %s", filepath.Base(prog), msg)
	}
	return nil
}

// waitExit waits up to d for process pid to exit; it reports whether it
// did. With a pidfd it polls that; otherwise it watches /proc/pid (a
// zombie counts as exited: its data is written).
func waitExit(pid, pidfd int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	if pidfd >= 0 {
		for {
			left := time.Until(deadline)
			if left <= 0 {
				return false
			}
			fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, int(min(left, time.Hour).Milliseconds())+1)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				break // fall back to /proc
			}
			if n > 0 {
				return true
			}
		}
	}
	for {
		if !proc.Alive(pid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// busyMessage names the processes that keep mnt busy: open files, working
// or root directories, and mapped files under mnt.
func busyMessage(mnt string) string {
	holders := mountUsers(mnt)
	if len(holders) == 0 {
		return fmt.Sprintf("busy (no process found using it; a mount below it?): try 'pfs unmount --lazy %s'", mnt)
	}
	return fmt.Sprintf("busy: in use by %s: stop them, or run 'pfs unmount --lazy %s'", strings.Join(holders, ", "), mnt)
}

// mountUsers returns "pid N (comm)" for each process using a path under mnt.
func mountUsers(mnt string) []string {
	under := func(p string) bool {
		p = strings.TrimSuffix(p, " (deleted)")
		return p == mnt || strings.HasPrefix(p, mnt+"/")
	}
	procs, _ := os.ReadDir("/proc")
	var pids []int
	for _, d := range procs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		dir := "/proc/" + d.Name()
		uses := false
		for _, l := range []string{"cwd", "root", "exe"} {
			if t, err := os.Readlink(dir + "/" + l); err == nil && under(t) {
				uses = true
			}
		}
		if !uses {
			fds, _ := os.ReadDir(dir + "/fd")
			for _, fd := range fds {
				if t, err := os.Readlink(dir + "/fd/" + fd.Name()); err == nil && under(t) {
					uses = true
					break
				}
			}
		}
		if !uses {
			if maps, err := os.ReadFile(dir + "/maps"); err == nil {
				for _, line := range strings.Split(string(maps), "\n") {
					if i := strings.IndexByte(line, '/'); i >= 0 && under(line[i:]) {
						uses = true
						break
					}
				}
			}
		}
		if uses {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	out := make([]string, len(pids))
	for i, pid := range pids {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		out[i] = fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm)))
	}
	return out
}
