package store

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// User is a stored account. PasswordHash is a PHC string; the password itself is never
// stored.
type User struct {
	ID            int64      `json:"id"`
	Email         string     `json:"email"`
	Username      string     `json:"username"`
	DisplayName   string     `json:"display_name"`
	PasswordHash  string     `json:"password_hash"`
	AuthProvider  string     `json:"auth_provider"`
	IsActive      bool       `json:"is_active"`
	IsAdmin       bool       `json:"is_admin"`
	EmailVerified bool       `json:"email_verified"`
	Levels        []string   `json:"levels"`
	CreatedAt     time.Time  `json:"created_at"`
	LastLoginAt   *time.Time `json:"last_login_at"`
}

// keyAdminInitialized is set, in the same transaction, when the first administrator is
// created; its presence is what "setup is done" means.
var keyAdminInitialized = []byte("meta/admin_initialized")

func userKey(id int64) []byte { return idKey("users/id/", id) }
func userNameKey(name string) []byte {
	return []byte("users/name/" + strings.ToLower(name))
}
func userEmailKey(email string) []byte {
	return []byte("users/email/" + strings.ToLower(email))
}

// Users is the typed store of accounts.
type Users struct{ db *DB }

// Users returns the account store.
func (d *DB) Users() *Users { return &Users{db: d} }

// Create stores a new user, assigning u.ID. It fails with ErrExists when the username or
// e-mail is taken (case-insensitively). Creating an active administrator completes setup
// in the same transaction (see markSetup), whichever route asked for it.
func (s *Users) Create(u *User) error {
	first := false
	err := s.db.update(func(txn *badger.Txn) error {
		if err := createUser(txn, u); err != nil {
			return err
		}
		var err error
		first, err = markSetup(txn, u)
		return err
	})
	return s.syncIfFirst(first, err)
}

// markSetup records, inside txn, that setup is done when u is an active administrator and
// no administrator was recorded before; it reports whether this was the first. Every write
// that can make an administrator calls it, so "an admin exists" and "setup is done" never
// disagree: before, an admin created through POST /api/users left setup open (and every
// loopback caller an implicit administrator).
func markSetup(txn *badger.Txn, u *User) (bool, error) {
	if !activeAdmin(u) {
		return false, nil
	}
	if _, done, err := firstAdminID(txn); done || err != nil {
		return false, err
	}
	return true, recordSetup(txn, u.ID)
}

// recordSetup writes the setup record: administrator id completed setup.
func recordSetup(txn *badger.Txn, id int64) error {
	return txn.Set(keyAdminInitialized, fmt.Appendf(nil, "%d", id))
}

// syncIfFirst makes the setup flag durable before anyone is told setup succeeded.
func (s *Users) syncIfFirst(first bool, err error) error {
	if err != nil || !first {
		return err
	}
	return s.db.Sync()
}

// ensureOtherAdmin fails with ErrLastAdmin unless an active administrator other than
// except exists. It runs inside the transaction that demotes, deactivates or deletes
// except: the iterator records every user it reads, so two transactions that each remove
// the other's administrator conflict at commit and the loser retries, sees the winner's
// write and is refused. A check outside the transaction let two administrators disable
// each other at once and leave none.
func ensureOtherAdmin(txn *badger.Txn, except int64) error {
	other, err := findUser(txn, func(u *User) bool { return u.ID != except && activeAdmin(u) })
	if err == nil && other == nil {
		err = ErrLastAdmin
	}
	return err
}

// activeAdmin reports whether u holds administrator rights and may use them.
func activeAdmin(u *User) bool { return u.IsAdmin && u.IsActive }

// eachUser calls fn with every user in id order, inside txn, until fn returns false.
func eachUser(txn *badger.Txn, fn func(u *User) bool) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("users/id/"), PrefetchValues: true, PrefetchSize: 16})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var u User
		if err := getJSON(txn, it.Item().KeyCopy(nil), &u); err != nil {
			return err
		}
		if !fn(&u) {
			return nil
		}
	}
	return nil
}

// findUser returns the first user, in id order, that match accepts (nil when none does).
func findUser(txn *badger.Txn, match func(u *User) bool) (*User, error) {
	var found *User
	err := eachUser(txn, func(u *User) bool {
		if match(u) {
			found = u
		}
		return found == nil
	})
	return found, err
}

// RepairSetup reports whether setup is done, completing it first when an active
// administrator exists but setup was never recorded: state written by builds in which
// POST /api/users could create an administrator and leave setup open.
func (s *Users) RepairSetup() (bool, error) {
	done, first := false, false
	err := s.db.update(func(txn *badger.Txn) error {
		_, recorded, err := firstAdminID(txn)
		if recorded || err != nil {
			done = recorded
			return err
		}
		admin, err := findUser(txn, activeAdmin)
		if admin == nil || err != nil {
			return err
		}
		done = true
		first, err = markSetup(txn, admin)
		return err
	})
	return done, s.syncIfFirst(first, err)
}

// FirstAdminID returns the id of the administrator whose creation completed setup; ok is
// false before setup.
func (s *Users) FirstAdminID() (id int64, ok bool, err error) {
	err = s.db.view(func(txn *badger.Txn) error {
		id, ok, err = firstAdminID(txn)
		return err
	})
	return id, ok, err
}

