package fs

import (
	"context"
	"errors"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/pfs-project/pfs/engine"
)

// Lookup finds name in directory n.
func (n *Node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	a, err := n.fsys.e.Lookup(ctx, n.ino, name)
	if err != nil {
		return nil, toErrno(err)
	}
	return n.newChild(ctx, a, out), 0
}

// owner returns the owner of a new child of n made by the caller, and its
// mode. The kernel has already applied the caller's umask to mode (go-fuse
// does not ask for FUSE_DONT_MASK) and stripped setgid where the caller may
// not set it (mode_strip_sgid); what is left is the file system's part of
// inode_init_owner: in a setgid directory the child takes the directory's
// group, and a subdirectory inherits the setgid bit.
func (n *Node) owner(ctx context.Context, mode uint32) (uid, gid, newMode uint32, errno syscall.Errno) {
	uid, gid = caller(ctx)
	dir, err := n.fsys.e.GetAttr(ctx, n.ino)
	if err != nil {
		return 0, 0, 0, toErrno(err)
	}
	if dir.Mode&syscall.S_ISGID != 0 {
		gid = dir.Gid
		if mode&syscall.S_IFMT == syscall.S_IFDIR {
			mode |= syscall.S_ISGID
		}
	}
	return uid, gid, mode, 0
}

// Create makes and opens a regular file.
func (n *Node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	ctx = uninterruptible(ctx)
	uid, gid, mode, errno := n.owner(ctx, mode|syscall.S_IFREG)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	a, err := n.fsys.e.Create(ctx, n.ino, name, mode, uid, gid, 0)
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	child := n.newChild(ctx, a, out)
	cn := child.Operations().(*Node)
	fh, fuseFlags, errno := cn.open(ctx)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return child, fh, fuseFlags, 0
}

// Mknod makes a fifo, socket, device or regular file; the type is in
// mode's S_IFMT bits.
func (n *Node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	uid, gid, mode, errno := n.owner(ctx, mode)
	if errno != 0 {
		return nil, errno
	}
	a, err := n.fsys.e.Create(ctx, n.ino, name, mode, uid, gid, dev)
	if err != nil {
		return nil, toErrno(err)
	}
	return n.newChild(ctx, a, out), 0
}

// Mkdir makes a directory.
func (n *Node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	uid, gid, mode, errno := n.owner(ctx, mode&07777|syscall.S_IFDIR)
	if errno != 0 {
		return nil, errno
	}
	a, err := n.fsys.e.Mkdir(ctx, n.ino, name, mode, uid, gid)
	if err != nil {
		return nil, toErrno(err)
	}
	return n.newChild(ctx, a, out), 0
}

// Symlink makes a symlink name pointing at target.
func (n *Node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	uid, gid, _, errno := n.owner(ctx, syscall.S_IFLNK|0777)
	if errno != 0 {
		return nil, errno
	}
	a, err := n.fsys.e.Symlink(ctx, n.ino, name, target, uid, gid)
	if err != nil {
		return nil, toErrno(err)
	}
	return n.newChild(ctx, a, out), 0
}

// Link adds the name to the existing inode target. newChild returns the
// Inode go-fuse already has for it.
func (n *Node) Link(ctx context.Context, target fusefs.InodeEmbedder, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	tn, ok := target.EmbeddedInode().Operations().(*Node)
	if !ok {
		return nil, syscall.EXDEV
	}
	a, err := n.fsys.e.Link(ctx, tn.ino, n.ino, name)
	if err != nil {
		return nil, toErrno(err)
	}
	return n.newChild(ctx, a, out), 0
}

// Unlink removes a non-directory. An open file stays readable and
// writable until its last Release; the engine sees to that.
func (n *Node) Unlink(ctx context.Context, name string) syscall.Errno {
	ctx = uninterruptible(ctx)
	return toErrno(n.fsys.e.Unlink(ctx, n.ino, name))
}

// Rmdir removes an empty directory.
func (n *Node) Rmdir(ctx context.Context, name string) syscall.Errno {
	ctx = uninterruptible(ctx)
	return toErrno(n.fsys.e.Rmdir(ctx, n.ino, name))
}

// Rename implements rename(2) and renameat2(2) with RENAME_NOREPLACE and
// RENAME_EXCHANGE. On success go-fuse moves the Inode in its tree, so
// open files and directories follow the rename.
func (n *Node) Rename(ctx context.Context, name string, newParent fusefs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	ctx = uninterruptible(ctx)
	np, ok := newParent.EmbeddedInode().Operations().(*Node)
	if !ok {
		return syscall.EXDEV
	}
	if flags&^uint32(engine.RenameNoReplace|engine.RenameExchange) != 0 {
		return syscall.EINVAL // RENAME_WHITEOUT is for overlayfs
	}
	return toErrno(n.fsys.e.Rename(ctx, n.ino, name, np.ino, newName, flags))
}

