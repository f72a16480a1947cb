package registry

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
)

// checkTables opens every table listed in the manifest of the Badger
// directory o.Dir the way badger.Open does, and returns an error wrapping
// ErrCorrupt for the first one that fails or panics.
//
// badger.Open opens tables in goroutines of its own, and a table with a
// damaged footer makes those panic (table.(*Table).initBiggestAndSmallest
// re-panics whatever initIndex hit), which no recover in our goroutine can
// catch. Opening the tables here first turns that into an error, for the
// price of reading each table's index and last block once more at Open.
func checkTables(o badger.Options) error {
	f, err := os.Open(filepath.Join(o.Dir, badger.ManifestFilename))
	if errors.Is(err, os.ErrNotExist) {
		return nil // a new registry, or badger.Open will say what is missing
	}
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := replayManifest(f, o)
	if err != nil {
		return nil // badger.Open reports a bad manifest as an error itself
	}
	if err := checkOrphanTables(o.Dir, m); err != nil {
		return err
	}
	for id, tm := range m.Tables {
		if tm.KeyID != 0 {
			continue // encrypted; we never encrypt, so badger.Open will refuse it
		}
		topts := table.Options{
			ReadOnly:    true,
			BlockSize:   o.BlockSize,
			Compression: tm.Compression,
			ChkMode:     options.NoVerification,
		}
		if err := checkTable(table.NewFilename(id, o.Dir), topts); err != nil {
			return fmt.Errorf("table %d: %w", id, err)
		}
	}
	return nil
}

// checkOrphanTables refuses tables on disk that the manifest does not
// list, unless a crash explains them. badger.Open deletes such tables: right
// after a crash that is cleanup (a table written but not yet recorded, its
// data still in the memtable log), but after a clean close there is no
// memtable log, and a table missing from the manifest means a damaged or
// stale MANIFEST: deleting the table would lose the files it describes.
func checkOrphanTables(dir string, m badger.Manifest) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var orphan string
	memLogs := 0
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".mem"):
			memLogs++
		case strings.HasSuffix(name, ".sst"):
			var id uint64
			if _, err := fmt.Sscanf(name, "%06d.sst", &id); err != nil {
				continue
			}
			if _, ok := m.Tables[id]; !ok && orphan == "" {
				orphan = name
			}
		}
	}
	if orphan != "" && memLogs == 0 {
		return fmt.Errorf("table %s is not in the MANIFEST and no crash explains it: the MANIFEST is damaged or stale (restore the registry from a backup): %w", orphan, ErrCorrupt)
	}
	return nil
}

func replayManifest(f *os.File, o badger.Options) (m badger.Manifest, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("manifest: %v", p)
		}
	}()
	m, _, err = badger.ReplayManifestFile(f, o.ExternalMagicVersion, o)
	return m, err
}

// checkTable opens and closes one table file without modifying it.
func checkTable(name string, topts table.Options) (err error) {
	mf, err := z.OpenMmapFile(name, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		// Missing, or compacted away by a process that holds the lock;
		// badger.Open reports either.
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	// OpenTable owns mf but does not close it on every error. Close the
	// mapping directly: Table.DecrRef would delete the file.
	defer func() {
		_ = mf.Close(-1)
		if p := recover(); p != nil {
			// The panic value spans lines; keep the error on one.
			msg := strings.Join(strings.Fields(fmt.Sprint(p)), " ")
			err = fmt.Errorf("%s: %s: %w", name, msg, ErrCorrupt)
		}
	}()
	if _, err := table.OpenTable(mf, topts); err != nil {
		return fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	return nil
}
