package engine

import (
	"slices"
	"time"
)

// interval is a half-open byte range [start, end) inside a chunk.
type interval struct{ start, end int }

// dirtyChunk is the buffered, unflushed data of one chunk: buf holds the
// written bytes at their chunk offsets, ivs says which bytes of buf were
// written (the rest of buf is garbage and never read).
type dirtyChunk struct {
	buf       []byte
	ivs       []interval // sorted, disjoint, non-touching
	lastWrite time.Time
}

// add records that [start, end) was written, merging touching ranges.
func (d *dirtyChunk) add(start, end int) {
	i := 0
	for i < len(d.ivs) && d.ivs[i].end < start {
		i++
	}
	j := i
	for j < len(d.ivs) && d.ivs[j].start <= end {
		start = min(start, d.ivs[j].start)
		end = max(end, d.ivs[j].end)
		j++
	}
	d.ivs = slices.Replace(d.ivs, i, j, interval{start, end})
}

// full reports whether the whole chunk of size n was written.
func (d *dirtyChunk) full(n int) bool {
	return len(d.ivs) == 1 && d.ivs[0].start == 0 && d.ivs[0].end >= n
}

// covers reports whether [start, end) was written entirely.
func (d *dirtyChunk) covers(start, end int) bool {
	for _, iv := range d.ivs {
		if iv.start <= start && end <= iv.end {
			return true
		}
	}
	return false
}

// gaps returns the parts of [start, end) that were not written.
func (d *dirtyChunk) gaps(start, end int) []interval {
	var out []interval
	for _, iv := range d.ivs {
		if iv.end <= start {
			continue
		}
		if iv.start >= end {
			break
		}
		if iv.start > start {
			out = append(out, interval{start, iv.start})
		}
		start = max(start, iv.end)
	}
	if start < end {
		out = append(out, interval{start, end})
	}
	return out
}

// overlay copies the written bytes that fall in [off, off+len(dst)) of the
// chunk into dst, and nothing at or beyond limit.
func (d *dirtyChunk) overlay(dst []byte, off, limit int) {
	end := min(off+len(dst), limit)
	for _, iv := range d.ivs {
		s, e := max(iv.start, off), min(iv.end, end)
		if s < e {
			copy(dst[s-off:e-off], d.buf[s:e])
		}
	}
}

// clip forgets everything written at or beyond n.
func (d *dirtyChunk) clip(n int) {
	out := d.ivs[:0]
	for _, iv := range d.ivs {
		if iv.start >= n {
			continue
		}
		iv.end = min(iv.end, n)
		out = append(out, iv)
	}
	d.ivs = out
}

// mergeUnder puts older's written bytes under d's: where both wrote, d
// wins. Used to give a failed flush's data back to the dirty buffer.
func (d *dirtyChunk) mergeUnder(older *dirtyChunk) {
	for _, iv := range older.ivs {
		pos := iv.start
		for _, mine := range d.ivs {
			if mine.end <= pos || mine.start >= iv.end {
				continue
			}
			if mine.start > pos {
				copy(d.buf[pos:mine.start], older.buf[pos:mine.start])
			}
			pos = max(pos, mine.end)
		}
		if pos < iv.end {
			copy(d.buf[pos:iv.end], older.buf[pos:iv.end])
		}
	}
	for _, iv := range older.ivs {
		d.add(iv.start, iv.end)
	}
}

// written returns the total bytes written.
func (d *dirtyChunk) written() int {
	n := 0
	for _, iv := range d.ivs {
		n += iv.end - iv.start
	}
	return n
}
