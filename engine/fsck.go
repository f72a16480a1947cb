package engine

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/pfs-project/pfs/chunkstore"
	"github.com/pfs-project/pfs/registry"
)

// partUse is where a part is referenced, for messages and repairs.
type partUse struct {
	ino Ino
	off int64 // file offset of the first slice
	n   uint32
}

// Fsck verifies every part's MD5 through the worker pool and the
// registries' consistency. With Repair it removes orphans and marks damaged
// files, never deleting data that is still referenced.
//
// It loads parts with the same Load the mount uses, so it sees what a
// reader would see.
func (e *Engine) Fsck(ctx context.Context, opts FsckOptions) (*FsckReport, error) {
	rep := &FsckReport{}
	paths, err := e.fsckPaths(ctx, rep)
	if err != nil {
		return nil, err
	}
	pathOf := func(ino Ino) string {
		if p, ok := paths[ino]; ok {
			return p
		}
		return fmt.Sprintf("<inode %d>", ino)
	}

	// Chunk maps → uses of each part; records of each part.
	uses := map[uuid.UUID]*partUse{}
	refs := map[uuid.UUID]uint32{}
	recs := map[uuid.UUID]*registry.Part{}
	var inodes []*registry.Inode
	err = e.reg.View(ctx, func(tx *registry.Tx) error {
		if err := tx.Inodes(func(in *registry.Inode) error {
			inodes = append(inodes, in)
			return nil
		}); err != nil {
			return err
		}
		for _, in := range inodes {
			if in.Mode&sIFMT != sIFREG {
				continue
			}
			if err := tx.Chunks(in.Ino, 0, func(idx uint64, ch registry.Chunk) error {
				for _, s := range ch {
					refs[s.Part]++
					off := int64(idx)*e.chunkSize + int64(s.Off)
					if uint64(off) >= in.Size && in.Status != registry.StatusDeleting {
						rep.Problems = append(rep.Problems, FsckProblem{Kind: "beyond-size", Path: pathOf(in.Ino), Ino: in.Ino, Offset: off, Part: s.Part.String(),
							Detail: fmt.Sprintf("slice past the file size %d", in.Size)})
					}
					if uses[s.Part] == nil {
						uses[s.Part] = &partUse{ino: in.Ino, off: off, n: s.Len}
					}
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return tx.Parts(func(p *registry.Part) error {
			recs[p.ID] = p
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("fsck: %w", err)
	}
	for _, in := range inodes {
		switch in.Mode & sIFMT {
		case sIFDIR:
			rep.Dirs++
		default:
			rep.Files++
		}
	}

	var fixRefs []*registry.Part
	var orphanParts []*registry.Part
	for id, n := range refs {
		p := recs[id]
		if p == nil {
			u := uses[id]
			rep.Problems = append(rep.Problems, FsckProblem{Kind: "missing-part", Path: pathOf(u.ino), Ino: u.ino, Offset: u.off, Part: id.String(), Detail: "chunk map names a part with no record"})
			continue
		}
		if p.Refs != n || p.Status == registry.PartPending || p.Status == registry.PartDeleting {
			rep.Problems = append(rep.Problems, FsckProblem{Kind: "refcount", Path: pathOf(uses[id].ino), Ino: uses[id].ino, Offset: uses[id].off, Part: p.Key,
				Detail: fmt.Sprintf("recorded %d references (%s), found %d", p.Refs, p.Status, n)})
			q := *p
			q.Refs = n
			if q.Status != registry.PartCorrupt {
				q.Status = registry.PartStored
			}
			fixRefs = append(fixRefs, &q)
		}
	}
	for id, p := range recs {
		if refs[id] == 0 {
			rep.Problems = append(rep.Problems, FsckProblem{Kind: "orphan-part", Offset: -1, Part: p.Key, Detail: fmt.Sprintf("part record (%s) that no file uses", p.Status)})
			orphanParts = append(orphanParts, p)
		}
	}

	// Objects with no record.
	byKey := map[string]bool{}
	for _, p := range recs {
		byKey[p.Key] = true
	}
	var orphanObjects []string
	err = e.cs.Backend().List(ctx, func(key string, size int64) error {
		if !byKey[key] {
			orphanObjects = append(orphanObjects, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fsck: list objects: %w", err)
	}
	sort.Strings(orphanObjects)
	for _, k := range orphanObjects {
		rep.Problems = append(rep.Problems, FsckProblem{Kind: "orphan-object", Offset: -1, Part: k, Detail: "object that no part record names"})
	}

	// Verify every referenced part through the worker pool.
	var verify []*registry.Part
	var total int64
	for id := range refs {
		if p := recs[id]; p != nil {
			verify = append(verify, p)
			total += int64(p.Size)
		}
	}
	sort.Slice(verify, func(i, j int) bool { return verify[i].Key < verify[j].Key })
	var done atomic.Int64
	var mu sync.Mutex
	var damaged []*registry.Part
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.cs.Workers())
	if opts.Progress != nil {
		opts.Progress(0, total)
	}
	for _, p := range verify {
		g.Go(func() error {
			data, err := e.cs.Load(gctx, partMeta(p))
			if err != nil && !errors.Is(err, chunkstore.ErrChecksum) && !errors.Is(err, chunkstore.ErrNotFound) {
				return err
			}
			d := done.Add(int64(p.Size))
			mu.Lock()
			defer mu.Unlock()
			if opts.Progress != nil {
				opts.Progress(d, total)
			}
			rep.Parts++
			if err != nil {
				kind := "checksum"
				if errors.Is(err, chunkstore.ErrNotFound) {
					kind = "missing-object"
				}
				u := uses[p.ID]
				rep.Problems = append(rep.Problems, FsckProblem{Kind: kind, Path: pathOf(u.ino), Ino: u.ino, Offset: u.off, Part: p.Key, Detail: err.Error()})
				damaged = append(damaged, p)
				return nil
			}
			rep.Bytes += int64(len(data))
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("fsck: verify: %w", err)
	}
	sort.SliceStable(rep.Problems, func(i, j int) bool {
		a, b := rep.Problems[i], rep.Problems[j]
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Offset < b.Offset
	})
	if !opts.Repair || len(rep.Problems) == 0 {
		return rep, nil
	}
	return rep, e.fsckRepair(ctx, rep, fixRefs, orphanParts, orphanObjects, damaged, uses)
}

// fsckRepair fixes what can be fixed without losing referenced data:
// reference counts, orphan records and objects (nothing uses them), and it
// marks damaged parts corrupt and their files damaged.
func (e *Engine) fsckRepair(ctx context.Context, rep *FsckReport, fixRefs, orphanParts []*registry.Part, orphanObjects []string, damaged []*registry.Part, uses map[uuid.UUID]*partUse) error {
	if err := e.writable(); err != nil {
		return err
	}
	err := e.reg.Update(ctx, func(tx *registry.Tx) error {
		for _, p := range fixRefs {
			if err := tx.PutPart(p); err != nil {
				return err
			}
		}
		for _, p := range damaged {
			q := *p
			q.Status = registry.PartCorrupt
			if err := tx.PutPart(&q); err != nil {
				return err
			}
			in, err := tx.GetInode(uses[p.ID].ino)
			if err != nil {
				return err
			}
			if in.Status == registry.StatusReady {
				in.Status = registry.StatusDamaged
				if err := tx.PutInode(in); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("fsck repair: %w", err)
	}
	rep.Repaired += len(fixRefs) + len(damaged)
	for _, k := range orphanObjects {
		if err := e.cs.Delete(ctx, k); err != nil {
			return fmt.Errorf("fsck repair: %w", err)
		}
		rep.Repaired++
	}
	for _, p := range orphanParts {
		if err := e.cs.Delete(ctx, p.Key); err != nil {
			return fmt.Errorf("fsck repair: %w", err)
		}
	}
	before := len(orphanParts)
	e.deleteGarbage(ctx, orphanParts)
	rep.Repaired += before
	// Slices past a file's size (left by a crash in a long truncate).
	for _, pr := range rep.Problems {
		if pr.Kind == "beyond-size" {
			in, err := e.getInode(ctx, pr.Ino)
			if err != nil {
				return err
			}
			if err := e.truncateStored(ctx, pr.Ino, in.Size, in.Ctime); err != nil {
				return err
			}
			rep.Repaired++
		}
	}
	return e.reg.Sync()
}

// fsckPaths walks the tree from the root and returns a path for every
// reachable inode, reporting entries that point at missing inodes.
func (e *Engine) fsckPaths(ctx context.Context, rep *FsckReport) (map[Ino]string, error) {
	paths := map[Ino]string{RootIno: "/"}
	type dir struct {
		ino Ino
		p   string
	}
	stack := []dir{{RootIno, "/"}}
	for len(stack) > 0 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		var ents []Dirent
		if err := e.ReadDir(ctx, d.ino, "", func(de Dirent) error {
			ents = append(ents, de)
			return nil
		}); err != nil {
			return nil, fmt.Errorf("fsck: %s: %w", d.p, err)
		}
		for _, de := range ents {
			p := path.Join(d.p, de.Name)
			in, err := e.getInode(ctx, de.Ino)
			if errors.Is(err, registry.ErrNotFound) {
				rep.Problems = append(rep.Problems, FsckProblem{Kind: "dangling-entry", Path: p, Ino: de.Ino, Offset: -1, Detail: "entry names a missing inode"})
				continue
			}
			if err != nil {
				return nil, err
			}
			if _, seen := paths[de.Ino]; !seen {
				paths[de.Ino] = p
			}
			if in.Mode&sIFMT == sIFDIR {
				stack = append(stack, dir{de.Ino, p})
			}
		}
	}
	return paths, nil
}
