package registry

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestBlobs(t *testing.T) {
	r := newRegistry(t)
	ctx := context.Background()
	if err := r.Update(ctx, func(tx *Tx) error {
		if err := tx.PutBlob("k1", []byte("hello")); err != nil {
			return err
		}
		return tx.PutBlob("k2", []byte{})
	}); err != nil {
		t.Fatal(err)
	}
	err := r.View(ctx, func(tx *Tx) error {
		v, err := tx.GetBlob("k1")
		if err != nil || !bytes.Equal(v, []byte("hello")) {
			t.Fatalf("GetBlob = %q, %v", v, err)
		}
		if n, ok, err := tx.HasBlob("k1"); err != nil || !ok || n != 5 {
			t.Fatalf("HasBlob = %d %v %v", n, ok, err)
		}
		if _, ok, err := tx.HasBlob("nope"); err != nil || ok {
			t.Fatalf("HasBlob(missing) = %v %v", ok, err)
		}
		if _, err := tx.GetBlob("nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetBlob(missing) = %v", err)
		}
		got := map[string]int64{}
		if err := tx.Blobs(func(k string, n int64) error { got[k] = n; return nil }); err != nil {
			return err
		}
		if len(got) != 2 || got["k1"] != 5 || got["k2"] != 0 {
			t.Fatalf("Blobs = %v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Update(ctx, func(tx *Tx) error { return tx.DeleteBlob("k1") }); err != nil {
		t.Fatal(err)
	}
	if err := r.Update(ctx, func(tx *Tx) error { return tx.DeleteBlob("k1") }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second DeleteBlob = %v", err)
	}
}
