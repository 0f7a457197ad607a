package auth

import (
	"errors"
	"slices"
	"strings"
	"time"

	"simpletuner/store"
)

// CreateAPIKey mints a key for the caller. The key is returned once and stored only as a
// hash. expiresDays (1–365) is optional; scopes must be permissions the caller holds.
func (s *Service) CreateAPIKey(p *Principal, name string, expiresDays *int, scopes []string) (string, *store.APIKey, error) {
	if p.IsLocal() {
		return "", nil, invalidf("create the first administrator (POST /api/auth/setup/first-admin) and log in before creating API keys")
	}
	if !p.Can(PermAPIKeysOwn) {
		return "", nil, ErrForbidden
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return "", nil, invalidf("name: 1 to 100 characters")
	}
	var exp *time.Time
	if expiresDays != nil {
		if *expiresDays < 1 || *expiresDays > 365 {
			return "", nil, invalidf("expires_days: between 1 and 365, or null for no expiry")
		}
		t := s.now().Add(time.Duration(*expiresDays) * 24 * time.Hour).UTC()
		exp = &t
	}
	var missing []string
	for _, sc := range scopes {
		if !slices.Contains(Catalogue(), sc) && !strings.HasSuffix(sc, ".*") {
			return "", nil, invalidf("scoped_permissions: unknown permission %q (GET /api/users/meta/permissions lists them)", truncate(sc, 60))
		}
		if !HasPermission(p.Permissions, sc) {
			missing = append(missing, sc)
		}
	}
	if len(missing) > 0 {
		return "", nil, invalidf("Cannot scope to permissions you don't have: %s", strings.Join(missing, ", "))
	}
	key := NewAPIKey()
	rec := &store.APIKey{UserID: p.User.ID, Name: name, KeyPrefix: key[:11], KeyHash: HashToken(key),
		CreatedAt: s.now().UTC(), ExpiresAt: exp, IsActive: true, ScopedPermissions: slices.Clone(scopes)}
	if err := s.db.APIKeys().Create(rec); err != nil {
		return "", nil, err
	}
	return key, rec, nil
}

// ListAPIKeys returns the caller's keys.
func (s *Service) ListAPIKeys(p *Principal) ([]*store.APIKey, error) {
	if p.IsLocal() {
		return nil, nil
	}
	return s.db.APIKeys().List(p.User.ID)
}

// RevokeAPIKey deactivates a key: the caller's own, or any key with api.keys.all.
func (s *Service) RevokeAPIKey(p *Principal, id int64) error {
	k, err := s.db.APIKeys().Get(id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !k.IsActive) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	if k.UserID != p.User.ID && !p.Can(PermAPIKeysAll) {
		// Someone else's key: answer as if it did not exist, so ids reveal nothing.
		return ErrNotFound
	}
	defer s.invalidate()
	return s.db.APIKeys().Update(id, func(k *store.APIKey) error { k.IsActive = false; return nil })
}
