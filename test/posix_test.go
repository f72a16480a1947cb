package test

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/posixtest"
	"golang.org/x/sys/unix"
)

// posixInstead replaces the posixtest cases whose expectation is not
// POSIX's with a test of what POSIX says; README.md lists them.
var posixInstead = map[string]func(t *testing.T, mnt string){
	// FcntlFlockLocksFile expects two F_SETLK from one process on two
	// descriptors of one file to conflict: locks per open file (OFD
	// semantics). POSIX record locks belong to the process, so the second
	// lock succeeds on ext4 and tmpfs too; go-fuse's loopback passes only
	// because it forwards to F_OFD_SETLK. pfs leaves locking to the
	// kernel, which is POSIX-correct.
	"FcntlFlockLocksFile": recordLocks,
}

// TestPosix runs every case of go-fuse's POSIX conformance suite against
// the built binary, each on a fresh store and mount.
func TestPosix(t *testing.T) {
	for _, name := range slices.Sorted(maps.Keys(posixtest.All)) {
		fn := posixtest.All[name]
		if alt, ok := posixInstead[name]; ok {
			fn = alt
		}
		t.Run(name, func(t *testing.T) {
			mnt, _ := mountPfs(t)
			fn(t, mnt)
		})
	}
}

// recordLocks checks fcntl locks on a mount as POSIX and Linux define
// them: record locks (F_SETLK) belong to the process, so a second lock
// from the same process through another descriptor succeeds while another
// process is refused until the lock is released; open file description
// locks (F_OFD_SETLK) belong to the descriptor and conflict between two
// opens in one process.
func recordLocks(t *testing.T, mnt string) {
	load := crashloadBin(t)
	p := filepath.Join(mnt, "locked")
	if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	open := func() *os.File {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	f1, f2 := open(), open()
	wr := func(f *os.File, cmd int) error {
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		return unix.FcntlFlock(f.Fd(), cmd, &lk)
	}
	other := func() int {
		_, stderr, code := runTimeout(t, time.Minute, load, "lock", p)
		if code != 0 && code != 4 {
			t.Fatalf("crashload lock: exit %d: %s", code, stderr)
		}
		return code
	}

	if err := wr(f1, unix.F_SETLK); err != nil {
		t.Fatalf("F_SETLK write lock: %v", err)
	}
	if err := wr(f2, unix.F_SETLK); err != nil {
		t.Errorf("F_SETLK through a second descriptor of the same process: %v; want success (POSIX locks are per process)", err)
	}
	if code := other(); code != 4 {
		t.Errorf("F_SETLK from another process while this one holds a write lock: exit %d, want 4 (a conflict)", code)
	}
	unlock := unix.Flock_t{Type: unix.F_UNLCK}
	if err := unix.FcntlFlock(f1.Fd(), unix.F_SETLK, &unlock); err != nil {
		t.Fatalf("F_SETLK unlock: %v", err)
	}
	if code := other(); code != 0 {
		t.Errorf("F_SETLK from another process after the unlock: exit %d, want 0 (locked)", code)
	}

	f3, f4 := open(), open()
	if err := wr(f3, unix.F_OFD_SETLK); err != nil {
		t.Fatalf("F_OFD_SETLK: %v", err)
	}
	if err := wr(f4, unix.F_OFD_SETLK); !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
		t.Errorf("F_OFD_SETLK through a second open file description: %v; want EAGAIN (OFD locks are per open file)", err)
	}
}
