package fs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// capabilityXattr holds a file's capabilities (setcap(8)); a write by an
// unprivileged caller removes it, as it clears setuid.
const capabilityXattr = "security.capability"

// killPrivFS answers the requests that, with FUSE_HANDLE_KILLPRIV_V2, tell
// the file system to drop a file's privileges: a WRITE or an O_TRUNC open
// by a caller without CAP_FSETID. Without that capability the kernel does
// it itself, and to find out whether there is a security.capability to
// drop it sends a GETXATTR before every write(2): a second round trip per
// 4 KiB random write, and one per file extracted from a tarball. The
// kernel still decides when privileges go (the request's flag); this
// layer does the dropping, by NodeId and through the node file system's
// own requests, before it passes the request on. Truncates and chowns
// carry FATTR_KILL_SUIDGID in their SETATTR, which Node.Setattr handles.
type killPrivFS struct {
	fuse.RawFileSystem
	srv *fuse.Server // set by Init, before any request
}

func (k *killPrivFS) Init(srv *fuse.Server) {
	k.srv = srv
	k.RawFileSystem.Init(srv)
}

func (k *killPrivFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	if in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0 {
		if st := k.killPriv(cancel, &in.InHeader); !st.Ok() {
			return 0, st
		}
	}
	return k.RawFileSystem.Write(cancel, in, data)
}

func (k *killPrivFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	if in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0 {
		if st := k.killPriv(cancel, &in.InHeader); !st.Ok() {
			return 0, st
		}
	}
	return k.RawFileSystem.Writev(cancel, in, data)
}

func (k *killPrivFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if in.Mode&fuse.OPEN_KILL_SUIDGID != 0 {
		if st := k.killPriv(cancel, &in.InHeader); !st.Ok() {
			return st
		}
	}
	return k.RawFileSystem.Open(cancel, in, out)
}

// killPriv clears the node's setuid bit, its setgid bit when it is group
// executable, and its security.capability, as the kernel's
// file_remove_privs does. The common case, a file with none of them, costs
// one attribute read (the capability check hits the engine's cache of
// files without extended attributes).
func (k *killPrivFS) killPriv(cancel <-chan struct{}, h *fuse.InHeader) fuse.Status {
	var a fuse.AttrOut
	if st := k.RawFileSystem.GetAttr(cancel, &fuse.GetAttrIn{InHeader: *h}, &a); !st.Ok() {
		return st
	}
	if m := dropSuid(a.Mode); m != a.Mode {
		in := &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: *h, Valid: fuse.FATTR_MODE, Mode: m}}
		if st := k.RawFileSystem.SetAttr(cancel, in, &a); !st.Ok() {
			return st
		}
		// The kernel keeps the mode it cached (a write invalidates only
		// size and times): tell it to ask again. Attributes only (offset
		// -1), so no page lock is taken while this request is in flight.
		k.srv.InodeNotify(h.NodeId, -1, 0)
	}
	switch _, st := k.RawFileSystem.GetXAttr(cancel, h, capabilityXattr, nil); {
	case st.Ok():
		if st := k.RawFileSystem.RemoveXAttr(cancel, h, capabilityXattr); !st.Ok() && st != fuse.ENOATTR {
			return st
		}
	case st != fuse.ENOATTR:
		return st
	}
	return fuse.OK
}

// dropSuid returns mode without setuid and, if group-executable, without
// setgid (a setgid file without group execute is a mandatory-locking
// marker, which a write leaves alone).
func dropSuid(mode uint32) uint32 {
	m := mode &^ syscall.S_ISUID
	if m&syscall.S_IXGRP != 0 {
		m &^= syscall.S_ISGID
	}
	return m
}
