package chunkstore

import (
	"testing"
)

func TestSpans(t *testing.T) {
	const cs = 10
	cases := []struct {
		off  int64
		n    int
		want []Span
	}{
		{0, 0, nil},
		{0, 1, []Span{{0, 0, 1, 0}}},
		{0, 10, []Span{{0, 0, 10, 0}}},
		{0, 11, []Span{{0, 0, 10, 0}, {1, 0, 1, 10}}},
		{9, 2, []Span{{0, 9, 1, 0}, {1, 0, 1, 1}}},
		{10, 10, []Span{{1, 0, 10, 0}}},
		{5, 25, []Span{{0, 5, 5, 0}, {1, 0, 10, 5}, {2, 0, 10, 15}}},
		{1<<40 + 3, 4, []Span{{(1<<40 + 3) / cs, 9, 1, 0}, {(1<<40+3)/cs + 1, 0, 3, 1}}},
	}
	for _, c := range cases {
		var got []Span
		for s := range Spans(c.off, c.n, cs) {
			got = append(got, s)
		}
		if len(got) != len(c.want) {
			t.Fatalf("Spans(%d,%d): got %v want %v", c.off, c.n, got, c.want)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("Spans(%d,%d)[%d]: got %+v want %+v", c.off, c.n, i, got[i], c.want[i])
			}
		}
	}
}

func TestSpansEarlyStop(t *testing.T) {
	n := 0
	for range Spans(0, 100, 10) {
		n++
		if n == 3 {
			break
		}
	}
	if n != 3 {
		t.Fatalf("iteration did not stop: %d", n)
	}
}

func TestChunkCount(t *testing.T) {
	for _, c := range []struct{ size, want int64 }{{0, 0}, {1, 1}, {10, 1}, {11, 2}, {20, 2}, {21, 3}, {-1, 0}} {
		if got := ChunkCount(c.size, 10); got != uint64(c.want) {
			t.Errorf("ChunkCount(%d) = %d want %d", c.size, got, c.want)
		}
	}
}

// FuzzSpans checks that the pieces tile the range exactly and stay inside
// their chunks, for any offset and length.
func FuzzSpans(f *testing.F) {
	f.Add(int64(0), 0, int64(4096))
	f.Add(int64(4095), 2, int64(4096))
	f.Add(int64(1)<<50, 1<<20, int64(1)<<22)
	f.Fuzz(func(t *testing.T, off int64, n int, cs int64) {
		if off < 0 || n < 0 || n > 1<<24 || cs <= 0 || cs > 1<<30 || off > 1<<62 {
			return
		}
		pos := 0
		for s := range Spans(off, n, cs) {
			if s.Pos != pos || s.Len <= 0 || s.Off < 0 || int64(s.Off+s.Len) > cs {
				t.Fatalf("bad span %+v at pos %d", s, pos)
			}
			if int64(s.Index)*cs+int64(s.Off) != off+int64(pos) {
				t.Fatalf("span %+v does not start at %d", s, off+int64(pos))
			}
			pos += s.Len
		}
		if pos != n {
			t.Fatalf("spans cover %d bytes, want %d", pos, n)
		}
	})
}
