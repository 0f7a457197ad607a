package workers

import (
	"bytes"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"simpletuner/plugins/workerproto"
	"simpletuner/store"
	"simpletuner/supervisor/workers/workerstest"
)

// TestTokensNeverWrittenInClear runs the token's whole life (create, register, rotate,
// bind, delete) over a store on disk with a debug log, then looks for every token in
// the state directory and the log. The hash is looked for too: finding it proves the
// search can see the records at all.
func TestTokensNeverWrittenInClear(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	db, err := store.Open(dir, discard())
	if err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	src := workerstest.New()
	reg, err := New(Config{PingEvery: time.Hour}, db, src, log)
	if err != nil {
		t.Fatal(err)
	}
	w, tok1, err := reg.Create(CreateRequest{Name: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Register(w.ID, workerproto.RegisterRequest{Name: "w1", Persistent: true, GPUInfo: workerproto.GPUInfo{Count: 1}}); err != nil {
		t.Fatal(err)
	}
	tok2, err := reg.RotateToken(w.ID)
	if err != nil {
		t.Fatal(err)
	}
	src.Add(&store.Job{ID: "sjob"})
	tok3, err := reg.BindJob("sjob")
	if err != nil {
		t.Fatal(err)
	}
	w2, tok4, err := reg.Create(CreateRequest{Name: "w2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Delete(w2.ID, false); err != nil {
		t.Fatal(err)
	}
	reg.Check()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	var state []byte
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		state = append(state, b...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Badger may compress tables: read every record decoded too.
	bdb, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, "badger")).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	var records []byte
	err = bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			records = append(append(records, it.Item().Key()...), v...)
		}
		return nil
	})
	bdb.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(records, []byte(hashToken(tok2))) {
		t.Fatal("the stored hash is not found in the records: the search cannot see them")
	}
	for i, tok := range []string{tok1, tok2, tok3, tok4} {
		if bytes.Contains(state, []byte(tok)) || bytes.Contains(records, []byte(tok)) {
			t.Errorf("token %d is in the state directory in clear", i+1)
		}
		if bytes.Contains(logBuf.Bytes(), []byte(tok)) {
			t.Errorf("token %d is in the log", i+1)
		}
	}
	if logBuf.Len() == 0 {
		t.Error("nothing was logged: the log check checks nothing")
	}
}
