package registry

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/google/uuid"
)

// Tx is one registry transaction, valid only inside the function passed to
// View or Update. Iteration callbacks run inside the transaction: they may
// read and write through the same Tx (an iteration does not see writes made
// after it started) but must not start another transaction. A Tx is not
// safe for concurrent use.
type Tx struct {
	txn    *badger.Txn
	update bool
	r      *Registry // nil in views
	sn     *snapshot // the shared snapshot of a view; nil in updates
}

// get calls fn with the value of key. Badger owns the value only during
// fn: fn must copy what it keeps. The error is translated, without context.
func (tx *Tx) get(key []byte, fn func(v []byte) error) error {
	item, err := tx.txn.Get(key)
	if err != nil {
		return translate(err)
	}
	return translate(item.Value(fn))
}

// has reports whether key exists.
func (tx *Tx) has(key []byte) (bool, error) {
	_, err := tx.txn.Get(key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return false, nil
	}
	return false, translate(err)
}

func (tx *Tx) set(key, value []byte) error {
	if tx.r != nil && int64(len(value)) >= tx.r.valueThreshold {
		tx.r.vlogUsed.Store(true) // Sync must sync the value log too
	}
	return translate(tx.txn.Set(key, value))
}

func (tx *Tx) delete(key []byte) error { return translate(tx.txn.Delete(key)) }

// deleteExisting deletes key, or returns ErrNotFound.
func (tx *Tx) deleteExisting(key []byte) error {
	has, err := tx.has(key)
	switch {
	case err != nil:
		return err
	case !has:
		return ErrNotFound
	}
	return tx.delete(key)
}

// setIndex makes the empty index key present iff on. It reads the key
// first so that records outside the index do not collect tombstones.
func (tx *Tx) setIndex(key []byte, on bool) error {
	has, err := tx.has(key)
	switch {
	case err != nil:
		return err
	case on && !has:
		return tx.set(key, nil)
	case !on && has:
		return tx.delete(key)
	}
	return nil
}

