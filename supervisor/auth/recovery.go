package auth

import (
	"context"
	"errors"
	"slices"

	"simpletuner/store"
)

// Reset is the outcome of ResetAdmin.
type Reset struct {
	User *store.User
	// Created is true when the account did not exist and was made.
	Created bool
	// Sessions is how many of the account's sessions were ended.
	Sessions int
}

// ResetAdmin is the offline recovery behind `simpletuner admin reset`, run with the daemon
// stopped: it makes the account named login (username or e-mail) an active administrator
// with the given password and ends its sessions, creating it (with e-mail email, or
// login@localhost) when no account has that name. An empty login means the administrator
// whose creation completed setup; when there never was one, an account named "admin".
// API keys are left as they are: the operator revokes them through the API if they are
// suspect.
func (s *Service) ResetAdmin(ctx context.Context, login, email, password string) (*Reset, error) {
	if err := checkPassword(password); err != nil {
		return nil, err
	}
	u, err := s.resetTarget(login)
	if err != nil {
		return nil, err
	}
	if u == nil {
		name := login
		if name == "" {
			name = "admin"
		}
		if email == "" {
			email = name + "@localhost"
		}
		u, err := s.CreateUser(ctx, NewUser{Username: name, Email: email, Password: password, IsAdmin: true})
		if err != nil {
			return nil, err
		}
		return &Reset{User: u, Created: true}, nil
	}
	hctx, cancel := s.hashCtx(ctx)
	defer cancel()
	hash, err := s.hasher.Hash(hctx, password)
	if err != nil {
		return nil, err
	}
	defer s.invalidate()
	u, err = s.db.Users().Update(u.ID, func(u *store.User) error {
		u.PasswordHash, u.IsActive, u.IsAdmin = hash, true, true
		if !slices.Contains(u.Levels, "admin") {
			u.Levels = append(u.Levels, "admin")
		}
		return nil
	})
	if err != nil {
		return nil, mapStoreErr(err)
	}
	s.noteAdmin(u)
	n, err := s.db.Sessions().DeleteForUser(u.ID, "")
	if err != nil {
		return nil, err
	}
	return &Reset{User: u, Sessions: n}, nil
}

// resetTarget finds the account ResetAdmin works on; nil means "create it".
func (s *Service) resetTarget(login string) (*store.User, error) {
	if login != "" {
		u, err := s.db.Users().GetByLogin(login)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		return u, err
	}
	id, ok, err := s.db.Users().FirstAdminID()
	if err != nil || !ok {
		return nil, err
	}
	u, err := s.db.Users().Get(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, invalidf("the first administrator (id %d) was deleted: name the account to reset with --username", id)
	}
	return u, err
}
