package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/pfs-project/pfs/registry"
)

const (
	sIFMT  = syscall.S_IFMT
	sIFREG = syscall.S_IFREG
	sIFDIR = syscall.S_IFDIR
	sIFLNK = syscall.S_IFLNK
)

// maxNameLen is NAME_MAX.
const maxNameLen = 255

func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("name %q: %w", name, ErrInvalid)
	case len(name) > maxNameLen:
		return fmt.Errorf("name of %d bytes: %w", len(name), ErrNameTooLong)
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return fmt.Errorf("name %q: %w", name, ErrInvalid)
		}
	}
	return nil
}

func (e *Engine) writable() error {
	if e.cfg.ReadOnly {
		return ErrReadOnly
	}
	return nil
}

func (e *Engine) getInode(ctx context.Context, ino Ino) (*registry.Inode, error) {
	var in *registry.Inode
	err := e.reg.View(ctx, func(tx *registry.Tx) error {
		var err error
		in, err = tx.GetInode(ino)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("inode %d: %w", ino, err)
	}
	return in, nil
}

// withOpenState overlays what an open file knows and the registry does not
// yet: buffered size and times, and attribute changes waiting for their
// commit.
func (e *Engine) withOpenState(in *registry.Inode) *Attr {
	if in.Mode&sIFMT != sIFREG {
		return in
	}
	if f := e.openFile(in.Ino); f != nil {
		f.mu.Lock()
		in.Size = uint64(f.size)
		in.Mtime = max(in.Mtime, f.mtime)
		in.Ctime = max(in.Ctime, f.ctime)
		f.pend.applyTo(in)
		f.mu.Unlock()
	}
	return in
}

// Lookup returns the child called name in directory parent, or an error
// wrapping ErrNotFound.
func (e *Engine) Lookup(ctx context.Context, parent Ino, name string) (*Attr, error) {
	if len(name) > maxNameLen {
		return nil, ErrNameTooLong
	}
	var in *registry.Inode
	err := e.reg.View(ctx, func(tx *registry.Tx) error {
		d, err := tx.Lookup(parent, name)
		if err != nil {
			return err
		}
		in, err = tx.GetInode(d.Ino)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lookup %q in %d: %w", name, parent, err)
	}
	return e.withOpenState(in), nil
}

// GetAttr returns the attributes of ino.
func (e *Engine) GetAttr(ctx context.Context, ino Ino) (*Attr, error) {
	in, err := e.getInode(ctx, ino)
	if err != nil {
		return nil, err
	}
	return e.withOpenState(in), nil
}

// newInode links a fresh inode into parent under name in one transaction
// and updates the parent's times (and link count, for a directory).
func (e *Engine) newInode(ctx context.Context, parent Ino, name string, in *registry.Inode) (*Attr, error) {
	if err := e.writable(); err != nil {
		return nil, err
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	now := time.Now().UnixNano()
	in.ID = uuid.New()
	in.Atime, in.Mtime, in.Ctime = now, now, now
	in.Status = registry.StatusReady
	isDir := in.Mode&sIFMT == sIFDIR
	unlock := e.lockCommits(parent)
	err := e.reg.Grow(ctx, func(tx *registry.Tx) error {
		p, err := tx.GetInode(parent)
		if err != nil {
			return err
		}
		if p.Mode&sIFMT != sIFDIR {
			return ErrNotDir
		}
		if p.Nlink == 0 {
			return ErrNotFound // creating in a removed directory
		}
		if _, err := tx.Lookup(parent, name); err == nil {
			return ErrExists
		} else if !errors.Is(err, registry.ErrNotFound) {
			return err
		}
		if in.Ino, err = tx.NextIno(); err != nil {
			return err
		}
		if err := tx.PutInode(in); err != nil {
			return err
		}
		if err := tx.PutDirent(parent, registry.Dirent{Name: name, Ino: in.Ino, Mode: in.Mode & sIFMT}); err != nil {
			return err
		}
		if isDir {
			p.Nlink++
		}
		p.Mtime, p.Ctime = now, now
		return tx.PutInode(p)
	})
	unlock()
	if err != nil {
		return nil, fmt.Errorf("create %q in %d: %w", name, parent, err)
	}
	// A new inode has no extended attributes. The kernel asks for
	// security.capability before a new file's first write and again
	// before its chown (tar asks both for every file it extracts); known
	// here, neither costs a registry read.
	e.xattrless.put(in.Ino)
	return in, nil
}

// Create makes a new non-directory, non-symlink inode (regular file, fifo,
// socket, device: the type is in mode's S_IFMT bits; 0 means regular) and
// links it as parent/name. ErrExists if the name is taken.
func (e *Engine) Create(ctx context.Context, parent Ino, name string, mode, uid, gid, rdev uint32) (*Attr, error) {
	if mode&sIFMT == 0 {
		mode |= sIFREG
	}
	switch mode & sIFMT {
	case sIFDIR, sIFLNK:
		return nil, fmt.Errorf("create with type %o: %w", mode&sIFMT, ErrInvalid)
	}
	return e.newInode(ctx, parent, name, &registry.Inode{Mode: mode, Uid: uid, Gid: gid, Rdev: rdev, Nlink: 1})
}

// Mkdir makes a directory parent/name.
func (e *Engine) Mkdir(ctx context.Context, parent Ino, name string, mode, uid, gid uint32) (*Attr, error) {
	return e.newInode(ctx, parent, name, &registry.Inode{Mode: sIFDIR | mode&07777, Uid: uid, Gid: gid, Nlink: 2})
}

// Symlink makes a symlink parent/name pointing at target.
func (e *Engine) Symlink(ctx context.Context, parent Ino, name, target string, uid, gid uint32) (*Attr, error) {
	if len(target) > 4096 {
		return nil, ErrNameTooLong
	}
	return e.newInode(ctx, parent, name, &registry.Inode{Mode: sIFLNK | 0o777, Uid: uid, Gid: gid, Nlink: 1, Size: uint64(len(target)), Target: target})
}

// Link adds a hard link newParent/newName to the non-directory ino.
func (e *Engine) Link(ctx context.Context, ino, newParent Ino, newName string) (*Attr, error) {
	if err := e.writable(); err != nil {
		return nil, err
	}
	if err := checkName(newName); err != nil {
		return nil, err
	}
	now := time.Now().UnixNano()
	var in *registry.Inode
	unlock := e.lockCommits(ino, newParent)
	err := e.reg.Grow(ctx, func(tx *registry.Tx) error {
		var err error
		if in, err = tx.GetInode(ino); err != nil {
			return err
		}
		if in.Mode&sIFMT == sIFDIR {
			return ErrIsDir
		}
		if in.Nlink == 0 {
			return ErrNotFound
		}
		p, err := tx.GetInode(newParent)
		if err != nil {
			return err
		}
		if p.Mode&sIFMT != sIFDIR {
			return ErrNotDir
		}
		if _, err := tx.Lookup(newParent, newName); err == nil {
			return ErrExists
		} else if !errors.Is(err, registry.ErrNotFound) {
			return err
		}
		in.Nlink++
		in.Ctime = now
		if err := tx.PutInode(in); err != nil {
			return err
		}
		if err := tx.PutDirent(newParent, registry.Dirent{Name: newName, Ino: ino, Mode: in.Mode & sIFMT}); err != nil {
			return err
		}
		p.Mtime, p.Ctime = now, now
		return tx.PutInode(p)
	})
	unlock()
	if err != nil {
		return nil, fmt.Errorf("link %d as %q in %d: %w", ino, newName, newParent, err)
	}
	return e.withOpenState(in), nil
}

// dropLink removes one link of child (the entry is already gone) inside tx:
// a directory goes at once (it is empty), a file loses a link and, at zero,
// is marked deleting so its data goes when no handle is left.
func dropLink(tx *registry.Tx, child *registry.Inode, now int64) (purge bool, err error) {
	child.Ctime = now
	if child.Mode&sIFMT == sIFDIR {
		child.Nlink = 0
		child.Status = registry.StatusDeleting
		return true, tx.PutInode(child)
	}
	if child.Nlink > 0 {
		child.Nlink--
	}
	if child.Nlink == 0 {
		child.Status = registry.StatusDeleting
		purge = true
	}
	return purge, tx.PutInode(child)
}

// Unlink removes the non-directory entry parent/name. When the last link
// goes and no handle is open, the file's parts are deleted; with handles
// open, that waits for the last Release.
func (e *Engine) Unlink(ctx context.Context, parent Ino, name string) error {
	return e.remove(ctx, parent, name, false)
}

// Rmdir removes the empty directory parent/name (ErrNotEmpty otherwise).
func (e *Engine) Rmdir(ctx context.Context, parent Ino, name string) error {
	return e.remove(ctx, parent, name, true)
}

func (e *Engine) remove(ctx context.Context, parent Ino, name string, dir bool) error {
	if err := e.writable(); err != nil {
		return err
	}
	now := time.Now().UnixNano()
	var victim Ino
	var garbage []*registry.Part
	purge, purged := false, false
	unlock := e.lockCommits(parent)
	err := e.reg.Update(ctx, func(tx *registry.Tx) error {
		garbage, purge, purged = nil, false, false
		d, err := tx.Lookup(parent, name)
		if err != nil {
			return err
		}
		child, err := tx.GetInode(d.Ino)
		if err != nil {
			return err
		}
		isDir := child.Mode&sIFMT == sIFDIR
		switch {
		case dir && !isDir:
			return ErrNotDir
		case !dir && isDir:
			return ErrIsDir
		}
		if isDir {
			empty, err := tx.DirEmpty(child.Ino)
			if err != nil {
				return err
			}
			if !empty {
				return ErrNotEmpty
			}
		}
		if err := tx.DeleteDirent(parent, name); err != nil {
			return err
		}
		p, err := tx.GetInode(parent)
		if err != nil {
			return err
		}
		if isDir && p.Nlink > 2 {
			p.Nlink--
		}
		p.Mtime, p.Ctime = now, now
		if err := tx.PutInode(p); err != nil {
			return err
		}
		victim = child.Ino
		if purge, err = dropLink(tx, child, now); err != nil || !purge {
			return err
		}
		// The last link of a file nothing holds goes with its data in
		// this transaction (sqlite's journal: one commit fewer per
		// transaction). A file some handle holds, or one of many chunks,
		// is purged apart: at its last Release, or by purge after this
		// commit.
		if e.openFile(victim) != nil {
			return nil
		}
		idxs, slices, more, err := chunksOf(tx, victim, 0, removeChunks)
		if err != nil || more {
			return err
		}
		if garbage, err = dropChunks(tx, victim, idxs, slices); err != nil {
			return err
		}
		purged = true
		return tx.DeleteInode(victim)
	})
	unlock()
	if err != nil {
		return fmt.Errorf("remove %q in %d: %w", name, parent, err)
	}
	e.deleteObjects(ctx, garbage)
	switch {
	case purged:
		e.cache.dropFile(victim, 0)
	case purge:
		return e.purgeIfUnlinked(ctx, victim)
	}
	return nil
}

// removeChunks bounds the chunk maps an unlink deletes in its own
// transaction (see chunkBatch; batchWrites bounds it too); a bigger file
// is purged after it.
const removeChunks = 8

// Rename moves parent/name to newParent/newName in one transaction,
// replacing the target if it exists (and is compatible), as rename(2).
// flags take RenameNoReplace and RenameExchange.
func (e *Engine) Rename(ctx context.Context, parent Ino, name string, newParent Ino, newName string, flags uint32) error {
	if err := e.writable(); err != nil {
		return err
	}
	if flags&^(RenameNoReplace|RenameExchange) != 0 || flags == RenameNoReplace|RenameExchange {
		return fmt.Errorf("rename flags %#x: %w", flags, ErrInvalid)
	}
	if err := checkName(newName); err != nil {
		return err
	}
	now := time.Now().UnixNano()
	var victim Ino
	purge := false
	unlock := e.lockCommits(parent, newParent)
	err := e.reg.Update(ctx, func(tx *registry.Tx) error {
		victim, purge = 0, false
		src, err := tx.Lookup(parent, name)
		if err != nil {
			return err
		}
		dst, err := tx.Lookup(newParent, newName)
		exists := err == nil
		if err != nil && !errors.Is(err, registry.ErrNotFound) {
			return err
		}
		if flags&RenameNoReplace != 0 && exists {
			return ErrExists
		}
		if exists && dst.Ino == src.Ino {
			return nil // two links of one file: rename(2) does nothing
		}
		if flags&RenameExchange != 0 && !exists {
			return ErrNotFound
		}
		srcIn, err := tx.GetInode(src.Ino)
		if err != nil {
			return err
		}
		srcDir := srcIn.Mode&sIFMT == sIFDIR
		np, err := tx.GetInode(newParent)
		if err != nil {
			return err
		}
		if np.Mode&sIFMT != sIFDIR {
			return ErrNotDir
		}
		if srcDir && parent != newParent {
			if err := checkNotAncestor(tx, src.Ino, newParent); err != nil {
				return err
			}
		}
		var dstIn *registry.Inode
		if exists {
			if dstIn, err = tx.GetInode(dst.Ino); err != nil {
				return err
			}
			dstDir := dstIn.Mode&sIFMT == sIFDIR
			if flags&RenameExchange == 0 {
				switch {
				case srcDir && !dstDir:
					return ErrNotDir
				case !srcDir && dstDir:
					return ErrIsDir
				case dstDir:
					empty, err := tx.DirEmpty(dst.Ino)
					if err != nil {
						return err
					}
					if !empty {
						return ErrNotEmpty
					}
				}
			} else if dstDir && parent != newParent {
				if err := checkNotAncestor(tx, dst.Ino, parent); err != nil {
					return err
				}
			}
		}

		if flags&RenameExchange != 0 {
			if err := tx.PutDirent(parent, registry.Dirent{Name: name, Ino: dst.Ino, Mode: dst.Mode}); err != nil {
				return err
			}
			if err := tx.PutDirent(newParent, registry.Dirent{Name: newName, Ino: src.Ino, Mode: src.Mode}); err != nil {
				return err
			}
			dstDir := dstIn.Mode&sIFMT == sIFDIR
			if srcDir != dstDir && parent != newParent {
				if err := moveDirLink(tx, parent, newParent, srcDir, now); err != nil {
					return err
				}
			}
			srcIn.Ctime, dstIn.Ctime = now, now
			if err := tx.PutInode(srcIn); err != nil {
				return err
			}
			if err := tx.PutInode(dstIn); err != nil {
				return err
			}
			return touchDirs(tx, now, parent, newParent)
		}

		if err := tx.DeleteDirent(parent, name); err != nil {
			return err
		}
		if err := tx.PutDirent(newParent, registry.Dirent{Name: newName, Ino: src.Ino, Mode: src.Mode}); err != nil {
			return err
		}
		srcIn.Ctime = now
		if err := tx.PutInode(srcIn); err != nil {
			return err
		}
		if exists {
			victim = dstIn.Ino
			if purge, err = dropLink(tx, dstIn, now); err != nil {
				return err
			}
			if dstIn.Mode&sIFMT == sIFDIR {
				if err := adjustNlink(tx, newParent, -1); err != nil {
					return err
				}
			}
		}
		if srcDir && parent != newParent {
			if err := adjustNlink(tx, parent, -1); err != nil {
				return err
			}
			if err := adjustNlink(tx, newParent, +1); err != nil {
				return err
			}
		}
		return touchDirs(tx, now, parent, newParent)
	})
	unlock()
	if err != nil {
		return fmt.Errorf("rename %q in %d to %q in %d: %w", name, parent, newName, newParent, err)
	}
	if purge {
		return e.purgeIfUnlinked(ctx, victim)
	}
	return nil
}

// checkNotAncestor refuses to move directory dir under itself. Directories
// have one parent, found through the ".." the registry keeps as the dirent
// with the parent's inode; without it we walk the root-down tree lazily,
// so this is only a cheap guard: the kernel checks this too.
func checkNotAncestor(tx *registry.Tx, dir, target Ino) error {
	if dir == target {
		return ErrInvalid
	}
	return nil
}

func moveDirLink(tx *registry.Tx, from, to Ino, srcDir bool, now int64) error {
	// An exchange of a directory and a non-directory across parents moves
	// one ".." link from one parent to the other.
	d := int32(1)
	if !srcDir {
		d = -1
	}
	if err := adjustNlink(tx, from, -d); err != nil {
		return err
	}
	return adjustNlink(tx, to, d)
}

func adjustNlink(tx *registry.Tx, ino Ino, d int32) error {
	in, err := tx.GetInode(ino)
	if err != nil {
		return err
	}
	in.Nlink = uint32(max(int64(in.Nlink)+int64(d), 2))
	return tx.PutInode(in)
}

func touchDirs(tx *registry.Tx, now int64, dirs ...Ino) error {
	seen := map[Ino]bool{}
	for _, d := range dirs {
		if seen[d] {
			continue
		}
		seen[d] = true
		in, err := tx.GetInode(d)
		if err != nil {
			return err
		}
		in.Mtime, in.Ctime = now, now
		if err := tx.PutInode(in); err != nil {
			return err
		}
	}
	return nil
}

// SetAttr changes attributes and returns the new ones. A Size change
// truncates or extends the file (open or not).
func (e *Engine) SetAttr(ctx context.Context, ino Ino, in SetAttrIn) (*Attr, error) {
	if err := e.writable(); err != nil {
		return nil, err
	}
	now := time.Now().UnixNano()
	ctime := now
	if in.Ctime != nil {
		ctime = *in.Ctime
	}
	if in.Size != nil {
		if *in.Size > maxFileSize {
			return nil, ErrFileTooBig
		}
		if err := e.truncate(ctx, ino, *in.Size, ctime); err != nil {
			return nil, err
		}
	}
	// Attribute changes an open file still holds go in first: this
	// transaction must not be overwritten by a later commit carrying
	// older ones.
	var pend pendingAttrs
	var pendGen uint64
	f := e.holdOpen(ino)
	if f != nil {
		defer e.releaseFile(f)
		if in.Size == nil {
			if a, deferred, err := e.deferAttrs(ctx, f, in, ctime); deferred || err != nil {
				return a, err
			}
		}
		f.mu.Lock()
		pend, pendGen = f.pend, f.pendGen
		f.mu.Unlock()
	}
	var out *registry.Inode
	err := e.reg.Update(ctx, func(tx *registry.Tx) error {
		a, err := tx.GetInode(ino)
		if err != nil {
			return err
		}
		pend.applyTo(a)
		if in.Mode != nil {
			a.Mode = a.Mode&sIFMT | *in.Mode&07777
		}
		if in.Uid != nil {
			a.Uid = *in.Uid
		}
		if in.Gid != nil {
			a.Gid = *in.Gid
		}
		if in.Atime != nil {
			a.Atime = *in.Atime
		}
		if in.Mtime != nil {
			a.Mtime = *in.Mtime
		}
		if in.Mode != nil || in.Uid != nil || in.Gid != nil || in.Atime != nil || in.Mtime != nil || in.Size != nil {
			a.Ctime = ctime
		}
		out = a
		return tx.PutInode(a)
	})
	if err != nil {
		return nil, fmt.Errorf("setattr %d: %w", ino, err)
	}
	if f != nil {
		f.mu.Lock()
		f.clearPendLocked(pendGen)
		if in.Mtime != nil {
			// An explicit mtime (utimens, touch -d, tar, rsync) wins over
			// the time of buffered writes.
			f.mtime, f.ctime, f.attrDirt = *in.Mtime, ctime, false
		}
		f.mu.Unlock()
	}
	// The size (and times) of buffered writes too: the kernel takes the
	// size in a SETATTR reply as the file's, and reads stop there.
	return e.withOpenState(out), nil
}

// deferAttrs records the changes of in (no size) on f, open, when f has
// buffered writes, writes in flight or changes already waiting: the commit
// of those writes (at the latest the close's) carries them, and until then
// GetAttr and Lookup show them (withOpenState). It reports false when
// nothing is waiting for a commit: the caller commits the change itself,
// and no commit in flight can carry older changes over it.
//
// A chown or chmod that changes nothing, which sqlite makes as root on every
// journal it creates, is deferred even then: all it changes is ctime, which
// the file's next commit carries (at the latest its close's; a crash of the
// daemon before that keeps the older ctime).
func (e *Engine) deferAttrs(ctx context.Context, f *file, in SetAttrIn, ctime int64) (*Attr, bool, error) {
	f.mu.Lock()
	idle := len(f.dirty) == 0 && len(f.inflight) == 0 && f.pend.empty()
	f.mu.Unlock()
	// stored: the registry's inode, read once for the comparison and the
	// reply.
	var stored *registry.Inode
	if idle {
		if in.Atime != nil || in.Mtime != nil || in.Ctime != nil || in.Mode == nil && in.Uid == nil && in.Gid == nil {
			return nil, false, nil
		}
		var err error
		if stored, err = e.getInode(ctx, f.ino); err != nil {
			return nil, false, fmt.Errorf("setattr %d: %w", f.ino, err)
		}
		cp := *stored
		a := e.withOpenState(&cp)
		if in.Mode != nil && *in.Mode&07777 != a.Mode&07777 || in.Uid != nil && *in.Uid != a.Uid || in.Gid != nil && *in.Gid != a.Gid {
			return nil, false, nil
		}
	}
	f.mu.Lock()
	p := &f.pend
	if in.Mode != nil {
		m := *in.Mode & 07777
		p.mode = &m
	}
	if in.Uid != nil {
		v := *in.Uid
		p.uid = &v
	}
	if in.Gid != nil {
		v := *in.Gid
		p.gid = &v
	}
	if in.Atime != nil {
		v := *in.Atime
		p.atime = &v
	}
	if in.Mtime != nil {
		v := *in.Mtime
		p.mtime = &v
		f.mtime, f.ctime, f.attrDirt = v, ctime, false
	}
	if in.Mode != nil || in.Uid != nil || in.Gid != nil || in.Atime != nil || in.Mtime != nil {
		p.ctime = max(p.ctime, ctime)
	}
	f.pendGen++
	f.mu.Unlock()
	if stored == nil {
		var err error
		if stored, err = e.getInode(ctx, f.ino); err != nil {
			return nil, true, fmt.Errorf("setattr %d: %w", f.ino, err)
		}
	}
	return e.withOpenState(stored), true, nil
}

// holdOpen returns ino's file state with a reference (release with
// releaseFile) if some handle has it open, else nil.
func (e *Engine) holdOpen(ino Ino) *file {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.files[ino]
	if f != nil {
		f.mu.Lock()
		f.refs++
		f.mu.Unlock()
	}
	return f
}

// truncate sets a regular file's size, whether or not it is open.
func (e *Engine) truncate(ctx context.Context, ino Ino, size uint64, ctime int64) error {
	f, err := e.acquireFile(ctx, ino)
	if err != nil {
		return err
	}
	defer e.releaseFile(f)
	f.trunc.Lock()
	defer f.trunc.Unlock()
	cs := e.chunkSize
	f.mu.Lock()
	boundary := uint64(int64(size) / cs)
	within := int(int64(size) % cs)
	if int64(size) < f.size {
		for idx, dc := range f.dirty {
			switch {
			case idx > boundary || (idx == boundary && within == 0):
				delete(f.dirty, idx)
				e.putBuf(dc.buf)
			case idx == boundary:
				dc.clip(within)
			}
		}
		for idx, q := range f.inflight {
			for _, fl := range q {
				switch {
				case idx > boundary || (idx == boundary && within == 0):
					fl.clip = 0
				case idx == boundary:
					fl.clip = min(fl.clip, within)
				}
			}
		}
		f.ver[boundary]++
		f.epoch++
		f.raNext = 0
	}
	f.size = int64(size)
	f.ctime, f.mtime = ctime, ctime
	if f.pend.mtime != nil {
		f.pend.mtime = nil // the truncate's time supersedes a pending utimens
		f.pendGen++
	}
	f.mu.Unlock()
	e.cache.dropFile(ino, boundary)
	return e.truncateStored(ctx, ino, size, ctime)
}

// ReadDir calls fn for the entries of directory ino in name order, starting
// strictly after the name `after` ("" for the start). fn returning
// ErrStopIteration ends the listing without error.
func (e *Engine) ReadDir(ctx context.Context, ino Ino, after string, fn func(Dirent) error) error {
	err := e.reg.View(ctx, func(tx *registry.Tx) error {
		in, err := tx.GetInode(ino)
		if err != nil {
			return err
		}
		if in.Mode&sIFMT != sIFDIR {
			return ErrNotDir
		}
		return tx.ReadDir(ino, after, func(d registry.Dirent) error {
			if err := fn(d); err != nil {
				if errors.Is(err, ErrStopIteration) {
					return registry.ErrStop
				}
				return err
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("readdir %d: %w", ino, err)
	}
	return nil
}

// GetXattr returns the value of an extended attribute, or ErrNoAttr.
//
// The kernel asks for security.capability before every write, nearly
// always of an inode with no attributes at all; that is answered from
// memory.
func (e *Engine) GetXattr(ctx context.Context, ino Ino, name string) ([]byte, error) {
	gen, known := e.xattrless.has(ino)
	if known {
		return nil, ErrNoAttr
	}
	var v []byte
	none := false
	err := e.reg.View(ctx, func(tx *registry.Tx) error {
		var err error
		v, err = tx.GetXattr(ino, name)
		if errors.Is(err, registry.ErrNotFound) {
			names, lerr := tx.ListXattr(ino)
			none = lerr == nil && len(names) == 0
		}
		return err
	})
	if errors.Is(err, registry.ErrNotFound) {
		if none {
			e.xattrless.add(ino, gen)
		}
		return nil, ErrNoAttr
	}
	return v, err
}

// inoSet is a bounded set of inode numbers, safe for concurrent use. When
// full it starts over: it is a cache, and forgetting costs only a lookup.
// Every remove bumps a generation, and add takes the generation its caller
// saw before reading the registry, so a reader that raced with a change
// never adds a stale member.
type inoSet struct {
	mu  sync.Mutex
	m   map[Ino]struct{}
	gen uint64
}

const inoSetMax = 1 << 16

// has reports membership and the current generation.
func (s *inoSet) has(ino Ino) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[ino]
	return s.gen, ok
}

// add adds ino unless something was removed since generation gen.
func (s *inoSet) add(ino Ino, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen == s.gen {
		s.insertLocked(ino)
	}
}

// put adds ino whatever was removed meanwhile: for an inode nobody else
// can know of yet, so no change to it can have raced.
func (s *inoSet) put(ino Ino) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.insertLocked(ino)
}

func (s *inoSet) insertLocked(ino Ino) {
	if s.m == nil || len(s.m) >= inoSetMax {
		s.m = make(map[Ino]struct{})
	}
	s.m[ino] = struct{}{}
}

func (s *inoSet) remove(ino Ino) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, ino)
	s.gen++
}

// Limits of extended attributes, as Linux's XATTR_NAME_MAX and XATTR_SIZE_MAX.
const (
	maxXattrName  = 255
	maxXattrValue = 64 << 10
)

// SetXattr sets an extended attribute. flags as setxattr(2): XATTR_CREATE
// (1) fails with ErrExists if it exists, XATTR_REPLACE (2) fails with
// ErrNoAttr if it does not.
func (e *Engine) SetXattr(ctx context.Context, ino Ino, name string, value []byte, flags uint32) error {
	if err := e.writable(); err != nil {
		return err
	}
	if name == "" || len(name) > maxXattrName {
		return ErrNameTooLong
	}
	if len(value) > maxXattrValue {
		return fmt.Errorf("xattr value of %d bytes: %w", len(value), ErrFileTooBig)
	}
	now := time.Now().UnixNano()
	// Forget "no attributes" before the commit, so no reader can see the
	// new attribute committed and the cache still saying none.
	e.xattrless.remove(ino)
	return e.reg.Grow(ctx, func(tx *registry.Tx) error {
		_, err := tx.GetXattr(ino, name)
		exists := err == nil
		if err != nil && !errors.Is(err, registry.ErrNotFound) {
			return err
		}
		if flags&1 != 0 && exists {
			return ErrExists
		}
		if flags&2 != 0 && !exists {
			return ErrNoAttr
		}
		in, err := tx.GetInode(ino)
		if err != nil {
			return err
		}
		in.Ctime = now
		if err := tx.PutInode(in); err != nil {
			return err
		}
		return tx.SetXattr(ino, name, value)
	})
}

// ListXattr returns the names of ino's extended attributes.
func (e *Engine) ListXattr(ctx context.Context, ino Ino) ([]string, error) {
	var names []string
	err := e.reg.View(ctx, func(tx *registry.Tx) error {
		var err error
		names, err = tx.ListXattr(ino)
		return err
	})
	return names, err
}

// RemoveXattr removes an extended attribute, or returns ErrNoAttr.
func (e *Engine) RemoveXattr(ctx context.Context, ino Ino, name string) error {
	if err := e.writable(); err != nil {
		return err
	}
	err := e.reg.Update(ctx, func(tx *registry.Tx) error { return tx.RemoveXattr(ino, name) })
	if errors.Is(err, registry.ErrNotFound) {
		return ErrNoAttr
	}
	return err
}

// Statfs reports the store's capacity.
func (e *Engine) Statfs(ctx context.Context) (Statfs, error) {
	total, free, err := e.cs.Backend().Usage(ctx)
	if err != nil {
		return Statfs{}, err
	}
	return Statfs{TotalBytes: total, FreeBytes: free, ChunkSize: uint32(e.chunkSize)}, nil
}
