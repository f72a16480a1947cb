package chunkstore

import "iter"

// Span is the piece of a byte range that falls inside one chunk.
type Span struct {
	Index uint64 // chunk index
	Off   int    // offset inside the chunk
	Len   int    // bytes in this chunk
	Pos   int    // offset of the piece inside the whole range
}

// Spans splits the range [off, off+n) into per-chunk pieces, in order.
// off must be >= 0 and chunkSize > 0.
func Spans(off int64, n int, chunkSize int64) iter.Seq[Span] {
	return func(yield func(Span) bool) {
		pos := 0
		for pos < n {
			abs := off + int64(pos)
			in := int(abs % chunkSize)
			l := min(int(chunkSize)-in, n-pos)
			if !yield(Span{Index: uint64(abs / chunkSize), Off: in, Len: l, Pos: pos}) {
				return
			}
			pos += l
		}
	}
}

// ChunkCount returns how many chunks a file of size bytes spans.
func ChunkCount(size, chunkSize int64) uint64 {
	if size <= 0 {
		return 0
	}
	return uint64((size-1)/chunkSize) + 1
}