// OpendirHandle opens a directory for listing. The handle pages through
// the engine; see dirHandle.
//
// FOPEN_CACHE_DIR lets the kernel keep the listing in its page cache, and
// FOPEN_KEEP_CACHE keeps it from one open to the next (without it every
// opendir drops it). The kernel drops it itself when the directory
// changes, which every create, unlink and rename through this mount does,
// and only this mount changes the store. find or ls -lR of an unchanged
// tree then costs no READDIR round trips.
func (n *Node) OpendirHandle(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{n: n}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// dirPage is how many entries dirHandle fetches from the engine at once.
const dirPage = 256

// dirHandle lists a directory without loading it: it holds one page of
// entries and resumes the engine's name-ordered listing after the last
// name it returned. Offsets count entries: "." is 0, ".." is 1, and the
// i-th engine entry is i+2; each entry's Off is its offset plus one, the
// position after it.
//
// Seeking (telldir/seekdir, or the kernel re-reading after a short
// getdents buffer that go-fuse's own replay does not cover) restarts from
// the nearest mark: the name at every dirPage-th offset, remembered as the
// listing passes it. So a seek reads at most dirPage-1 entries beyond the
// mark, and a handle remembers one name per page, not every name.
//
// go-fuse calls Readdirent and Seekdir of one handle under the handle's
// lock, one at a time, so dirHandle needs none.
type dirHandle struct {
	n     *Node
	off   uint64            // offset of the next entry
	after string            // name of the entry before off; "" at the start
	page  []engine.Dirent   // fetched entries from off on
	eof   bool              // the engine has no entries after page
	marks map[uint64]string // offset → name of the entry before it, every dirPage entries
}

// Readdirent returns the next entry, or nil at the end.
func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	ctx = uninterruptible(ctx)
	switch d.off {
	case 0:
		d.off = 1
		return &fuse.DirEntry{Name: ".", Ino: uint64(d.n.ino), Mode: syscall.S_IFDIR, Off: 1}, 0
	case 1:
		d.off = 2
		ino := uint64(d.n.ino)
		if _, parent := d.n.Parent(); parent != nil {
			ino = parent.StableAttr().Ino
		}
		return &fuse.DirEntry{Name: "..", Ino: ino, Mode: syscall.S_IFDIR, Off: 2}, 0
	}
	de, errno := d.next(ctx)
	if errno != 0 || de == nil {
		return nil, errno
	}
	return &fuse.DirEntry{Name: de.Name, Ino: uint64(de.Ino), Mode: de.Mode & syscall.S_IFMT, Off: d.off}, 0
}

// next returns the next engine entry and advances past it, or nil at the
// end.
func (d *dirHandle) next(ctx context.Context) (*engine.Dirent, syscall.Errno) {
	if len(d.page) == 0 {
		if d.eof {
			return nil, 0
		}
		if errno := d.fetch(ctx); errno != 0 {
			return nil, errno
		}
		if len(d.page) == 0 {
			return nil, 0
		}
	}
	de := d.page[0]
	d.page = d.page[1:]
	d.after = de.Name
	d.off++
	if (d.off-2)%dirPage == 0 {
		if d.marks == nil {
			d.marks = make(map[uint64]string)
		}
		d.marks[d.off] = de.Name
	}
	return &de, 0
}

// fetch reads the next page of entries after d.after.
func (d *dirHandle) fetch(ctx context.Context) syscall.Errno {
	page := d.page[:0]
	err := d.n.fsys.e.ReadDir(ctx, d.n.ino, d.after, func(de engine.Dirent) error {
		page = append(page, de)
		if len(page) == dirPage {
			return engine.ErrStopIteration
		}
		return nil
	})
	switch {
	case errors.Is(err, engine.ErrNotFound):
		// The directory was removed while open. The kernel marks it dead
		// and stops asking; if a request was already under way, the
		// listing simply ends.
		page = page[:0]
	case err != nil && !errors.Is(err, engine.ErrStopIteration):
		return toErrno(err)
	}
	d.page = page
	d.eof = len(page) < dirPage
	return 0
}

// Seekdir moves to offset off, as returned in an entry's Off.
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	ctx = uninterruptible(ctx)
	if off == d.off {
		return 0
	}
	d.page, d.eof = nil, false
	if off <= 2 {
		d.off, d.after = off, ""
		return 0
	}
	// Start at the nearest mark at or before off (offset 2 is the start of
	// the engine listing), then read forward.
	d.off, d.after = 2, ""
	for m, name := range d.marks {
		if m <= off && m > d.off {
			d.off, d.after = m, name
		}
	}
	for d.off < off {
		de, errno := d.next(ctx)
		if errno != 0 {
			return errno
		}
		if de == nil {
			break // past the end: the next Readdirent reports the end
		}
	}
	return 0
}

// Fsyncdir makes the directory's entries durable. Namespace changes are
// committed when their request returns but may not be on disk yet; the
// registry syncs as a whole, so this syncs every committed change.
func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return toErrno(d.n.fsys.e.Sync())
}

// Releasedir drops the page.
func (d *dirHandle) Releasedir(ctx context.Context, releaseFlags uint32) { d.page = nil }
