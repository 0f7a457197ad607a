package store

import (
	"errors"
	"sync"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
)

func admin(name string) *User {
	return &User{Username: name, Email: name + "@example.com", IsAdmin: true, IsActive: true, Levels: []string{"admin"}}
}

func activeAdmins(t *testing.T, db *DB) int {
	t.Helper()
	list, err := db.Users().List()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, u := range list {
		if u.IsAdmin && u.IsActive {
			n++
		}
	}
	return n
}

// Any write that makes an active administrator completes setup in its own transaction;
// writes that do not, leave it open.
func TestAdminByAnyRouteCompletesSetup(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(db *DB) (int64, error)
	}{
		{"create an admin", func(db *DB) (int64, error) {
			u := admin("root")
			return u.ID, db.Users().Create(u)
		}},
		{"promote a researcher", func(db *DB) (int64, error) {
			u := &User{Username: "res", Email: "res@example.com", IsActive: true}
			if err := db.Users().Create(u); err != nil {
				return 0, err
			}
			if done, _ := db.Users().SetupDone(); done {
				return 0, errors.New("a researcher completed setup")
			}
			_, err := db.Users().Update(u.ID, func(u *User) error { u.IsAdmin = true; return nil })
			return u.ID, err
		}},
		{"activate an inactive admin", func(db *DB) (int64, error) {
			u := admin("idle")
			u.IsActive = false
			if err := db.Users().Create(u); err != nil {
				return 0, err
			}
			if done, _ := db.Users().SetupDone(); done {
				return 0, errors.New("an inactive admin completed setup")
			}
			_, err := db.Users().Update(u.ID, func(u *User) error { u.IsActive = true; return nil })
			return u.ID, err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := memDB(t)
			if _, err := tc.make(db); err != nil {
				t.Fatal(err)
			}
			if done, err := db.Users().SetupDone(); err != nil || !done {
				t.Fatalf("setup done = %v, %v", done, err)
			}
			if _, ok, err := db.Users().FirstAdminID(); err != nil || !ok {
				t.Fatalf("first admin id: %v %v", ok, err)
			}
			if err := db.Users().CreateFirstAdmin(admin("late")); !errors.Is(err, ErrSetupDone) {
				t.Fatalf("first-admin after setup: %v", err)
			}
		})
	}
}

func TestLastAdminCannotBeRemoved(t *testing.T) {
	db := memDB(t)
	a := admin("a")
	if err := db.Users().Create(a); err != nil {
		t.Fatal(err)
	}
	for name, fn := range map[string]func(u *User) error{
		"deactivate": func(u *User) error { u.IsActive = false; return nil },
		"demote":     func(u *User) error { u.IsAdmin = false; return nil },
	} {
		if _, err := db.Users().Update(a.ID, fn); !errors.Is(err, ErrLastAdmin) {
			t.Errorf("%s the last admin: %v", name, err)
		}
	}
	if err := db.Users().Delete(a.ID); !errors.Is(err, ErrLastAdmin) {
		t.Errorf("delete the last admin: %v", err)
	}
	if _, err := db.Users().Update(a.ID, func(u *User) error { u.DisplayName = "still fine"; return nil }); err != nil {
		t.Errorf("an unrelated change: %v", err)
	}
	if activeAdmins(t, db) != 1 {
		t.Fatal("the last admin was removed")
	}
}

// Two administrators removing each other at the same moment (deactivating, demoting or
// deleting) leave exactly one: the check and the write are one transaction.
func TestMutualAdminRemovalLeavesOne(t *testing.T) {
	removals := map[string]func(db *DB, id int64) error{
		"deactivate": func(db *DB, id int64) error {
			_, err := db.Users().Update(id, func(u *User) error { u.IsActive = false; return nil })
			return err
		},
		"demote": func(db *DB, id int64) error {
			_, err := db.Users().Update(id, func(u *User) error { u.IsAdmin = false; return nil })
			return err
		},
		"delete": func(db *DB, id int64) error { return db.Users().Delete(id) },
	}
	for name, remove := range removals {
		t.Run(name, func(t *testing.T) {
			for round := range 30 {
				db := memDB(t)
				a, b := admin("a"), admin("b")
				if err := db.Users().Create(a); err != nil {
					t.Fatal(err)
				}
				if err := db.Users().Create(b); err != nil {
					t.Fatal(err)
				}
				var wg sync.WaitGroup
				start := make(chan struct{})
				errs := make([]error, 2)
				for i, id := range []int64{b.ID, a.ID} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						errs[i] = remove(db, id)
					}()
				}
				close(start)
				wg.Wait()
				if n := activeAdmins(t, db); n != 1 {
					t.Fatalf("round %d: %d active admins left (errors %v, %v)", round, n, errs[0], errs[1])
				}
				refused := 0
				for _, err := range errs {
					if errors.Is(err, ErrLastAdmin) {
						refused++
					} else if err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
				}
				if refused != 1 {
					t.Fatalf("round %d: %d refusals, want 1", round, refused)
				}
			}
		})
	}
}

// State from before every admin-creating route completed setup: an active administrator
// without the setup record is repaired; inactive ones or none leave setup open.
func TestRepairSetup(t *testing.T) {
	db := memDB(t)
	idle := admin("idle")
	idle.IsActive = false
	raw := func(u *User) {
		t.Helper()
		if err := db.update(func(txn *badger.Txn) error { return createUser(txn, u) }); err != nil {
			t.Fatal(err)
		}
	}
	raw(&User{Username: "res", Email: "res@example.com", IsActive: true})
	raw(idle)
	if done, err := db.Users().RepairSetup(); err != nil || done {
		t.Fatalf("no active admin: done=%v %v", done, err)
	}
	boss := admin("boss")
	raw(boss)
	if done, err := db.Users().RepairSetup(); err != nil || !done {
		t.Fatalf("active admin: done=%v %v", done, err)
	}
	if id, ok, _ := db.Users().FirstAdminID(); !ok || id != boss.ID {
		t.Fatalf("first admin id %d %v, want %d", id, ok, boss.ID)
	}
}
