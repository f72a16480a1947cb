package backendtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/pfs-project/pfs/chunkstore/backend"
)

// Run runs the conformance suite against fresh backends from newBE.
func Run(t *testing.T, newBE func(t *testing.T) backend.Backend) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, backend.Backend)
	}{
		{"SaveLoad", testSaveLoad},
		{"MissingIsNotFound", testMissing},
		{"RangeReads", testRange},
		{"Overwrite", testOverwrite},
		{"List", testList},
		{"Delete", testDelete},
		{"ConcurrentSave", testConcurrent},
		{"ContextCancel", testCancel},
		{"Usage", testUsage},
		{"SaveDoesNotRetain", testNoRetain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := newBE(t)
			t.Cleanup(func() {
				if err := be.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, be)
		})
	}
}

// NewKey returns a fresh random key shaped like the chunkstore's: a UUID
// string.
func NewKey() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// randBytes returns n random bytes.
func randBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

func save(t *testing.T, be backend.Backend, key string, data []byte) {
	t.Helper()
	if err := be.Save(context.Background(), key, data); err != nil {
		t.Fatalf("Save(%s, %d bytes): %v", key, len(data), err)
	}
}

// checkObject fails unless key holds exactly want, by Load and by Stat.
func checkObject(t *testing.T, be backend.Backend, key string, want []byte) {
	t.Helper()
	ctx := context.Background()
	got, err := be.Load(ctx, key, 0, -1)
	if err != nil {
		t.Fatalf("Load(%s): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Load(%s): got %d bytes %s, want %d bytes %s", key, len(got), digest(got), len(want), digest(want))
	}
	size, err := be.Stat(ctx, key)
	if err != nil {
		t.Fatalf("Stat(%s): %v", key, err)
	}
	if size != int64(len(want)) {
		t.Fatalf("Stat(%s) = %d, want %d", key, size, len(want))
	}
}

// digest abbreviates data for error messages.
func digest(data []byte) string {
	if len(data) > 8 {
		return fmt.Sprintf("%x…", data[:8])
	}
	return fmt.Sprintf("%x", data)
}

// listAll returns what List reports, failing on duplicates.
func listAll(t *testing.T, be backend.Backend) map[string]int64 {
	t.Helper()
	got := make(map[string]int64)
	err := be.List(context.Background(), func(key string, size int64) error {
		if _, dup := got[key]; dup {
			return fmt.Errorf("key %s listed twice", key)
		}
		got[key] = size
		return nil
	})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return got
}

func testSaveLoad(t *testing.T, be backend.Backend) {
	for _, size := range []int{0, 1, 2, 4095, 4096, 65537, 4 << 20} {
		key := NewKey()
		data := randBytes(size)
		save(t, be, key, data)
		checkObject(t, be, key, data)
	}
}

func testMissing(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	key := NewKey()
	save(t, be, NewKey(), []byte("another object")) // the backend is not empty
	if _, err := be.Load(ctx, key, 0, -1); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Load(missing) = %v, want ErrNotFound", err)
	}
	if _, err := be.Load(ctx, key, 1, 2); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Load(missing, 1, 2) = %v, want ErrNotFound", err)
	}
	if _, err := be.Stat(ctx, key); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Stat(missing) = %v, want ErrNotFound", err)
	}
	if err := be.Delete(ctx, key); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Delete(missing) = %v, want ErrNotFound", err)
	}
}

