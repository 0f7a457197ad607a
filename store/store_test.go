package store

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// The daemon runs with umask 077 (set in main); tests run the store the same way.
	syscall.Umask(0o077)
	os.Exit(m.Run())
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func memDB(t *testing.T) *DB {
	t.Helper()
	db, err := OpenInMemory(discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestOpenLockAndReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	db, err := Open(dir, discard())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, discard()); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: got %v, want ErrLocked", err)
	} else if !contains(err.Error(), dir) {
		t.Fatalf("lock error %q does not name the directory", err)
	}
	u := &User{Username: "admin", Email: "a@example.com", IsActive: true}
	if err := db.Users().Create(u); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir, discard())
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	got, err := db.Users().GetByLogin("ADMIN")
	if err != nil || got.ID != u.ID {
		t.Fatalf("after reopen: %v %+v", err, got)
	}
}

func TestOpenRefusesDamagedDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	db, err := Open(dir, discard())
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	// The database vanished but the marker says there was one: never come up empty.
	if err := os.RemoveAll(filepath.Join(dir, "badger")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, discard()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v, want ErrCorrupt", err)
	}
}

func TestOpenRefusesGarbageDatabase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	db, err := Open(dir, discard())
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := os.WriteFile(filepath.Join(dir, "badger", "MANIFEST"), []byte("garbage garbage garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, discard()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v, want ErrCorrupt", err)
	}
}

// Damaged tables: badger panics in its own goroutines over a truncated .sst and silently
// drops a table whose checksums fail; Open must answer ErrCorrupt for each, not crash
// and not come up without the records.
func TestOpenRefusesDamagedTables(t *testing.T) {
	damage := map[string]func(path string, size int64) error{
		"truncated to half": func(p string, n int64) error { return os.Truncate(p, n/2) },
		"truncated to 3":    func(p string, n int64) error { return os.Truncate(p, 3) },
		"emptied":           func(p string, n int64) error { return os.Truncate(p, 0) },
		"removed":           func(p string, n int64) error { return os.Remove(p) },
		"a byte flipped in a block": func(p string, n int64) error {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			b := make([]byte, 1)
			f.ReadAt(b, 20)
			b[0] ^= 0xff
			_, err = f.WriteAt(b, 20)
			return err
		},
	}
	for name, fn := range damage {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			db, err := Open(dir, discard())
			if err != nil {
				t.Fatal(err)
			}
			for i := range 50 {
				if err := db.Settings().Put(fmt.Sprint("setting-", i), map[string]int{"value": i}); err != nil {
					t.Fatal(err)
				}
			}
			db.Close() // flushes the memtable into a table
			tables, _ := filepath.Glob(filepath.Join(dir, "badger", "*.sst"))
			if len(tables) == 0 {
				t.Fatal("no .sst after close")
			}
			for _, p := range tables {
				st, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := fn(p, st.Size()); err != nil {
					t.Fatal(err)
				}
			}
			db, err = Open(dir, discard())
			if !errors.Is(err, ErrCorrupt) {
				if db != nil {
					db.Close()
				}
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
			// And once more: the check changed nothing on disk.
			if _, err := Open(dir, discard()); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("second open: %v", err)
			}
		})
	}
}

func TestOpenRefusesUnreadableDir(t *testing.T) {
	if os.Geteuid() == 0 {
		// root reads anything; make the path a file instead, which nobody can open as a dir.
		dir := filepath.Join(t.TempDir(), "state")
		if err := os.WriteFile(dir, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir, discard()); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("got %v, want ErrCorrupt", err)
		}
		return
	}
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(dir, 0o000); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, discard()); err == nil {
		t.Fatal("opened an unreadable directory")
	}
}

func TestFileModesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	db, err := Open(dir, discard())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Users().Create(&User{Username: "x", Email: "x@x"}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		perm := info.Mode().Perm()
		if d.IsDir() && perm&0o077 != 0 {
			t.Errorf("dir %s has mode %o", p, perm)
		}
		if !d.IsDir() && perm&0o077 != 0 {
			t.Errorf("file %s has mode %o", p, perm)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestUsersUniqueAndUpdate(t *testing.T) {
	db := memDB(t)
	us := db.Users()
	a := &User{Username: "alice", Email: "alice@example.com"}
	if err := us.Create(a); err != nil {
		t.Fatal(err)
	}
	if err := us.Create(&User{Username: "ALICE", Email: "other@example.com"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate username: %v", err)
	}
	if err := us.Create(&User{Username: "bob", Email: "Alice@Example.com"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate email: %v", err)
	}
	b := &User{Username: "bob", Email: "bob@example.com"}
	if err := us.Create(b); err != nil {
		t.Fatal(err)
	}
	if _, err := us.Update(b.ID, func(u *User) error { u.Username = "alice"; return nil }); !errors.Is(err, ErrExists) {
		t.Fatalf("rename onto existing: %v", err)
	}
	if _, err := us.Update(b.ID, func(u *User) error { u.Username = "robert"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := us.GetByLogin("bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old name still resolves: %v", err)
	}
	if got, err := us.GetByLogin("bob@example.com"); err != nil || got.Username != "robert" {
		t.Fatalf("by email: %v %+v", err, got)
	}
	if err := us.Delete(a.ID); err != nil {
		t.Fatal(err)
	}
	list, _ := us.List()
	if len(list) != 1 || list[0].ID != b.ID {
		t.Fatalf("list after delete: %+v", list)
	}
}

func TestCreateFirstAdminRace(t *testing.T) {
	db := memDB(t)
	const n = 50
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = db.Users().CreateFirstAdmin(&User{Username: "admin" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Email: "x" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "@e.com", IsAdmin: true})
		}()
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrSetupDone), errors.Is(err, ErrConflict):
		default:
			t.Fatalf("unexpected error %v", err)
		}
	}
	list, _ := db.Users().List()
	if ok != 1 || len(list) != 1 {
		t.Fatalf("%d successes, %d users; want exactly 1", ok, len(list))
	}
	if done, _ := db.Users().SetupDone(); !done {
		t.Fatal("setup not marked done")
	}
}

func TestSessionsExpireAndDeleteForUser(t *testing.T) {
	db := memDB(t)
	ss := db.Sessions()
	now := time.Now()
	for _, h := range []string{"h1", "h2", "h3"} {
		if err := ss.Create(&Session{TokenHash: h, UserID: 7, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ss.Create(&Session{TokenHash: "other", UserID: 8, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if s, err := ss.Get("h1"); err != nil || s.UserID != 7 {
		t.Fatalf("get: %v %+v", err, s)
	}
	n, err := ss.DeleteForUser(7, "h2")
	if err != nil || n != 2 {
		t.Fatalf("delete for user: n=%d err=%v", n, err)
	}
	if _, err := ss.Get("h1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("h1 survived: %v", err)
	}
	if _, err := ss.Get("h2"); err != nil {
		t.Fatalf("kept session gone: %v", err)
	}
	if _, err := ss.Get("other"); err != nil {
		t.Fatalf("other user's session gone: %v", err)
	}
	// A session past its expiry (a clock that moved on, not a sleep) is not valid.
	if err := ss.Create(&Session{TokenHash: "old", UserID: 7, CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Get("old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired session still valid: %v", err)
	}
}

func TestAPIKeysByHash(t *testing.T) {
	db := memDB(t)
	ks := db.APIKeys()
	k := &APIKey{UserID: 3, Name: "k", KeyHash: "abc", IsActive: true}
	if err := ks.Create(k); err != nil {
		t.Fatal(err)
	}
	got, err := ks.GetByHash("abc")
	if err != nil || got.ID != k.ID {
		t.Fatalf("%v %+v", err, got)
	}
	if _, err := ks.GetByHash("abd"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("wrong hash: %v", err)
	}
	if err := ks.RevokeForUser(3); err != nil {
		t.Fatal(err)
	}
	got, _ = ks.Get(k.ID)
	if got.IsActive {
		t.Fatal("still active after revoke")
	}
}

func TestSettingsRoundTrip(t *testing.T) {
	st := memDB(t).Settings()
	var v struct{ Enabled bool }
	if ok, err := st.Get("registration", &v); ok || err != nil {
		t.Fatalf("unset: %v %v", ok, err)
	}
	v.Enabled = true
	if err := st.Put("registration", v); err != nil {
		t.Fatal(err)
	}
	v.Enabled = false
	if ok, err := st.Get("registration", &v); !ok || err != nil || !v.Enabled {
		t.Fatalf("round trip: %v %v %+v", ok, err, v)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}
