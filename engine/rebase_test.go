package engine

import (
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/pfs-project/pfs/registry"
)

// TestRebase: a compaction of the map before lands under slices committed
// since, and is refused when the chunk changed in any other way.
func TestRebase(t *testing.T) {
	a, b, c, n1, n2, w := uuid.New(), uuid.New(), uuid.New(), uuid.New(), uuid.New(), uuid.New()
	sl := func(p uuid.UUID, off, n uint32) registry.Slice {
		return registry.Slice{Part: p, PartOff: off, Off: off, Len: n}
	}
	before := registry.Chunk{sl(a, 0, 1000), sl(b, 100, 10), sl(c, 500, 10)}
	whole := sl(w, 0, 1000)
	for _, tc := range []struct {
		name     string
		now      registry.Chunk
		after    registry.Chunk // nil: refused
		replaced registry.Chunk
	}{
		{"unchanged", before, registry.Chunk{whole}, before},
		{"a commit since", append(slices.Clone(before), sl(n1, 200, 10)),
			registry.Chunk{whole, sl(n1, 200, 10)}, before},
		{"a commit hid an old slice", registry.Chunk{sl(a, 0, 1000), sl(c, 500, 10), sl(n1, 90, 30), sl(n2, 700, 5)},
			registry.Chunk{whole, sl(n1, 90, 30), sl(n2, 700, 5)}, registry.Chunk{sl(a, 0, 1000), sl(c, 500, 10)}},
		{"truncate clipped a slice", registry.Chunk{sl(a, 0, 400), sl(b, 100, 10)}, nil, nil},
		{"truncate removed slices, a write since", registry.Chunk{sl(a, 0, 400), sl(b, 100, 10), sl(n1, 800, 10)}, nil, nil},
		{"truncate to zero, rewritten in part", registry.Chunk{sl(n1, 0, 600)}, nil, nil},
		{"rewritten whole", registry.Chunk{sl(n1, 0, 1000)}, nil, nil},
		{"another compaction", registry.Chunk{sl(n1, 0, 1000), sl(n2, 5, 5)}, nil, nil},
	} {
		after, replaced, ok := rebase(before, tc.now, whole)
		switch {
		case tc.after == nil && ok:
			t.Errorf("%s: rebased to %v, want refused", tc.name, after)
		case tc.after != nil && !ok:
			t.Errorf("%s: refused", tc.name)
		case tc.after != nil && (!slices.Equal(after, tc.after) || !slices.Equal(replaced, tc.replaced)):
			t.Errorf("%s: got %v replacing %v, want %v replacing %v", tc.name, after, replaced, tc.after, tc.replaced)
		}
	}
}
