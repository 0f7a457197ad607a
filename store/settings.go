package store

import (
	"time"

	"errors"

	badger "github.com/dgraph-io/badger/v4"
)

// Settings is a small typed key/value store for server settings (registration policy,
// concurrency limits, …). Values are JSON.
type Settings struct{ db *DB }

// Settings returns the settings store.
func (d *DB) Settings() *Settings { return &Settings{db: d} }

func settingKey(name string) []byte { return []byte("settings/" + name) }

// Get decodes the setting into v and reports whether it was set.
func (s *Settings) Get(name string, v any) (bool, error) {
	err := s.db.view(func(txn *badger.Txn) error { return getJSON(txn, settingKey(name), v) })
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Put stores v as the setting's value.
func (s *Settings) Put(name string, v any) error {
	return s.db.update(func(txn *badger.Txn) error { return setJSON(txn, settingKey(name), v, time.Time{}) })
}
