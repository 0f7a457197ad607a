package store

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
)

// checkTables opens every table the MANIFEST in bdir lists, in this goroutine, and
// verifies all its block checksums before badger sees the directory. badger opens its
// tables in goroutines of its own, where a truncated or overwritten .sst makes it panic
// (an index read out of bounds) and takes the whole process down with a stack trace
// nobody can recover; and a table whose block checksums do not match, badger leaves out
// without a word, coming up without the records it held. Here both are errors, which
// Open reports as ErrCorrupt. A directory without a MANIFEST (a new database) has
// nothing to check.
func checkTables(bdir string) error {
	f, err := os.Open(filepath.Join(bdir, badger.ManifestFilename))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	opts := badger.DefaultOptions(bdir)
	mf, _, err := badger.ReplayManifestFile(f, opts.ExternalMagicVersion, opts)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", badger.ManifestFilename, err)
	}
	for _, id := range slices.Sorted(maps.Keys(mf.Tables)) {
		if err := checkTable(table.NewFilename(id, bdir), mf.Tables[id], opts.BlockSize); err != nil {
			return err
		}
	}
	return nil
}

// checkTable opens one table read-only and verifies every block's checksum. A panic
// inside badger's table code is recovered here and returned as an error.
func checkTable(path string, tm badger.TableManifest, blockSize int) (err error) {
	name := filepath.Base(path)
	if tm.KeyID != 0 {
		// The daemon never encrypts its state; an encrypted table is not ours.
		return fmt.Errorf("table %s is encrypted", name)
	}
	if st, err := os.Stat(path); err == nil && st.Size() == 0 {
		return fmt.Errorf("table %s is empty", name) // mmap refuses it with a bare EINVAL
	}
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("table %s: %w", name, err)
	}
	mapped := true // false once OpenTable may have unmapped it: never unmap twice
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("table %s is truncated or overwritten", name)
		}
		if mapped {
			_ = mf.Close(-1) // not Table.DecrRef, which deletes the file
		}
	}()
	t, err := table.OpenTable(mf, table.Options{ReadOnly: true, BlockSize: blockSize, Compression: tm.Compression,
		ChkMode: options.NoVerification})
	if err != nil {
		// OpenTable unmaps the file on some of its errors and not on others; leaving it
		// mapped is harmless, the daemon refuses to start.
		mapped = false
		return fmt.Errorf("table %s: %w", name, err)
	}
	if err := t.VerifyChecksum(); err != nil {
		return fmt.Errorf("table %s: %w", name, err)
	}
	return nil
}
