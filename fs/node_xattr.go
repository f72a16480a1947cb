package fs

import (
	"context"
	"syscall"
)

// Getxattr copies the value of attr into dest. An empty dest asks for the
// size (getxattr(2) with size 0); a dest too small is ERANGE.
func (n *Node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
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
	ctx = uninterruptible(ctx)
	return toErrno(n.fsys.e.SetXattr(ctx, n.ino, attr, data, flags))
}

// Removexattr removes attr, or returns ENODATA.
func (n *Node) Removexattr(ctx context.Context, attr string) syscall.Errno {
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
