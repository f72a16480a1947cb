package registry

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/uuid"
)

func sampleInodes() []*Inode {
	return []*Inode{
		{}, // all zero, empty symlink target
		{
			Ino: RootIno, ID: uuid.New(), Mode: syscall.S_IFDIR | 0o755, Uid: 1000, Gid: 1000,
			Nlink: 2, Atime: 1, Mtime: 2, Ctime: 3,
		},
		{
			Ino: 42, ID: uuid.New(), Mode: syscall.S_IFLNK | 0o777, Nlink: 1,
			Size: 11, Target: "../some/dir", Status: StatusWriting,
		},
		{
			Ino: math.MaxUint64, ID: uuid.Max, Mode: math.MaxUint32, Uid: math.MaxUint32,
			Gid: math.MaxUint32, Rdev: math.MaxUint32, Nlink: math.MaxUint32, Size: math.MaxUint64,
			Atime: math.MinInt64, Mtime: math.MaxInt64, Ctime: -1,
			Status: StatusDamaged, Target: strings.Repeat("x", 4096),
		},
	}
}

func sampleParts() []*Part {
	return []*Part{
		{},
		{
			ID: uuid.New(), Key: "parts/ab/cdef", Size: 100, PlainSize: 4 << 20,
			MD5: [16]byte{1, 2, 3, 15: 0xff}, Compression: 1, Status: PartStored, Refs: 3,
			Ino: 7, Chunk: 9,
		},
		{
			ID: uuid.Max, Key: strings.Repeat("k", 1000), Size: math.MaxUint32, PlainSize: math.MaxUint32,
			Compression: math.MaxUint8, Status: PartDeleting, Refs: math.MaxUint32,
			Ino: math.MaxUint64, Chunk: math.MaxUint64,
		},
	}
}

func sampleChunks() []Chunk {
	many := make(Chunk, 10000)
	for i := range many {
		many[i] = Slice{Part: uuid.New(), PartOff: uint32(i), Off: uint32(i * 7), Len: uint32(i * 13)}
	}
	return []Chunk{
		{{}},
		{{Part: uuid.New(), PartOff: 0, Off: 4096, Len: 512}},
		{{Part: uuid.Max, PartOff: math.MaxUint32, Off: math.MaxUint32, Len: math.MaxUint32}},
		many,
	}
}

