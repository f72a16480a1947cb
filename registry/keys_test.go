package registry

import (
	"bytes"
	"math"
	"testing"
)

func TestKeyOrder(t *testing.T) {
	inos := []Ino{0, 1, 2, 255, 256, 65535, 1 << 32, math.MaxUint64}
	for i := 1; i < len(inos); i++ {
		if bytes.Compare(inodeKey(inos[i-1]), inodeKey(inos[i])) >= 0 {
			t.Errorf("inode key %d does not sort before %d", inos[i-1], inos[i])
		}
	}
	idxs := []uint64{0, 1, 255, 256, 1 << 40, math.MaxUint64}
	for i := 1; i < len(idxs); i++ {
		if bytes.Compare(chunkKey(7, idxs[i-1]), chunkKey(7, idxs[i])) >= 0 {
			t.Errorf("chunk key %d does not sort before %d", idxs[i-1], idxs[i])
		}
	}
	// The last chunk of ino 7 sorts before the first of ino 8.
	if bytes.Compare(chunkKey(7, math.MaxUint64), chunkKey(8, 0)) >= 0 {
		t.Error("chunks of ino 7 and 8 interleave")
	}
}

func TestKeyPrefixesDoNotLeak(t *testing.T) {
	// Parent 256 is 00..01 00: its entries must not carry parent 1's prefix.
	if bytes.HasPrefix(direntKey(256, "a"), direntPrefix(1)) {
		t.Error("dirent of parent 256 has the prefix of parent 1")
	}
	if bytes.HasPrefix(direntKey(1, "\x00a"), direntPrefix(256)) {
		t.Error("dirent of parent 1 has the prefix of parent 256")
	}
	if !bytes.HasPrefix(direntKey(1, "a"), direntPrefix(1)) {
		t.Error("dirent key lacks its prefix")
	}
	if bytes.HasPrefix(xattrKey(256, "user.a"), xattrPrefix(1)) {
		t.Error("xattr of ino 256 has the prefix of ino 1")
	}
	if bytes.HasPrefix(chunkKey(256, 0), chunkPrefix(1)) {
		t.Error("chunk of ino 256 has the prefix of ino 1")
	}
}

func TestKeyDecode(t *testing.T) {
	if ino, ok := keyIno(orphanKey(1234)); !ok || ino != 1234 {
		t.Errorf("keyIno = %d, %v", ino, ok)
	}
	if idx, ok := keyChunkIdx(chunkKey(5, 1<<40)); !ok || idx != 1<<40 {
		t.Errorf("keyChunkIdx = %d, %v", idx, ok)
	}
	if _, ok := keyChunkIdx(chunkPrefix(5)); ok {
		t.Error("keyChunkIdx accepted a short key")
	}
	id := sampleParts()[1].ID
	if got, ok := keyUUID(garbageKey(id)); !ok || got != id {
		t.Errorf("keyUUID = %v, %v", got, ok)
	}
}
