package registry

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/google/uuid"
)

// Value encodings. Each starts with codecVersion; integers are uvarints
// (times are zig-zag varints), UUIDs and MD5s are raw 16 bytes, strings are
// a uvarint length and the bytes. Decoders reject unknown versions, values
// out of range, unknown statuses and trailing bytes with ErrCorrupt, and
// bound every length and count by the bytes that remain, so hostile input
// can neither panic nor make them allocate more than len(b).
//
//	Inode:  ver ino id mode uid gid rdev nlink size atime mtime ctime status target
//	Dirent: ver ino mode                      (the name is in the key)
//	Chunk:  ver count {part partOff off len}*count
//	Part:   ver id key size plainSize md5 compression status refs ino chunk
const codecVersion = 1

// minSliceLen is the smallest encoding of one Slice: a UUID and three
// one-byte uvarints.
const minSliceLen = 16 + 3

func encodeInode(in *Inode) []byte {
	b := make([]byte, 0, 64+len(in.Target))
	b = append(b, codecVersion)
	b = binary.AppendUvarint(b, uint64(in.Ino))
	b = append(b, in.ID[:]...)
	b = binary.AppendUvarint(b, uint64(in.Mode))
	b = binary.AppendUvarint(b, uint64(in.Uid))
	b = binary.AppendUvarint(b, uint64(in.Gid))
	b = binary.AppendUvarint(b, uint64(in.Rdev))
	b = binary.AppendUvarint(b, uint64(in.Nlink))
	b = binary.AppendUvarint(b, in.Size)
	b = binary.AppendVarint(b, in.Atime)
	b = binary.AppendVarint(b, in.Mtime)
	b = binary.AppendVarint(b, in.Ctime)
	b = append(b, byte(in.Status))
	b = appendString(b, in.Target)
	return b
}

func decodeInode(b []byte) (*Inode, error) {
	d := decoder{what: "inode", b: b}
	d.version()
	in := &Inode{}
	in.Ino = Ino(d.uvarint())
	in.ID = d.uuid()
	in.Mode = d.uint32()
	in.Uid = d.uint32()
	in.Gid = d.uint32()
	in.Rdev = d.uint32()
	in.Nlink = d.uint32()
	in.Size = d.uvarint()
	in.Atime = d.varint()
	in.Mtime = d.varint()
	in.Ctime = d.varint()
	in.Status = FileStatus(d.byte())
	if d.err == nil && in.Status > StatusDamaged {
		d.fail("unknown status %d", in.Status)
	}
	in.Target = d.string()
	if err := d.finish(); err != nil {
		return nil, err
	}
	return in, nil
}

// encodeDirent encodes the value of a dirent key; the name is in the key.
func encodeDirent(de Dirent) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64)
	b = append(b, codecVersion)
	b = binary.AppendUvarint(b, uint64(de.Ino))
	b = binary.AppendUvarint(b, uint64(de.Mode))
	return b
}

// decodeDirent decodes the value b of the dirent key of name.
func decodeDirent(name string, b []byte) (Dirent, error) {
	d := decoder{what: "dirent", b: b}
	d.version()
	de := Dirent{Name: name}
	de.Ino = Ino(d.uvarint())
	de.Mode = d.uint32()
	return de, d.finish()
}

func encodeChunk(c Chunk) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(c)*(16+3*binary.MaxVarintLen32))
	b = append(b, codecVersion)
	b = binary.AppendUvarint(b, uint64(len(c)))
	for _, s := range c {
		b = append(b, s.Part[:]...)
		b = binary.AppendUvarint(b, uint64(s.PartOff))
		b = binary.AppendUvarint(b, uint64(s.Off))
		b = binary.AppendUvarint(b, uint64(s.Len))
	}
	return b
}

// decodeChunk decodes a chunk map. A chunk with no slices decodes as nil.
func decodeChunk(b []byte) (Chunk, error) {
	d := decoder{what: "chunk", b: b}
	d.version()
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minSliceLen) {
		d.fail("%d slices in %d bytes", n, len(d.b))
	}
	if d.err != nil {
		return nil, d.finish()
	}
	var c Chunk
	if n > 0 {
		c = make(Chunk, n)
	}
	for i := range c {
		c[i].Part = d.uuid()
		c[i].PartOff = d.uint32()
		c[i].Off = d.uint32()
		c[i].Len = d.uint32()
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return c, nil
}

func encodePart(p *Part) []byte {
	b := make([]byte, 0, 80+len(p.Key))
	b = append(b, codecVersion)
	b = append(b, p.ID[:]...)
	b = appendString(b, p.Key)
	b = binary.AppendUvarint(b, uint64(p.Size))
	b = binary.AppendUvarint(b, uint64(p.PlainSize))
	b = append(b, p.MD5[:]...)
	b = append(b, p.Compression, byte(p.Status))
	b = binary.AppendUvarint(b, uint64(p.Refs))
	b = binary.AppendUvarint(b, uint64(p.Ino))
	b = binary.AppendUvarint(b, p.Chunk)
	return b
}

func decodePart(b []byte) (*Part, error) {
	d := decoder{what: "part", b: b}
	d.version()
	p := &Part{}
	p.ID = d.uuid()
	p.Key = d.string()
	p.Size = d.uint32()
	p.PlainSize = d.uint32()
	copy(p.MD5[:], d.bytes(16))
	p.Compression = d.byte()
	p.Status = PartStatus(d.byte())
	if d.err == nil && p.Status > PartDeleting {
		d.fail("unknown status %d", p.Status)
	}
	p.Refs = d.uint32()
	p.Ino = Ino(d.uvarint())
	p.Chunk = d.uvarint()
	if err := d.finish(); err != nil {
		return nil, err
	}
	return p, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads a value field by field. After the first error every read
// returns a zero value and finish reports that error, so decode functions
// read all fields and check once.
type decoder struct {
	what string // record type, for errors
	b    []byte // the bytes not read yet
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("decode %s: %s: %w", d.what, fmt.Sprintf(format, args...), ErrCorrupt)
	}
}

func (d *decoder) version() {
	if v := d.byte(); d.err == nil && v != codecVersion {
		d.fail("unknown version %d", v)
	}
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.fail("truncated")
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) byte() byte {
	if p := d.bytes(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) uuid() uuid.UUID {
	var id uuid.UUID
	copy(id[:], d.bytes(16))
	return id
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint32() uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.fail("%d overflows uint32", v)
		return 0
	}
	return uint32(v)
}

// string reads a length-prefixed string. A length beyond the remaining
// bytes fails before anything is allocated.
func (d *decoder) string() string {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.fail("string of %d bytes in %d", n, len(d.b))
		return ""
	}
	return string(d.bytes(int(n)))
}

// finish returns the first error, or an error if bytes remain.
func (d *decoder) finish() error {
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}
