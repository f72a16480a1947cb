package fs

import (
	"context"
	"strings"
	"syscall"
)

// served reports whether pfs keeps attribute name. The kernel enforces
// POSIX ACLs (system.posix_acl_*) only for a FUSE file system that asks it
// to and hands their bytes to the file system otherwise; pfs does not ask,
// so it refuses system.* rather than store ACLs that nothing enforces.
// Likewise the security.* labels of Linux security modules (SELinux,
// Smack, IMA) mean nothing on a FUSE mount, which policies label as a
// whole. security.capability stays: the kernel reads it at exec and for
// its setuid-clearing on write. The refusal is EOPNOTSUPP, as from a file
// system mounted noacl, and it is also what makes ls -l cheap: coreutils
// remembers a device that answers EOPNOTSUPP and stops asking for each
// file's ACL and security label, which would otherwise be two round trips
// to the daemon per listed file.
func served(name string) bool {
	switch {
	case strings.HasPrefix(name, "system."):
		return false
	case strings.HasPrefix(name, "security."):
		return name == "security.capability"
	}
	return true
}

// Getxattr copies the value of attr into dest. An empty dest asks for the
// size (getxattr(2) with size 0); a dest too small is ERANGE.
func (n *Node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !served(attr) {
		return 0, syscall.EOPNOTSUPP
	}
	ctx = uninterruptible(ctx)
	v, err := n.fsys.e.GetXattr(ctx, n.ino, attr)
	if err != nil {
		return 0, toErrno(err)
	}
	return copyOut(dest, v)
}

// Setxattr sets attr; flags are XATTR_CREATE and XATTR_REPLACE, which the
// engine implements.
func (n *Node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if !served(attr) {
		return syscall.EOPNOTSUPP
	}
	ctx = uninterruptible(ctx)
	return toErrno(n.fsys.e.SetXattr(ctx, n.ino, attr, data, flags))
}

// Removexattr removes attr, or returns ENODATA.
func (n *Node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if !served(attr) {
		return syscall.EOPNOTSUPP
	}
	ctx = uninterruptible(ctx)
	return toErrno(n.fsys.e.RemoveXattr(ctx, n.ino, attr))
}

// Listxattr copies the NUL-terminated names of n's attributes into dest,
// with the same size rules as Getxattr.
func (n *Node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	ctx = uninterruptible(ctx)
	names, err := n.fsys.e.ListXattr(ctx, n.ino)
	if err != nil {
		return 0, toErrno(err)
	}
	var buf []byte
	for _, name := range names {
		if !served(name) { // stored by an older pfs
			continue
		}
		buf = append(buf, name...)
		buf = append(buf, 0)
	}
	return copyOut(dest, buf)
}

// copyOut implements the size protocol of getxattr(2) and listxattr(2).
func copyOut(dest, v []byte) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}