// firstAdminID reads the setup record inside txn (see FirstAdminID).
func firstAdminID(txn *badger.Txn) (id int64, ok bool, err error) {
	item, err := txn.Get(keyAdminInitialized)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	err = item.Value(func(b []byte) error {
		if _, err := fmt.Sscanf(string(b), "%d", &id); err != nil {
			return fmt.Errorf("%w: record %s: %w", ErrCorrupt, keyAdminInitialized, err)
		}
		return nil
	})
	return id, err == nil, err
}

// CreateFirstAdmin creates u as the first administrator, atomically with the check that no
// administrator has been created before; otherwise ErrSetupDone.
func (s *Users) CreateFirstAdmin(u *User) error {
	first := false
	err := s.db.update(func(txn *badger.Txn) error {
		if _, done, err := firstAdminID(txn); done || err != nil {
			return cmp.Or(err, ErrSetupDone)
		}
		if err := createUser(txn, u); err != nil {
			return err
		}
		first = true
		return recordSetup(txn, u.ID)
	})
	return s.syncIfFirst(first, err)
}

// SetupDone reports whether the first administrator exists.
func (s *Users) SetupDone() (bool, error) {
	_, done, err := s.FirstAdminID()
	return done, err
}

func createUser(txn *badger.Txn, u *User) error {
	for _, k := range [][]byte{userNameKey(u.Username), userEmailKey(u.Email)} {
		if _, err := txn.Get(k); err == nil {
			return fmt.Errorf("%w: user with email '%s' or username '%s'", ErrExists, u.Email, u.Username)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
	}
	id, err := nextID(txn, "users")
	if err != nil {
		return err
	}
	u.ID = id
	if err := setJSON(txn, userKey(id), u, time.Time{}); err != nil {
		return err
	}
	if err := setJSON(txn, userNameKey(u.Username), id, time.Time{}); err != nil {
		return err
	}
	return setJSON(txn, userEmailKey(u.Email), id, time.Time{})
}

// Get returns the user with the given id.
func (s *Users) Get(id int64) (*User, error) {
	var u User
	err := s.db.view(func(txn *badger.Txn) error { return getJSON(txn, userKey(id), &u) })
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// GetByLogin returns the user whose username or e-mail is login (case-insensitive).
func (s *Users) GetByLogin(login string) (*User, error) {
	var u User
	err := s.db.view(func(txn *badger.Txn) error {
		var id int64
		err := getJSON(txn, userNameKey(login), &id)
		if errors.Is(err, ErrNotFound) {
			err = getJSON(txn, userEmailKey(login), &id)
		}
		if err != nil {
			return err
		}
		return getJSON(txn, userKey(id), &u)
	})
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// List returns all users ordered by id.
func (s *Users) List() ([]*User, error) {
	var out []*User
	err := s.db.view(func(txn *badger.Txn) error {
		return eachUser(txn, func(u *User) bool { out = append(out, u); return true })
	})
	return out, err
}

// Update applies fn to the stored user and saves the result atomically. fn may change
// the username and e-mail; uniqueness is enforced. A change that takes the last active
// administrator's rights or activity away fails with ErrLastAdmin; one that makes the
// first administrator completes setup (markSetup).
func (s *Users) Update(id int64, fn func(u *User) error) (*User, error) {
	var out User
	first := false
	err := s.db.update(func(txn *badger.Txn) error {
		var u User
		if err := getJSON(txn, userKey(id), &u); err != nil {
			return err
		}
		old := u
		if err := fn(&u); err != nil {
			return err
		}
		u.ID = id
		if activeAdmin(&old) && !activeAdmin(&u) {
			if err := ensureOtherAdmin(txn, id); err != nil {
				return err
			}
		}
		if !strings.EqualFold(old.Username, u.Username) || !strings.EqualFold(old.Email, u.Email) {
			if err := reindexUser(txn, &old, &u); err != nil {
				return err
			}
		}
		var err error
		if first, err = markSetup(txn, &u); err != nil {
			return err
		}
		out = u
		return setJSON(txn, userKey(id), &u, time.Time{})
	})
	if err = s.syncIfFirst(first, err); err != nil {
		return nil, err
	}
	return &out, nil
}

func reindexUser(txn *badger.Txn, old, u *User) error {
	pairs := []struct{ oldK, newK []byte }{
		{userNameKey(old.Username), userNameKey(u.Username)},
		{userEmailKey(old.Email), userEmailKey(u.Email)},
	}
	for _, p := range pairs {
		if string(p.oldK) == string(p.newK) {
			continue
		}
		if _, err := txn.Get(p.newK); err == nil {
			return fmt.Errorf("%w: user with email '%s' or username '%s'", ErrExists, u.Email, u.Username)
		}
		if err := txn.Delete(p.oldK); err != nil {
			return err
		}
		if err := setJSON(txn, p.newK, u.ID, time.Time{}); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes a user and its indexes; deleting the last active administrator fails
// with ErrLastAdmin. Sessions and keys are removed by their stores.
func (s *Users) Delete(id int64) error {
	return s.db.update(func(txn *badger.Txn) error {
		var u User
		if err := getJSON(txn, userKey(id), &u); err != nil {
			return err
		}
		if activeAdmin(&u) {
			if err := ensureOtherAdmin(txn, id); err != nil {
				return err
			}
		}
		for _, k := range [][]byte{userKey(id), userNameKey(u.Username), userEmailKey(u.Email)} {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}