// scan calls fn for each item whose key has prefix, in key order starting
// at the first key >= start (in reverse: the last key <= start). If fn
// returns ErrStop, scan stops and returns nil. Values are not prefetched:
// fn reads them with item.Value. Badger reuses the item's key and value
// buffers, so fn must copy what it keeps (string(k) and the decoders copy).
func (tx *Tx) scan(prefix, start []byte, reverse bool, fn func(*badger.Item) error) error {
	opt := badger.DefaultIteratorOptions
	opt.PrefetchValues = false
	opt.Prefix = prefix
	opt.Reverse = reverse
	it := tx.txn.NewIterator(opt)
	defer it.Close()
	for it.Seek(start); it.Valid(); it.Next() {
		if err := fn(it.Item()); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

// NextIno allocates a fresh inode number. Numbers are never reused: the
// last one allocated is a counter key, so concurrent allocations conflict
// and Update retries one of them.
func (tx *Tx) NextIno() (Ino, error) {
	last := uint64(RootIno)
	err := tx.get(keyNextIno, func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("counter of %d bytes: %w", len(v), ErrCorrupt)
		}
		last = binary.BigEndian.Uint64(v)
		return nil
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return 0, fmt.Errorf("next ino: %w", err)
	}
	next := last + 1
	if err := tx.set(keyNextIno, binary.BigEndian.AppendUint64(nil, next)); err != nil {
		return 0, fmt.Errorf("next ino: %w", err)
	}
	return Ino(next), nil
}

// GetInode returns inode ino, or ErrNotFound.
func (tx *Tx) GetInode(ino Ino) (*Inode, error) {
	if tx.sn != nil {
		if in, ok := tx.sn.inode(ino); ok {
			return &in, nil
		}
	}
	var in *Inode
	err := tx.get(inodeKey(ino), func(v []byte) error {
		var err error
		in, err = decodeInode(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get inode %d: %w", ino, err)
	}
	if in.Ino != ino {
		return nil, fmt.Errorf("get inode %d: record of inode %d: %w", ino, in.Ino, ErrCorrupt)
	}
	if tx.sn != nil {
		tx.sn.keepInode(in)
	}
	return in, nil
}

// PutInode creates or replaces inode in.Ino, and keeps the orphan index
// in step with in.Status.
func (tx *Tx) PutInode(in *Inode) error {
	err := tx.set(inodeKey(in.Ino), encodeInode(in))
	if err == nil {
		err = tx.setIndex(orphanKey(in.Ino), in.Status == StatusDeleting)
	}
	if err != nil {
		return fmt.Errorf("put inode %d: %w", in.Ino, err)
	}
	return nil
}

// DeleteInode deletes inode ino, its extended attributes and its orphan
// index key. It does not delete chunk maps: the caller deletes those with
// PutChunk, in batches. Deleting a missing inode is not an error.
func (tx *Tx) DeleteInode(ino Ino) error {
	var keys [][]byte
	prefix := xattrPrefix(ino)
	err := tx.scan(prefix, prefix, false, func(item *badger.Item) error {
		keys = append(keys, item.KeyCopy(nil))
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete inode %d: %w", ino, err)
	}
	keys = append(keys, inodeKey(ino), orphanKey(ino))
	for _, k := range keys {
		if err := tx.delete(k); err != nil {
			return fmt.Errorf("delete inode %d: %w", ino, err)
		}
	}
	return nil
}

// Orphans calls fn for each inode with StatusDeleting, in inode order.
func (tx *Tx) Orphans(fn func(*Inode) error) error {
	prefix := []byte{prefixOrphan}
	err := tx.scan(prefix, prefix, false, func(item *badger.Item) error {
		ino, ok := keyIno(item.Key())
		if !ok {
			return fmt.Errorf("orphan key %x: %w", item.Key(), ErrCorrupt)
		}
		in, err := tx.GetInode(ino)
		if err != nil {
			return err // ErrNotFound here means the index is broken
		}
		return fn(in)
	})
	if err != nil {
		return fmt.Errorf("orphans: %w", err)
	}
	return nil
}

// Inodes calls fn for each inode, in inode order.
func (tx *Tx) Inodes(fn func(*Inode) error) error {
	prefix := []byte{prefixInode}
	err := tx.scan(prefix, prefix, false, func(item *badger.Item) error {
		var in *Inode
		err := item.Value(func(v []byte) error {
			var err error
			in, err = decodeInode(v)
			return err
		})
		if err != nil {
			return fmt.Errorf("inode key %x: %w", item.Key(), err)
		}
		return fn(in)
	})
	if err != nil {
		return fmt.Errorf("inodes: %w", err)
	}
	return nil
}

// Lookup returns the entry name of directory parent, or ErrNotFound.
func (tx *Tx) Lookup(parent Ino, name string) (Dirent, error) {
	var de Dirent
	err := tx.get(direntKey(parent, name), func(v []byte) error {
		var err error
		de, err = decodeDirent(name, v)
		return err
	})
	if err != nil {
		return Dirent{}, fmt.Errorf("lookup %d/%q: %w", parent, name, err)
	}
	return de, nil
}

// PutDirent creates or replaces the entry d.Name of directory parent.
func (tx *Tx) PutDirent(parent Ino, d Dirent) error {
	if d.Name == "" {
		return fmt.Errorf("put dirent %d: empty name", parent)
	}
	if err := tx.set(direntKey(parent, d.Name), encodeDirent(d)); err != nil {
		return fmt.Errorf("put dirent %d/%q: %w", parent, d.Name, err)
	}
	return nil
}

// DeleteDirent deletes the entry name of directory parent, or returns
// ErrNotFound.
func (tx *Tx) DeleteDirent(parent Ino, name string) error {
	if err := tx.deleteExisting(direntKey(parent, name)); err != nil {
		return fmt.Errorf("delete dirent %d/%q: %w", parent, name, err)
	}
	return nil
}

// ReadDir calls fn for the entries of directory parent whose names sort
// strictly after after ("" starts at the beginning), in byte order of the
// names. It streams: a large directory is never held in memory.
func (tx *Tx) ReadDir(parent Ino, after string, fn func(Dirent) error) error {
	prefix := direntPrefix(parent)
	start := prefix
	if after != "" {
		// after+"\x00" is the smallest name that sorts after after.
		start = append(direntKey(parent, after), 0)
	}
	err := tx.scan(prefix, start, false, func(item *badger.Item) error {
		name := string(item.Key()[len(prefix):])
		var de Dirent
		err := item.Value(func(v []byte) error {
			var err error
			de, err = decodeDirent(name, v)
			return err
		})
		if err != nil {
			return fmt.Errorf("entry %q: %w", name, err)
		}
		return fn(de)
	})
	if err != nil {
		return fmt.Errorf("readdir %d: %w", parent, err)
	}
	return nil
}

// DirEmpty reports whether directory parent has no entries.
func (tx *Tx) DirEmpty(parent Ino) (bool, error) {
	empty := true
	prefix := direntPrefix(parent)
	err := tx.scan(prefix, prefix, false, func(*badger.Item) error {
		empty = false
		return ErrStop
	})
	if err != nil {
		return false, fmt.Errorf("dir empty %d: %w", parent, err)
	}
	return empty, nil
}

// GetChunk returns chunk idx of ino. A missing chunk is a hole: (nil, nil).
func (tx *Tx) GetChunk(ino Ino, idx uint64) (Chunk, error) {
	var c Chunk
	err := tx.get(chunkKey(ino, idx), func(v []byte) error {
		var err error
		c, err = decodeChunk(v)
		return err
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("get chunk %d/%d: %w", ino, idx, err)
	}
	return c, nil
}

// PutChunk stores chunk idx of ino; an empty c deletes it (a hole).
func (tx *Tx) PutChunk(ino Ino, idx uint64, c Chunk) error {
	var err error
	if len(c) == 0 {
		err = tx.delete(chunkKey(ino, idx))
	} else {
		err = tx.set(chunkKey(ino, idx), encodeChunk(c))
	}
	if err != nil {
		return fmt.Errorf("put chunk %d/%d: %w", ino, idx, err)
	}
	return nil
}

// Chunks calls fn for each chunk of ino with index >= from, in index order.
func (tx *Tx) Chunks(ino Ino, from uint64, fn func(idx uint64, c Chunk) error) error {
	err := tx.scan(chunkPrefix(ino), chunkKey(ino, from), false, func(item *badger.Item) error {
		idx, ok := keyChunkIdx(item.Key())
		if !ok {
			return fmt.Errorf("chunk key %x: %w", item.Key(), ErrCorrupt)
		}
		var c Chunk
		err := item.Value(func(v []byte) error {
			var err error
			c, err = decodeChunk(v)
			return err
		})
		if err != nil {
			return fmt.Errorf("chunk %d: %w", idx, err)
		}
		return fn(idx, c)
	})
	if err != nil {
		return fmt.Errorf("chunks of %d: %w", ino, err)
	}
	return nil
}

// LastChunk returns the highest chunk index of ino; ok is false if ino has
// no chunks.
func (tx *Tx) LastChunk(ino Ino) (idx uint64, ok bool, err error) {
	err = tx.scan(chunkPrefix(ino), chunkKey(ino, ^uint64(0)), true, func(item *badger.Item) error {
		idx, ok = keyChunkIdx(item.Key())
		if !ok {
			return fmt.Errorf("chunk key %x: %w", item.Key(), ErrCorrupt)
		}
		return ErrStop
	})
	if err != nil {
		return 0, false, fmt.Errorf("last chunk of %d: %w", ino, err)
	}
	return idx, ok, nil
}

// GetPart returns part id, or ErrNotFound.
func (tx *Tx) GetPart(id uuid.UUID) (*Part, error) {
	var p *Part
	err := tx.get(partKey(id), func(v []byte) error {
		var err error
		p, err = decodePart(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get part %s: %w", id, err)
	}
	if p.ID != id {
		return nil, fmt.Errorf("get part %s: record of part %s: %w", id, p.ID, ErrCorrupt)
	}
	return p, nil
}

// PutPart creates or replaces part p.ID, and keeps the garbage index in
// step with p.Status.
func (tx *Tx) PutPart(p *Part) error {
	err := tx.set(partKey(p.ID), encodePart(p))
	if err == nil {
		garbage := p.Status == PartPending || p.Status == PartDeleting
		err = tx.setIndex(garbageKey(p.ID), garbage)
	}
	if err != nil {
		return fmt.Errorf("put part %s: %w", p.ID, err)
	}
	return nil
}

// DeletePart deletes part id and its garbage index key. Deleting a
// missing part is not an error.
func (tx *Tx) DeletePart(id uuid.UUID) error {
	err := tx.delete(partKey(id))
	if err == nil {
		err = tx.delete(garbageKey(id))
	}
	if err != nil {
		return fmt.Errorf("delete part %s: %w", id, err)
	}
	return nil
}

// RemovePart deletes p's record, as read in this transaction, like
// DeletePart, but deletes the garbage index key only when p's status put
// one there: a part's removal from a chunk map then costs as many writes
// as its update, which keeps the bound on a transaction's writes.
func (tx *Tx) RemovePart(p *Part) error {
	err := tx.delete(partKey(p.ID))
	if err == nil && (p.Status == PartPending || p.Status == PartDeleting) {
		err = tx.delete(garbageKey(p.ID))
	}
	if err != nil {
		return fmt.Errorf("remove part %s: %w", p.ID, err)
	}
	return nil
}

// Parts calls fn for each part, in ID byte order.
func (tx *Tx) Parts(fn func(*Part) error) error {
	prefix := []byte{prefixPart}
	err := tx.scan(prefix, prefix, false, func(item *badger.Item) error {
		var p *Part
		err := item.Value(func(v []byte) error {
			var err error
			p, err = decodePart(v)
			return err
		})
		if err != nil {
			return fmt.Errorf("part key %x: %w", item.Key(), err)
		}
		return fn(p)
	})
	if err != nil {
		return fmt.Errorf("parts: %w", err)
	}
	return nil
}

// Garbage calls fn for each part that is PartPending or PartDeleting, in
// ID byte order.
func (tx *Tx) Garbage(fn func(*Part) error) error {
	prefix := []byte{prefixGarbage}
	err := tx.scan(prefix, prefix, false, func(item *badger.Item) error {
		id, ok := keyUUID(item.Key())
		if !ok {
			return fmt.Errorf("garbage key %x: %w", item.Key(), ErrCorrupt)
		}
		p, err := tx.GetPart(id)
		if err != nil {
			return err // ErrNotFound here means the index is broken
		}
		return fn(p)
	})
	if err != nil {
		return fmt.Errorf("garbage: %w", err)
	}
	return nil
}

// GetXattr returns the value of extended attribute name of ino, or
// ErrNotFound.
func (tx *Tx) GetXattr(ino Ino, name string) ([]byte, error) {
	var value []byte
	err := tx.get(xattrKey(ino, name), func(v []byte) error {
		value = append([]byte{}, v...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get xattr %d %q: %w", ino, name, err)
	}
	return value, nil
}

// SetXattr creates or replaces extended attribute name of ino.
func (tx *Tx) SetXattr(ino Ino, name string, value []byte) error {
	if name == "" {
		return fmt.Errorf("set xattr %d: empty name", ino)
	}
	if err := tx.set(xattrKey(ino, name), value); err != nil {
		return fmt.Errorf("set xattr %d %q: %w", ino, name, err)
	}
	return nil
}

// RemoveXattr removes extended attribute name of ino, or returns
// ErrNotFound.
func (tx *Tx) RemoveXattr(ino Ino, name string) error {
	if err := tx.deleteExisting(xattrKey(ino, name)); err != nil {
		return fmt.Errorf("remove xattr %d %q: %w", ino, name, err)
	}
	return nil
}

// ListXattr returns the names of the extended attributes of ino, in byte
// order.
func (tx *Tx) ListXattr(ino Ino) ([]string, error) {
	var names []string
	prefix := xattrPrefix(ino)
	err := tx.scan(prefix, prefix, false, func(item *badger.Item) error {
		names = append(names, string(item.Key()[len(prefix):]))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list xattr %d: %w", ino, err)
	}
	return names, nil
}
