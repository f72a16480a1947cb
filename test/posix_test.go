package test

import (
	"maps"
	"slices"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixSkip names the posixtest cases that cannot pass, each with the
// reason. fs/mount_test.go has the same list for the in-process run.
var posixSkip = map[string]string{
	"FcntlFlockLocksFile": "expects two F_SETLK from one process on two descriptors of one file to " +
		"conflict, i.e. locks per open file (OFD semantics). POSIX record locks belong to the process, so " +
		"the second lock succeeds on ext4 and tmpfs too; go-fuse's loopback passes only because it " +
		"forwards to F_OFD_SETLK. pfs leaves locking to the kernel, which is POSIX-correct.",
}

// TestPosix runs every case of go-fuse's POSIX conformance suite against
// the built binary, each on a fresh store and mount.
func TestPosix(t *testing.T) {
	for _, name := range slices.Sorted(maps.Keys(posixtest.All)) {
		fn := posixtest.All[name]
		t.Run(name, func(t *testing.T) {
			if why, ok := posixSkip[name]; ok {
				t.Skip(why)
			}
			mnt, _ := mountPfs(t)
			fn(t, mnt)
		})
	}
}
