package registry

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Blobs are the bytes of small parts kept in the registry itself, so that
// storing one costs a registry write instead of an object file, its fsync
// and its directory's fsync. They are opaque here: the chunkstore above
// checks their MD5 like any part's.

func blobKey(key string) []byte { return append([]byte{prefixBlob}, key...) }

// PutBlob stores data under key, replacing what was there.
func (tx *Tx) PutBlob(key string, data []byte) error {
	if key == "" {
		return fmt.Errorf("put blob: empty key")
	}
	if err := tx.set(blobKey(key), data); err != nil {
		return fmt.Errorf("put blob %s: %w", key, err)
	}
	return nil
}

// GetBlob returns a copy of the bytes under key, or ErrNotFound.
func (tx *Tx) GetBlob(key string) ([]byte, error) {
	var data []byte
	err := tx.get(blobKey(key), func(v []byte) error {
		data = append(make([]byte, 0, len(v)), v...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get blob %s: %w", key, err)
	}
	return data, nil
}

// HasBlob reports whether a blob exists under key, and its size.
func (tx *Tx) HasBlob(key string) (int64, bool, error) {
	item, err := tx.txn.Get(blobKey(key))
	if err == badger.ErrKeyNotFound {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("stat blob %s: %w", key, translate(err))
	}
	return item.ValueSize(), true, nil
}

// DeleteBlob removes the blob under key; ErrNotFound if there is none.
func (tx *Tx) DeleteBlob(key string) error {
	if _, ok, err := tx.HasBlob(key); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("delete blob %s: %w", key, ErrNotFound)
	}
	if err := tx.delete(blobKey(key)); err != nil {
		return fmt.Errorf("delete blob %s: %w", key, err)
	}
	return nil
}

// Blobs calls fn with the key and size of every blob.
func (tx *Tx) Blobs(fn func(key string, size int64) error) error {
	prefix := []byte{prefixBlob}
	return tx.scan(prefix, prefix, false, func(item *badger.Item) error {
		return fn(string(item.Key()[1:]), item.ValueSize())
	})
}
