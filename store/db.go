package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// formatVersion is the on-disk format this build writes and understands.
const formatVersion = 1

// keyFormat holds the format version inside the database; it must exist whenever the
// FORMAT marker file exists.
var keyFormat = []byte("meta/format")

// DB is the daemon's state database. It is safe for concurrent use.
type DB struct {
	bdb *badger.DB
	dir string // "" for in-memory databases
	log *slog.Logger
	// ev serialises event appends and holds the server-wide event index (events.go).
	ev eventIndex
}

// Open opens (creating if needed) the state database in dir. It fails with ErrLocked when
// another process holds the directory and with ErrCorrupt when the directory exists but
// cannot be trusted; it never comes up empty over a damaged directory.
func Open(dir string, log *slog.Logger) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: create %s: %w", ErrCorrupt, dir, err)
	}
	// The directory must be ours and private: refuse to keep credentials in a directory
	// other users can read.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: chmod %s: %w", ErrCorrupt, dir, err)
	}
	marker := filepath.Join(dir, "FORMAT")
	_, statErr := os.Stat(marker)
	hadMarker := statErr == nil
	if statErr != nil && !errors.Is(statErr, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, marker, statErr)
	}
	bdir := filepath.Join(dir, "badger")
	if hadMarker {
		entries, err := os.ReadDir(bdir)
		if err != nil || len(entries) == 0 {
			return nil, fmt.Errorf("%w: %s has a FORMAT marker but its database %s is missing or empty", ErrCorrupt, dir, bdir)
		}
	}
	if err := checkTables(bdir); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, dir, err)
	}
	opts := smallOptions(badger.DefaultOptions(bdir)).WithDir(bdir).WithValueDir(bdir)
	bdb, err := openBadger(opts)
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("%w: %s (another simpletuner daemon is running on it)", ErrLocked, dir)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, dir, err)
	}
	db := &DB{bdb: bdb, dir: dir, log: log}
	tightenModes(dir, log)
	if err := db.checkFormat(hadMarker); err != nil {
		bdb.Close()
		return nil, err
	}
	if !hadMarker {
		body := fmt.Sprintf("{\"format\":%d,\"created\":%q}\n", formatVersion, time.Now().UTC().Format(time.RFC3339))
		if err := writeFileSync(marker, []byte(body)); err != nil {
			bdb.Close()
			return nil, fmt.Errorf("write %s: %w", marker, err)
		}
	}
	return db, nil
}

// openBadger is badger.Open with a panic in this goroutine turned into ErrCorrupt
// (checkTables covers the goroutines badger starts to open its tables).
func openBadger(opts badger.Options) (bdb *badger.DB, err error) {
	defer func() {
		if v := recover(); v != nil {
			bdb, err = nil, fmt.Errorf("%w: badger: %v", ErrCorrupt, v)
		}
	}()
	return badger.Open(opts)
}

// OpenInMemory opens a database that lives only in memory, for tests.
func OpenInMemory(log *slog.Logger) (*DB, error) {
	opts := smallOptions(badger.DefaultOptions("")).WithInMemory(true)
	bdb, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open in-memory store: %w", err)
	}
	db := &DB{bdb: bdb, log: log}
	if err := db.checkFormat(false); err != nil {
		bdb.Close()
		return nil, err
	}
	return db, nil
}

// smallOptions keeps badger's footprint small: the daemon's state is tiny, and the default
// 64 MiB memtables would dominate the daemon's memory.
func smallOptions(o badger.Options) badger.Options {
	return o.WithLogger(nil).
		WithMemTableSize(4 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(5).
		WithNumLevelZeroTablesStall(15).
		WithValueLogFileSize(16 << 20).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithBaseTableSize(1 << 20).
		WithNumCompactors(2).
		WithValueThreshold(64 << 10).
		// Writes survive a crash of the daemon without an fsync (the page cache keeps
		// them); what must also survive a power loss is synced explicitly with Sync —
		// first-admin creation and a trainer's identity before the job is "running". An
		// fsync per event batch would cap event ingestion at the disk's sync rate.
		WithSyncWrites(false)
}

// checkFormat verifies (or, for a new database, writes) the format key.
func (d *DB) checkFormat(mustExist bool) error {
	var found []byte
	err := d.bdb.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyFormat)
		if err != nil {
			return err
		}
		found, err = item.ValueCopy(nil)
		return err
	})
	switch {
	case err == nil:
		if string(found) != fmt.Sprint(formatVersion) {
			return fmt.Errorf("%w: %s has state format %s, this build understands %d", ErrCorrupt, d.dir, found, formatVersion)
		}
		return nil
	case errors.Is(err, badger.ErrKeyNotFound):
		if mustExist {
			return fmt.Errorf("%w: %s: the database lost its format record", ErrCorrupt, d.dir)
		}
		return d.bdb.Update(func(txn *badger.Txn) error {
			return txn.Set(keyFormat, []byte(fmt.Sprint(formatVersion)))
		})
	default:
		return fmt.Errorf("%w: %s: %w", ErrCorrupt, d.dir, err)
	}
}

// Dir is the state directory ("" for an in-memory database).
func (d *DB) Dir() string { return d.dir }

// Close flushes and closes the database.
func (d *DB) Close() error { return d.bdb.Close() }

// Sync forces everything written so far to stable storage.
func (d *DB) Sync() error { return d.bdb.Sync() }

// update runs fn in a read-write transaction, retrying a few times when a concurrent
// transaction conflicts; after the last try it returns ErrConflict.
func (d *DB) update(fn func(txn *badger.Txn) error) error {
	for attempt := 0; ; attempt++ {
		err := d.bdb.Update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
		if attempt == 8 {
			return fmt.Errorf("%w: %w", ErrConflict, err)
		}
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
}

// view runs fn in a read-only transaction.
func (d *DB) view(fn func(txn *badger.Txn) error) error { return d.bdb.View(fn) }

// getJSON reads key into v; ErrNotFound when absent.
func getJSON(txn *badger.Txn, key []byte, v any) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("%w: record %s: %w", ErrCorrupt, key, err)
		}
		return nil
	})
}

// setJSON writes v under key, optionally expiring at exp.
func setJSON(txn *badger.Txn, key []byte, v any, exp time.Time) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	e := badger.NewEntry(key, b)
	if !exp.IsZero() {
		e = e.WithTTL(time.Until(exp))
	}
	return txn.SetEntry(e)
}

// nextID allocates the next integer id of a sequence inside txn.
func nextID(txn *badger.Txn, name string) (int64, error) {
	key := []byte("seq/" + name)
	var n int64
	if err := getJSON(txn, key, &n); err != nil && !errors.Is(err, ErrNotFound) {
		return 0, err
	}
	n++
	return n, setJSON(txn, key, n, time.Time{})
}

// idKey formats an integer id so that keys sort numerically.
func idKey(prefix string, id int64) []byte { return fmt.Appendf(nil, "%s%016x", prefix, id) }

// writeFileSync writes a small file durably with mode 0600.
func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// tightenModes makes every file under dir 0600 and every directory 0700. The daemon runs
// with umask 077, so this only repairs files left by a run without it (badger creates its
// files 0644 minus the umask).
func tightenModes(dir string, log *slog.Logger) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if info, err := d.Info(); err == nil && info.Mode().Perm() != want {
			if err := os.Chmod(p, want); err != nil {
				log.Warn("cannot tighten file mode", "path", p, "err", err)
			}
		}
		return nil
	})
}
