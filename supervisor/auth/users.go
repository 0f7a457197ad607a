package auth

import (
	"context"
	"slices"

	"simpletuner/store"
)

// ListUsers returns accounts ordered by id.
func (s *Service) ListUsers(includeInactive bool, limit, offset int) ([]*store.User, error) {
	all, err := s.db.Users().List()
	if err != nil {
		return nil, err
	}
	var out []*store.User
	for _, u := range all {
		if u.IsActive || includeInactive {
			out = append(out, u)
		}
	}
	if offset >= len(out) {
		return []*store.User{}, nil
	}
	out = out[offset:]
	if limit > 0 && limit < len(out) {
		out = out[:limit]
	}
	return out, nil
}

// GetUser returns one account.
func (s *Service) GetUser(id int64) (*store.User, error) {
	u, err := s.db.Users().Get(id)
	return u, mapStoreErr(err)
}

// UserPatch is a partial update of an account; nil fields stay as they are.
type UserPatch struct {
	Email       *string
	Username    *string
	DisplayName *string
	Password    *string
	IsAdmin     *bool
	IsActive    *bool
	Levels      *[]string
}

// UpdateUser applies a patch. It refuses changes that would leave no active administrator.
// A password change or deactivation ends the user's sessions.
func (s *Service) UpdateUser(ctx context.Context, id int64, p UserPatch) (*store.User, error) {
	defer s.invalidate()
	cur, err := s.GetUser(id)
	if err != nil {
		return nil, err
	}
	next := NewUser{Email: cur.Email, Username: cur.Username, DisplayName: cur.DisplayName, Levels: cur.Levels}
	if p.Email != nil {
		next.Email = *p.Email
	}
	if p.Username != nil {
		next.Username = *p.Username
	}
	if p.DisplayName != nil {
		next.DisplayName = *p.DisplayName
	}
	if p.Levels != nil {
		next.Levels = *p.Levels
	}
	if err := next.validateIdentity(); err != nil {
		return nil, err
	}
	var hash string
	if p.Password != nil {
		if err := checkPassword(*p.Password); err != nil {
			return nil, err
		}
		hctx, cancel := s.hashCtx(ctx)
		defer cancel()
		if hash, err = s.hasher.Hash(hctx, *p.Password); err != nil {
			return nil, err
		}
	}
	isAdmin := cur.IsAdmin
	if p.IsAdmin != nil {
		isAdmin = *p.IsAdmin
	}
	levels := next.Levels
	if p.Levels != nil || p.IsAdmin != nil {
		levels = slices.DeleteFunc(slices.Clone(levels), func(l string) bool { return l == "admin" })
		if p.Levels != nil && slices.Contains(*p.Levels, "admin") {
			isAdmin = true
		}
		if isAdmin {
			levels = append(levels, "admin")
		}
	}
	active := cur.IsActive
	if p.IsActive != nil {
		active = *p.IsActive
	}
	// The store refuses, in the same transaction as the write, a change that would leave
	// no active administrator (store.ErrLastAdmin).
	u, err := s.db.Users().Update(id, func(u *store.User) error {
		u.Email, u.Username, u.DisplayName = next.Email, next.Username, next.DisplayName
		if hash != "" {
			u.PasswordHash = hash
		}
		u.IsAdmin, u.IsActive, u.Levels = isAdmin, active, levels
		return nil
	})
	if err != nil {
		return nil, mapStoreErr(err)
	}
	s.noteAdmin(u)
	if hash != "" || !active {
		if _, err := s.db.Sessions().DeleteForUser(id, ""); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// DeleteUser removes an account, its sessions and its keys. Callers cannot delete
// themselves or the last administrator.
func (s *Service) DeleteUser(p *Principal, id int64) error {
	defer s.invalidate()
	if p.User != nil && p.User.ID == id {
		return invalidf("You cannot delete your own account")
	}
	// The account goes first: its deletion is what the last-administrator check guards
	// (in the store's transaction), and sessions or keys left behind by a failure after it
	// resolve to no user and are refused.
	if err := s.db.Users().Delete(id); err != nil {
		return mapStoreErr(err)
	}
	if _, err := s.db.Sessions().DeleteForUser(id, ""); err != nil {
		return err
	}
	return s.db.APIKeys().RevokeForUser(id)
}
