package engine

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/google/uuid"

	"github.com/pfs-project/pfs/chunkstore"
	"github.com/pfs-project/pfs/registry"
)

// splitPath cleans a store path into its names ("" and "/" are the root).
func splitPath(p string) []string {
	p = strings.Trim(path.Clean("/"+p), "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// Resolve returns the inode at a slash-separated path from the root ("" and
// "/" are the root). Symlinks are not followed.
func (e *Engine) Resolve(ctx context.Context, p string) (*Attr, error) {
	a, err := e.GetAttr(ctx, RootIno)
	if err != nil {
		return nil, err
	}
	for _, name := range splitPath(p) {
		if a.Mode&sIFMT != sIFDIR {
			return nil, fmt.Errorf("%s: %w", p, ErrNotDir)
		}
		if a, err = e.Lookup(ctx, a.Ino, name); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	return a, nil
}

// ByID returns the inode whose file ID is id.
func (e *Engine) ByID(ctx context.Context, id uuid.UUID) (*Attr, error) {
	var found *registry.Inode
	err := e.reg.View(ctx, func(tx *registry.Tx) error {
		return tx.Inodes(func(in *registry.Inode) error {
			if in.ID == id && in.Status != registry.StatusDeleting {
				found = in
				return registry.ErrStop
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, fmt.Errorf("file id %s: %w", id, ErrNotFound)
	}
	return e.withOpenState(found), nil
}

// MkdirAll makes the directory path and any missing parents, like
// os.MkdirAll, and returns the directory's attributes.
func (e *Engine) MkdirAll(ctx context.Context, p string, mode, uid, gid uint32) (*Attr, error) {
	a, err := e.GetAttr(ctx, RootIno)
	if err != nil {
		return nil, err
	}
	for _, name := range splitPath(p) {
		next, err := e.Lookup(ctx, a.Ino, name)
		if errors.Is(err, ErrNotFound) {
			next, err = e.Mkdir(ctx, a.Ino, name, mode, uid, gid)
			if errors.Is(err, ErrExists) { // made by someone else meanwhile
				next, err = e.Lookup(ctx, a.Ino, name)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("mkdir %s: %w", p, err)
		}
		if next.Mode&sIFMT != sIFDIR {
			return nil, fmt.Errorf("mkdir %s: %s: %w", p, name, ErrNotDir)
		}
		a = next
	}
	return a, nil
}

// Walk calls fn for path and, if it is a directory, for everything below
// it, depth first in name order. Paths are slash-separated from the root.
func (e *Engine) Walk(ctx context.Context, p string, fn func(path string, a *Attr) error) error {
	a, err := e.Resolve(ctx, p)
	if err != nil {
		return err
	}
	return e.walk(ctx, "/"+strings.Join(splitPath(p), "/"), a, fn)
}

func (e *Engine) walk(ctx context.Context, p string, a *Attr, fn func(string, *Attr) error) error {
	if err := fn(p, a); err != nil {
		return err
	}
	if a.Mode&sIFMT != sIFDIR {
		return nil
	}
	// Page through the directory so a huge one is never held at once, and
	// no transaction stays open while fn runs.
	after := ""
	for {
		var page []Dirent
		err := e.ReadDir(ctx, a.Ino, after, func(d Dirent) error {
			page = append(page, d)
			if len(page) == 1000 {
				return ErrStopIteration
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, d := range page {
			child, err := e.GetAttr(ctx, d.Ino)
			if err != nil {
				return err
			}
			if err := e.walk(ctx, path.Join(p, d.Name), child, fn); err != nil {
				return err
			}
		}
		if len(page) < 1000 {
			return nil
		}
		after = page[len(page)-1].Name
	}
}

// FileParts lists the slices of a regular file in file order.
func (e *Engine) FileParts(ctx context.Context, ino Ino) ([]PartInfo, error) {
	var out []PartInfo
	err := e.reg.View(ctx, func(tx *registry.Tx) error {
		return tx.Chunks(ino, 0, func(idx uint64, ch registry.Chunk) error {
			for _, s := range ch {
				pi := PartInfo{Chunk: idx, FileOffset: int64(idx)*e.chunkSize + int64(s.Off), Len: s.Len, PartID: s.Part}
				p, err := tx.GetPart(s.Part)
				switch {
				case errors.Is(err, registry.ErrNotFound):
					pi.Status = "missing"
				case err != nil:
					return err
				default:
					pi.Key, pi.StoredSize, pi.PlainSize, pi.MD5 = p.Key, p.Size, p.PlainSize, p.MD5
					pi.Compression = chunkstore.Compression(p.Compression).String()
					pi.Status = p.Status.String()
				}
				out = append(out, pi)
			}
			return nil
		})
	})
	return out, err
}

// MD5Hex formats a part hash.
func MD5Hex(sum [16]byte) string { return hex.EncodeToString(sum[:]) }