func sampleDirents() []Dirent {
	return []Dirent{
		{Name: "a", Ino: 2, Mode: syscall.S_IFREG},
		{Name: strings.Repeat("n", 255), Ino: math.MaxUint64, Mode: math.MaxUint32},
		{Name: "x", Ino: 0, Mode: 0},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	t.Run("Inode", func(t *testing.T) {
		for _, in := range sampleInodes() {
			got, err := decodeInode(encodeInode(in))
			if err != nil {
				t.Fatalf("decode %+v: %v", in, err)
			}
			if *got != *in {
				t.Errorf("got %+v, want %+v", got, in)
			}
		}
	})
	t.Run("Dirent", func(t *testing.T) {
		for _, de := range sampleDirents() {
			got, err := decodeDirent(de.Name, encodeDirent(de))
			if err != nil {
				t.Fatalf("decode %+v: %v", de, err)
			}
			if got != de {
				t.Errorf("got %+v, want %+v", got, de)
			}
		}
	})
	t.Run("Chunk", func(t *testing.T) {
		for _, c := range sampleChunks() {
			got, err := decodeChunk(encodeChunk(c))
			if err != nil {
				t.Fatalf("decode chunk of %d slices: %v", len(c), err)
			}
			if !slices.Equal(got, c) {
				t.Errorf("chunk of %d slices: got %d slices, not equal", len(c), len(got))
			}
		}
		if got, err := decodeChunk(encodeChunk(nil)); err != nil || got != nil {
			t.Errorf("empty chunk: got %v, %v; want nil, nil", got, err)
		}
	})
	t.Run("Part", func(t *testing.T) {
		for _, p := range sampleParts() {
			got, err := decodePart(encodePart(p))
			if err != nil {
				t.Fatalf("decode %+v: %v", p, err)
			}
			if *got != *p {
				t.Errorf("got %+v, want %+v", got, p)
			}
		}
	})
}

func TestCodecRejectsGarbage(t *testing.T) {
	in := encodeInode(sampleInodes()[2])
	part := encodePart(sampleParts()[1])
	chunk := encodeChunk(sampleChunks()[1])
	dirent := encodeDirent(sampleDirents()[0])
	badStatus := bytes.Clone(in)
	badStatus[len(badStatus)-1-1-len("../some/dir")] = 200 // status byte before target
	cases := map[string]struct {
		decode func([]byte) error
		b      []byte
	}{
		"inode empty":          {decodeInodeErr, nil},
		"inode bad version":    {decodeInodeErr, append([]byte{9}, in[1:]...)},
		"inode truncated":      {decodeInodeErr, in[:len(in)-1]},
		"inode trailing":       {decodeInodeErr, append(bytes.Clone(in), 0)},
		"inode bad status":     {decodeInodeErr, badStatus},
		"inode huge target":    {decodeInodeErr, append(bytes.Clone(in[:len(in)-1-len("../some/dir")]), 0xff, 0xff, 0xff, 0xff, 0x0f)},
		"inode varint overrun": {decodeInodeErr, []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		"dirent empty":         {decodeDirentErr, nil},
		"dirent trailing":      {decodeDirentErr, append(bytes.Clone(dirent), 1)},
		"dirent mode overflow": {decodeDirentErr, []byte{1, 2, 0xff, 0xff, 0xff, 0xff, 0x1f}},
		"chunk empty":          {decodeChunkErr, nil},
		"chunk huge count":     {decodeChunkErr, []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
		"chunk truncated":      {decodeChunkErr, chunk[:len(chunk)-1]},
		"chunk trailing":       {decodeChunkErr, append(bytes.Clone(chunk), 0)},
		"part empty":           {decodePartErr, nil},
		"part truncated":       {decodePartErr, part[:len(part)-1]},
		"part trailing":        {decodePartErr, append(bytes.Clone(part), 0)},
		"part bad version":     {decodePartErr, append([]byte{0}, part[1:]...)},
	}
	for name, c := range cases {
		if err := c.decode(c.b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
}

func decodeInodeErr(b []byte) error  { _, err := decodeInode(b); return err }
func decodeDirentErr(b []byte) error { _, err := decodeDirent("n", b); return err }
func decodeChunkErr(b []byte) error  { _, err := decodeChunk(b); return err }
func decodePartErr(b []byte) error   { _, err := decodePart(b); return err }

// The fuzz targets check that decoding never panics, and that whatever
// decodes re-encodes to something that decodes to the same value.

func FuzzDecodeInode(f *testing.F) {
	for _, in := range sampleInodes() {
		f.Add(encodeInode(in))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := decodeInode(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		again, err := decodeInode(encodeInode(in))
		if err != nil || *again != *in {
			t.Fatalf("re-decode: got %+v, %v; want %+v", again, err, in)
		}
	})
}

func FuzzDecodeDirent(f *testing.F) {
	for _, de := range sampleDirents() {
		f.Add(encodeDirent(de))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		de, err := decodeDirent("name", b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		again, err := decodeDirent("name", encodeDirent(de))
		if err != nil || again != de {
			t.Fatalf("re-decode: got %+v, %v; want %+v", again, err, de)
		}
	})
}

func FuzzDecodeChunk(f *testing.F) {
	for _, c := range sampleChunks()[:3] {
		f.Add(encodeChunk(c))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeChunk(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if len(c) > len(b)/minSliceLen {
			t.Fatalf("%d slices from %d bytes", len(c), len(b))
		}
		again, err := decodeChunk(encodeChunk(c))
		if err != nil || !slices.Equal(again, c) {
			t.Fatalf("re-decode: got %+v, %v; want %+v", again, err, c)
		}
	})
}

func FuzzDecodePart(f *testing.F) {
	for _, p := range sampleParts() {
		f.Add(encodePart(p))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePart(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		again, err := decodePart(encodePart(p))
		if err != nil || *again != *p {
			t.Fatalf("re-decode: got %+v, %v; want %+v", again, err, p)
		}
	})
}
