// Package configstest holds test doubles for the configs service.
package configstest

import (
	"encoding/json"
	"sync"
)

// MemSettings is an in-memory configs.Settings. The zero value is ready to use.
type MemSettings struct {
	mu sync.Mutex // guards m
	m  map[string][]byte
}

// Get reads the setting name into v; ok is false when it was never put.
func (s *MemSettings) Get(name string, v any) (ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[name]
	if !ok {
		return false, nil
	}
	return true, json.Unmarshal(b, v)
}

// Put stores v as the setting name.
func (s *MemSettings) Put(name string, v any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[name] = b
	return nil
}
