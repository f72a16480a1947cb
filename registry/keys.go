package registry

import (
	"encoding/binary"

	"github.com/google/uuid"
)

// Key schema. Every key starts with a one-byte prefix naming its table.
// Integers in keys are 8-byte big-endian, so Badger's byte order is
// numeric order; names are raw bytes and sort in byte order. Fixed-width
// integers also keep prefixes apart: the dirents of parent 1 ("d" 00..01)
// are not a prefix of those of parent 256 ("d" 00..01 00).
//
//	v                 → schema version (uvarint), schemaVersion
//	n "ino"           → last allocated inode number (8 bytes big-endian)
//	i ino             → Inode (codec.go)
//	o ino             → empty; orphan index, present iff the inode's Status
//	                    is StatusDeleting
//	d parent name     → Dirent value: child ino, child type bits (codec.go)
//	x ino name        → extended attribute value, raw bytes
//	c ino idx         → Chunk of chunk idx of ino (codec.go); no key = hole
//	p id              → Part (codec.go); id is the 16-byte UUID
//	g id              → empty; garbage index, present iff the part's Status
//	                    is PartPending or PartDeleting
//	b key             → the stored bytes of a small part kept inline in the
//	                    registry instead of the backend (blob.go); key is
//	                    the part's backend key
//
// PutInode and PutPart maintain the two indexes in the same transaction as
// the record, so an index never disagrees with a committed record. Values
// start with a codec version byte (codec.go); index values are empty.
const (
	prefixVersion = 'v'
	prefixCounter = 'n'
	prefixInode   = 'i'
	prefixOrphan  = 'o'
	prefixDirent  = 'd'
	prefixXattr   = 'x'
	prefixChunk   = 'c'
	prefixPart    = 'p'
	prefixGarbage = 'g'
	prefixBlob    = 'b'
)

// schemaVersion is stored under the v key; Open refuses other versions.
const schemaVersion = 1

var (
	keyVersion = []byte{prefixVersion}
	keyNextIno = []byte{prefixCounter, 'i', 'n', 'o'}
)

// inoKey returns prefix + ino, with room for extra more bytes.
func inoKey(prefix byte, ino Ino, extra int) []byte {
	k := make([]byte, 9, 9+extra)
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:], uint64(ino))
	return k
}

func inodeKey(ino Ino) []byte  { return inoKey(prefixInode, ino, 0) }
func orphanKey(ino Ino) []byte { return inoKey(prefixOrphan, ino, 0) }

// direntPrefix is the prefix of all entries of directory parent.
func direntPrefix(parent Ino) []byte { return inoKey(prefixDirent, parent, 0) }

func direntKey(parent Ino, name string) []byte {
	return append(inoKey(prefixDirent, parent, len(name)), name...)
}

// xattrPrefix is the prefix of all extended attributes of ino.
func xattrPrefix(ino Ino) []byte { return inoKey(prefixXattr, ino, 0) }

func xattrKey(ino Ino, name string) []byte {
	return append(inoKey(prefixXattr, ino, len(name)), name...)
}

// chunkPrefix is the prefix of all chunk keys of ino.
func chunkPrefix(ino Ino) []byte { return inoKey(prefixChunk, ino, 8) }

func chunkKey(ino Ino, idx uint64) []byte {
	return binary.BigEndian.AppendUint64(chunkPrefix(ino), idx)
}

func partKey(id uuid.UUID) []byte    { return append([]byte{prefixPart}, id[:]...) }
func garbageKey(id uuid.UUID) []byte { return append([]byte{prefixGarbage}, id[:]...) }

// keyIno returns the inode number following the prefix byte of an i, o, d,
// x or c key.
func keyIno(k []byte) (Ino, bool) {
	if len(k) < 9 {
		return 0, false
	}
	return Ino(binary.BigEndian.Uint64(k[1:9])), true
}

// keyChunkIdx returns the chunk index of a c key.
func keyChunkIdx(k []byte) (uint64, bool) {
	if len(k) != 17 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[9:]), true
}

// keyUUID returns the UUID of a p or g key.
func keyUUID(k []byte) (uuid.UUID, bool) {
	var id uuid.UUID
	if len(k) != 17 {
		return id, false
	}
	copy(id[:], k[1:])
	return id, true
}