func testRange(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	const size = 1000
	data := randBytes(size)
	key := NewKey()
	save(t, be, key, data)
	empty := NewKey()
	save(t, be, empty, nil)

	for _, r := range []struct{ off, len int64 }{
		{0, -1}, {0, size}, {0, 1}, {10, 20}, {500, -1}, {999, 1}, {999, -1},
		{0, 0}, {123, 0}, {size, 0}, {size, -1},
	} {
		got, err := be.Load(ctx, key, r.off, r.len)
		if err != nil {
			t.Errorf("Load(%d, %d): %v", r.off, r.len, err)
			continue
		}
		end := int64(size)
		if r.len >= 0 {
			end = r.off + r.len
		}
		if want := data[r.off:end]; !bytes.Equal(got, want) {
			t.Errorf("Load(%d, %d): got %d bytes %s, want %d bytes %s", r.off, r.len, len(got), digest(got), len(want), digest(want))
		}
	}
	for _, r := range []struct{ off, len int64 }{
		{0, size + 1}, {990, 11}, {size, 1}, {size + 1, -1}, {size + 1, 0}, {-1, 10}, {-1, -1},
	} {
		if got, err := be.Load(ctx, key, r.off, r.len); !errors.Is(err, backend.ErrInvalidRange) {
			t.Errorf("Load(%d, %d) = %d bytes, %v; want ErrInvalidRange", r.off, r.len, len(got), err)
		}
	}

	for _, r := range []struct{ off, len int64 }{{0, -1}, {0, 0}} {
		if got, err := be.Load(ctx, empty, r.off, r.len); err != nil || len(got) != 0 {
			t.Errorf("Load(empty, %d, %d) = %d bytes, %v; want 0 bytes", r.off, r.len, len(got), err)
		}
	}
	for _, r := range []struct{ off, len int64 }{{0, 1}, {1, -1}} {
		if _, err := be.Load(ctx, empty, r.off, r.len); !errors.Is(err, backend.ErrInvalidRange) {
			t.Errorf("Load(empty, %d, %d) = %v, want ErrInvalidRange", r.off, r.len, err)
		}
	}
}

func testOverwrite(t *testing.T, be backend.Backend) {
	key := NewKey()
	first, second, third := randBytes(100_000), randBytes(50), randBytes(200_000)
	save(t, be, key, first)
	checkObject(t, be, key, first)
	save(t, be, key, second)
	checkObject(t, be, key, second)
	save(t, be, key, third)
	checkObject(t, be, key, third)
	if got := listAll(t, be); len(got) != 1 || got[key] != int64(len(third)) {
		t.Errorf("List after overwrites = %v, want only %s of size %d", got, key, len(third))
	}
}

func testList(t *testing.T, be backend.Backend) {
	if got := listAll(t, be); len(got) != 0 {
		t.Fatalf("List of empty backend = %v", got)
	}
	want := make(map[string]int64)
	for i := range 20 {
		key := NewKey()
		want[key] = int64(i * 37)
		save(t, be, key, randBytes(i*37))
	}
	got := listAll(t, be)
	for key, size := range want {
		if gs, ok := got[key]; !ok {
			t.Errorf("List: %s missing", key)
		} else if gs != size {
			t.Errorf("List: %s has size %d, want %d", key, gs, size)
		}
	}
	for key := range got {
		if _, ok := want[key]; !ok {
			t.Errorf("List: unexpected key %q", key)
		}
	}

	stop := errors.New("stop")
	calls := 0
	err := be.List(context.Background(), func(string, int64) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("List with failing fn = %v after %d calls, want its error after 1 call", err, calls)
	}
}

func testDelete(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	keep, gone := NewKey(), NewKey()
	save(t, be, keep, []byte("keep"))
	save(t, be, gone, []byte("gone"))
	if err := be.Delete(ctx, gone); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := be.Load(ctx, gone, 0, -1); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Load after Delete = %v, want ErrNotFound", err)
	}
	if _, err := be.Stat(ctx, gone); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Stat after Delete = %v, want ErrNotFound", err)
	}
	if err := be.Delete(ctx, gone); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	if got := listAll(t, be); len(got) != 1 || got[keep] != 4 {
		t.Errorf("List after Delete = %v, want only %s", got, keep)
	}
	checkObject(t, be, keep, []byte("keep"))

	// A deleted key can be saved again.
	save(t, be, gone, []byte("back"))
	checkObject(t, be, gone, []byte("back"))
}

