// Package crashdata is the content the crash workload (crashload) writes
// and the crash checker (test/crash_test.go) verifies: 4 KiB blocks that
// name their file, their write and their offset, so that any block read
// back says where it came from, and any other bytes are detectably wrong.
package crashdata

import "encoding/binary"

// BlockSize is the unit the workload writes and the checker verifies.
const BlockSize = 4096

// Block returns the block at file offset off of file fid as written by
// the write operation cid: a header, then splitmix64 output seeded by the
// three.
func Block(fid, cid uint32, off int64) []byte {
	b := make([]byte, BlockSize)
	copy(b, "pfscrash")
	binary.LittleEndian.PutUint32(b[8:], fid)
	binary.LittleEndian.PutUint32(b[12:], cid)
	binary.LittleEndian.PutUint64(b[16:], uint64(off))
	x := uint64(fid)<<32 | uint64(cid) ^ uint64(off)*0x9e3779b97f4a7c15
	for i := 24; i < BlockSize; i += 8 {
		x += 0x9e3779b97f4a7c15 // splitmix64
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		binary.LittleEndian.PutUint64(b[i:], z^z>>31)
	}
	return b
}
