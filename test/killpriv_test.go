package test

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestWriteDropsPrivileges: pfs asks the kernel to leave dropping a
// file's privileges to it (FUSE_HANDLE_KILLPRIV_V2), so that the kernel
// stops asking for security.capability before every write. A write or a
// truncate by a user without CAP_FSETID must then still clear setuid,
// setgid when group-executable, and the file's capabilities, and stat
// must show it at once; root's writes keep setuid and setgid.
func TestWriteDropsPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it sets file capabilities and acts as user nobody")
	}
	base := nobodyDir(t)
	mnt := filepath.Join(base, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(base, "store")
	mountAt(t, store, mnt, "--allow-other", "--debug")
	p := func(name string) string { return filepath.Join(mnt, name) }

	// The daemon logs every request with --debug: for 50 writes of root
	// to an ordinary file the kernel asks for security.capability once
	// (then it marks the inode as having nothing to drop), not before
	// each write.
	f, err := os.Create(p("plain"))
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(filepath.Join(store, "pfs.log"))
	if err != nil {
		t.Fatal(err)
	}
	writes, asks := 0, 0
	for _, line := range strings.Split(string(log), "\n") {
		switch {
		case strings.Contains(line, ": WRITE "):
			writes++
		case strings.Contains(line, ": GETXATTR ") && strings.Contains(line, "security.capability"):
			asks++
		}
	}
	if writes < 50 || asks > 1 {
		t.Errorf("daemon log: %d WRITE requests, %d GETXATTR security.capability; want at least 50 and at most 1", writes, asks)
	}

	// A VFS_CAP_REVISION_2 value with CAP_NET_BIND_SERVICE permitted and
	// effective, as setcap writes it.
	capValue := make([]byte, 20)
	binary.LittleEndian.PutUint32(capValue[0:], 0x02000000|1)
	binary.LittleEndian.PutUint32(capValue[4:], 1<<10)
	hasCap := func(name string) bool {
		_, err := unix.Getxattr(p(name), "security.capability", nil)
		if err != nil && !errors.Is(err, unix.ENODATA) {
			t.Fatalf("getxattr %s: %v", name, err)
		}
		return err == nil
	}
	setup := func(name string, mode uint32) {
		t.Helper()
		if err := os.WriteFile(p(name), []byte("data\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p(name), 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Chmod(p(name), mode); err != nil {
			t.Fatal(err)
		}
		if err := unix.Setxattr(p(name), "security.capability", capValue, 0); err != nil {
			t.Fatalf("setxattr security.capability on %s: %v", name, err)
		}
		if got := lstatMode(t, p(name)); got != mode || !hasCap(name) {
			t.Fatalf("%s set up as %o with a capability: mode %o, capability %v", name, mode, got, hasCap(name))
		}
	}
	setup("written", 0o6755)
	setup("truncated", 0o6755)
	setup("lock-marker", 0o2745) // setgid without group execute stays
	setup("root-writes", 0o6755)

	for _, c := range []struct{ name, script string }{
		{"written", `echo more >> "$1"/written`},
		{"truncated", `: > "$1"/truncated`},
		{"lock-marker", `echo more >> "$1"/lock-marker`},
	} {
		if _, stderr, code := asNobody(t, c.script, mnt); code != 0 {
			t.Fatalf("as nobody: %s: exit %d: %s", c.script, code, stderr)
		}
	}
	// Root keeps setuid and setgid; capabilities go on any write, as
	// Linux's own file systems do.
	if f, err = os.OpenFile(p("root-writes"), os.O_WRONLY|os.O_APPEND, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("root's\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	check := func(when string) {
		t.Helper()
		for name, want := range map[string]struct {
			mode uint32
			cap  bool
		}{
			"written":     {0o755, false},
			"truncated":   {0o755, false},
			"lock-marker": {0o2745, false},
			"root-writes": {0o6755, false},
		} {
			if got := lstatMode(t, p(name)); got != want.mode || hasCap(name) != want.cap {
				t.Errorf("%s: %s: mode %o, capability %v; want %o, %v", when, name, got, hasCap(name), want.mode, want.cap)
			}
		}
	}
	check("after the writes")

	unmountPfs(t, mnt)
	mountAt(t, store, mnt)
	check("after a remount")
}

// lstatMode returns path's permission bits from a statx(2) that asks for
// the mode only, as stat -c %a does: the kernel answers it from its cache
// unless the mode was invalidated (lstat asks for size and times too, and
// a write invalidates those).
func lstatMode(t *testing.T, path string) uint32 {
	t.Helper()
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MODE, &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Mode) & 07777
}