func testConcurrent(t *testing.T, be backend.Backend) {
	const (
		distinct = 32 // goroutines saving their own key
		same     = 8  // goroutines overwriting one shared key
		size     = 64 << 10
	)
	ctx := context.Background()
	keys := make([]string, distinct)
	datas := make([][]byte, distinct)
	for i := range keys {
		keys[i], datas[i] = NewKey(), randBytes(size+i)
	}
	shared := NewKey()
	sharedData := make([][]byte, same)
	for i := range sharedData {
		sharedData[i] = bytes.Repeat([]byte{byte('A' + i)}, size-i)
	}

	var wg sync.WaitGroup
	errs := make(chan error, distinct+same)
	for i := range keys {
		wg.Go(func() {
			if err := be.Save(ctx, keys[i], datas[i]); err != nil {
				errs <- fmt.Errorf("Save(%s): %w", keys[i], err)
			}
		})
	}
	for i := range sharedData {
		wg.Go(func() {
			if err := be.Save(ctx, shared, sharedData[i]); err != nil {
				errs <- fmt.Errorf("Save(shared #%d): %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	// Read back concurrently too.
	errs = make(chan error, distinct)
	for i := range keys {
		wg.Go(func() {
			got, err := be.Load(ctx, keys[i], 0, -1)
			if err != nil {
				errs <- fmt.Errorf("Load(%s): %w", keys[i], err)
			} else if !bytes.Equal(got, datas[i]) {
				errs <- fmt.Errorf("Load(%s): got %d bytes %s, want %d bytes %s", keys[i], len(got), digest(got), len(datas[i]), digest(datas[i]))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	got, err := be.Load(ctx, shared, 0, -1)
	if err != nil {
		t.Fatalf("Load(shared): %v", err)
	}
	found := false
	for _, d := range sharedData {
		found = found || bytes.Equal(got, d)
	}
	if !found {
		t.Errorf("shared key holds %d bytes %s, which no Save wrote", len(got), digest(got))
	}
	if n := len(listAll(t, be)); n != distinct+1 {
		t.Errorf("List has %d objects, want %d", n, distinct+1)
	}
}

func testCancel(t *testing.T, be backend.Backend) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	oldKey, old := NewKey(), randBytes(1<<20)
	save(t, be, oldKey, old)

	// Save of a new key: either it is there completely or not at all.
	newKey, data := NewKey(), randBytes(1<<20)
	if err := be.Save(ctx, newKey, data); err != nil {
		if got, lerr := be.Load(context.Background(), newKey, 0, -1); lerr == nil && !bytes.Equal(got, data) {
			t.Errorf("failed Save left %d bytes %s, want nothing or the full object", len(got), digest(got))
		} else if lerr != nil && !errors.Is(lerr, backend.ErrNotFound) {
			t.Errorf("Load after cancelled Save: %v", lerr)
		}
	} else {
		checkObject(t, be, newKey, data)
	}

	// Overwrite: the object is the old one or the new one.
	repl := randBytes(1 << 19)
	err := be.Save(ctx, oldKey, repl)
	got, lerr := be.Load(context.Background(), oldKey, 0, -1)
	switch {
	case lerr != nil:
		t.Errorf("Load after cancelled overwrite: %v", lerr)
	case err == nil && !bytes.Equal(got, repl):
		t.Errorf("Save succeeded but object holds %d bytes %s", len(got), digest(got))
	case err != nil && !bytes.Equal(got, old) && !bytes.Equal(got, repl):
		t.Errorf("cancelled overwrite left %d bytes %s, want old or new object", len(got), digest(got))
	}
	if err != nil {
		save(t, be, oldKey, repl) // known state for the checks below
	}

	// Reads and deletes fail or work; they never return wrong data.
	if got, err := be.Load(ctx, oldKey, 0, -1); err == nil && !bytes.Equal(got, repl) {
		t.Errorf("Load with cancelled ctx returned wrong data: %d bytes %s", len(got), digest(got))
	}
	if got, err := be.Load(ctx, oldKey, 10, 100); err == nil && !bytes.Equal(got, repl[10:110]) {
		t.Errorf("ranged Load with cancelled ctx returned wrong data: %d bytes %s", len(got), digest(got))
	}
	if size, err := be.Stat(ctx, oldKey); err == nil && size != int64(len(repl)) {
		t.Errorf("Stat with cancelled ctx = %d, want %d", size, len(repl))
	}
	_ = be.List(ctx, func(string, int64) error { return nil })
	_, _, _ = be.Usage(ctx)
	if err := be.Delete(ctx, oldKey); err != nil {
		checkObject(t, be, oldKey, repl) // a failed Delete leaves the object alone
	} else if _, err := be.Stat(context.Background(), oldKey); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Delete succeeded, but Stat = %v, want ErrNotFound", err)
	}
}

func testUsage(t *testing.T, be backend.Backend) {
	save(t, be, NewKey(), randBytes(1000))
	total, free, err := be.Usage(context.Background())
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	if total > 0 && free > total {
		t.Errorf("Usage: free %d > total %d", free, total)
	}
}

func testNoRetain(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	key := NewKey()
	buf := randBytes(10_000)
	want := bytes.Clone(buf)
	save(t, be, key, buf)
	for i := range buf {
		buf[i] ^= 0xff
	}
	checkObject(t, be, key, want)

	got, err := be.Load(ctx, key, 0, -1)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for i := range got {
		got[i] = 0
	}
	checkObject(t, be, key, want)
}
