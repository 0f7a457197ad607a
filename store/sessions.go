package store

import (
	"errors"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Session is a login session. It is stored under the SHA-256 of its token, so reading the
// database does not hand out sessions.
type Session struct {
	TokenHash string    `json:"token_hash"`
	UserID    int64     `json:"user_id"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

func sessionKey(hash string) []byte { return []byte("sessions/" + hash) }
func sessionUserKey(uid int64, hash string) []byte {
	return append(idKey("sessions_by_user/", uid), []byte("/"+hash)...)
}

// Sessions is the typed store of login sessions.
type Sessions struct{ db *DB }

// Sessions returns the session store.
func (d *DB) Sessions() *Sessions { return &Sessions{db: d} }

// Create stores s; badger expires it at s.ExpiresAt.
func (s *Sessions) Create(sess *Session) error {
	return s.db.update(func(txn *badger.Txn) error {
		if err := setJSON(txn, sessionKey(sess.TokenHash), sess, sess.ExpiresAt); err != nil {
			return err
		}
		return txn.SetEntry(badger.NewEntry(sessionUserKey(sess.UserID, sess.TokenHash), nil).WithTTL(time.Until(sess.ExpiresAt)))
	})
}

// Get returns the live session stored under hash; expired sessions are ErrNotFound.
func (s *Sessions) Get(hash string) (*Session, error) {
	var sess Session
	err := s.db.view(func(txn *badger.Txn) error { return getJSON(txn, sessionKey(hash), &sess) })
	if err != nil {
		return nil, err
	}
	if time.Now().After(sess.ExpiresAt) {
		return nil, ErrNotFound
	}
	return &sess, nil
}

// Delete removes the session stored under hash (no error if absent).
func (s *Sessions) Delete(hash string) error {
	return s.db.update(func(txn *badger.Txn) error {
		var sess Session
		err := getJSON(txn, sessionKey(hash), &sess)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := txn.Delete(sessionUserKey(sess.UserID, hash)); err != nil {
			return err
		}
		return txn.Delete(sessionKey(hash))
	})
}

// DeleteForUser removes every session of a user except keepHash (pass "" to remove all),
// and returns how many were removed.
func (s *Sessions) DeleteForUser(uid int64, keepHash string) (int, error) {
	n := 0
	err := s.db.update(func(txn *badger.Txn) error {
		n = 0
		prefix := append(idKey("sessions_by_user/", uid), '/')
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		var keys [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		it.Close()
		for _, k := range keys {
			hash := string(k[len(prefix):])
			if hash == keepHash {
				continue
			}
			if err := txn.Delete(k); err != nil {
				return err
			}
			if err := txn.Delete(sessionKey(hash)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}
