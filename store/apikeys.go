package store

import (
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// APIKey is a stored API key. Only the SHA-256 of the key is kept; the key itself is shown
// once, when it is created.
type APIKey struct {
	ID                int64      `json:"id"`
	UserID            int64      `json:"user_id"`
	Name              string     `json:"name"`
	KeyPrefix         string     `json:"key_prefix"`
	KeyHash           string     `json:"key_hash"`
	CreatedAt         time.Time  `json:"created_at"`
	LastUsedAt        *time.Time `json:"last_used_at"`
	ExpiresAt         *time.Time `json:"expires_at"`
	IsActive          bool       `json:"is_active"`
	ScopedPermissions []string   `json:"scoped_permissions"`
}

func apiKeyKey(id int64) []byte        { return idKey("apikeys/id/", id) }
func apiKeyHashKey(hash string) []byte { return []byte("apikeys/hash/" + hash) }

// APIKeys is the typed store of API keys.
type APIKeys struct{ db *DB }

// APIKeys returns the API key store.
func (d *DB) APIKeys() *APIKeys { return &APIKeys{db: d} }

// Create stores k, assigning k.ID.
func (s *APIKeys) Create(k *APIKey) error {
	return s.db.update(func(txn *badger.Txn) error {
		id, err := nextID(txn, "apikeys")
		if err != nil {
			return err
		}
		k.ID = id
		if err := setJSON(txn, apiKeyKey(id), k, time.Time{}); err != nil {
			return err
		}
		return setJSON(txn, apiKeyHashKey(k.KeyHash), id, time.Time{})
	})
}

// GetByHash finds a key by the SHA-256 of its secret: one indexed lookup, not a scan.
func (s *APIKeys) GetByHash(hash string) (*APIKey, error) {
	var k APIKey
	err := s.db.view(func(txn *badger.Txn) error {
		var id int64
		if err := getJSON(txn, apiKeyHashKey(hash), &id); err != nil {
			return err
		}
		return getJSON(txn, apiKeyKey(id), &k)
	})
	if err != nil {
		return nil, err
	}
	return &k, nil
}

// Get returns the key with the given id.
func (s *APIKeys) Get(id int64) (*APIKey, error) {
	var k APIKey
	if err := s.db.view(func(txn *badger.Txn) error { return getJSON(txn, apiKeyKey(id), &k) }); err != nil {
		return nil, err
	}
	return &k, nil
}

// List returns the keys of a user (all users when uid is 0), ordered by id.
func (s *APIKeys) List(uid int64) ([]*APIKey, error) {
	var out []*APIKey
	err := s.db.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("apikeys/id/"), PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var k APIKey
			if err := getJSON(txn, it.Item().KeyCopy(nil), &k); err != nil {
				return err
			}
			if uid == 0 || k.UserID == uid {
				out = append(out, &k)
			}
		}
		return nil
	})
	return out, err
}

// Update applies fn to the stored key and saves it atomically.
func (s *APIKeys) Update(id int64, fn func(k *APIKey) error) error {
	return s.db.update(func(txn *badger.Txn) error {
		var k APIKey
		if err := getJSON(txn, apiKeyKey(id), &k); err != nil {
			return err
		}
		if err := fn(&k); err != nil {
			return err
		}
		return setJSON(txn, apiKeyKey(id), &k, time.Time{})
	})
}

// RevokeForUser deactivates every key of a user (when the user is deleted or disabled).
func (s *APIKeys) RevokeForUser(uid int64) error {
	keys, err := s.List(uid)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if !k.IsActive {
			continue
		}
		if err := s.Update(k.ID, func(k *APIKey) error { k.IsActive = false; return nil }); err != nil {
			return err
		}
	}
	return nil
}
