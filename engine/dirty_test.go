package engine

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// model is a byte-per-byte reference for dirtyChunk.
type model struct {
	data    []byte
	written []bool
}

func TestDirtyChunkAgainstModel(t *testing.T) {
	const n = 64
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 2000; round++ {
		d := &dirtyChunk{buf: make([]byte, n)}
		m := model{data: make([]byte, n), written: make([]bool, n)}
		for op := 0; op < 8; op++ {
			s := rng.IntN(n)
			e := s + 1 + rng.IntN(n-s)
			v := byte(rng.IntN(255) + 1)
			for i := s; i < e; i++ {
				d.buf[i], m.data[i], m.written[i] = v, v, true
			}
			d.add(s, e)
			if rng.IntN(8) == 0 {
				c := rng.IntN(n)
				d.clip(c)
				for i := c; i < n; i++ {
					m.written[i] = false
				}
			}
		}
		for i := 1; i < len(d.ivs); i++ {
			if d.ivs[i-1].end >= d.ivs[i].start {
				t.Fatalf("intervals not disjoint and separated: %v", d.ivs)
			}
		}
		got := make([]byte, n)
		d.overlay(got, 0, n)
		want := make([]byte, n)
		cnt := 0
		for i := range want {
			if m.written[i] {
				want[i] = m.data[i]
				cnt++
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("overlay mismatch\n got %v\nwant %v\nivs %v", got, want, d.ivs)
		}
		if d.written() != cnt {
			t.Fatalf("written %d want %d", d.written(), cnt)
		}
		for _, r := range [][2]int{{0, n}, {n / 4, n / 2}, {rng.IntN(n), n}} {
			pos := r[0]
			for _, g := range d.gaps(r[0], r[1]) {
				if g.start < pos || g.end <= g.start || g.end > r[1] {
					t.Fatalf("gaps(%d, %d) = %v: out of order or range (ivs %v)", r[0], r[1], d.gaps(r[0], r[1]), d.ivs)
				}
				for i := pos; i < g.start; i++ {
					if !m.written[i] {
						t.Fatalf("gaps(%d, %d) = %v misses unwritten byte %d (ivs %v)", r[0], r[1], d.gaps(r[0], r[1]), i, d.ivs)
					}
				}
				for i := g.start; i < g.end; i++ {
					if m.written[i] {
						t.Fatalf("gaps(%d, %d) = %v holds written byte %d (ivs %v)", r[0], r[1], d.gaps(r[0], r[1]), i, d.ivs)
					}
				}
				pos = g.end
			}
			for i := pos; i < r[1]; i++ {
				if !m.written[i] {
					t.Fatalf("gaps(%d, %d) misses unwritten byte %d (ivs %v)", r[0], r[1], i, d.ivs)
				}
			}
		}
		full := cnt == n
		if d.full(n) != full {
			t.Fatalf("full %v want %v (%v)", d.full(n), full, d.ivs)
		}
	}
}

func TestDirtyMergeUnder(t *testing.T) {
	older := &dirtyChunk{buf: []byte("aaaaaaaaaa")}
	older.add(0, 4)
	older.add(6, 10)
	newer := &dirtyChunk{buf: []byte("bbbbbbbbbb")}
	newer.add(2, 7)
	newer.mergeUnder(older)
	got := make([]byte, 10)
	newer.overlay(got, 0, 10)
	if string(got) != "aabbbbbaaa" {
		t.Fatalf("got %q", got)
	}
	if !newer.full(10) {
		t.Fatalf("merged intervals %v should cover the chunk", newer.ivs)
	}
}

func TestOverlayLimit(t *testing.T) {
	d := &dirtyChunk{buf: []byte("0123456789")}
	d.add(0, 10)
	got := make([]byte, 6)
	d.overlay(got, 2, 5)
	if string(got) != "234\x00\x00\x00" {
		t.Fatalf("got %q", got)
	}
}
