package auth

import (
	"context"
	"time"

	"simpletuner/store"
)

// RegistrationSettings is the public-registration policy.
type RegistrationSettings struct {
	Enabled              bool    `json:"enabled"`
	DefaultLevel         string  `json:"default_level"`
	EmailConfigured      bool    `json:"email_configured"`
	EmailRequiredWarning *string `json:"email_required_warning"`
}

const registrationKey = "registration"

// Registration returns the policy; registration is disabled until an admin enables it.
func (s *Service) Registration() (RegistrationSettings, error) {
	r := RegistrationSettings{DefaultLevel: "researcher"}
	if _, err := s.db.Settings().Get(registrationKey, &r); err != nil {
		return r, err
	}
	r.EmailConfigured = false
	r.EmailRequiredWarning = nil
	if r.Enabled {
		w := "Email is not configured. Password reset and email verification will not work for new users."
		r.EmailRequiredWarning = &w
	}
	return r, nil
}

// SetRegistration updates the policy; nil fields stay as they are.
func (s *Service) SetRegistration(enabled *bool, defaultLevel *string) (RegistrationSettings, error) {
	r, err := s.Registration()
	if err != nil {
		return r, err
	}
	if enabled != nil {
		r.Enabled = *enabled
	}
	if defaultLevel != nil {
		if *defaultLevel == "admin" {
			return r, invalidf("default_level: registration cannot grant admin")
		}
		if _, ok := LevelByName(*defaultLevel); !ok {
			return r, invalidf("default_level: unknown level %q (known: viewer, researcher, lead)", truncate(*defaultLevel, 40))
		}
		r.DefaultLevel = *defaultLevel
	}
	if err := s.db.Settings().Put(registrationKey, RegistrationSettings{Enabled: r.Enabled, DefaultLevel: r.DefaultLevel}); err != nil {
		return r, err
	}
	return s.Registration()
}

// Register creates an account through public registration and opens a 24 h session.
func (s *Service) Register(ctx context.Context, addr string, n NewUser) (*store.User, string, time.Duration, error) {
	if !s.SetupDone() {
		return nil, "", 0, invalidf("Use /api/auth/setup/first-admin for initial setup")
	}
	r, err := s.Registration()
	if err != nil {
		return nil, "", 0, err
	}
	if !r.Enabled {
		return nil, "", 0, ErrRegistrationDisabled
	}
	// Registration is throttled like login: it costs a password hash.
	if err := s.limiter.Allow(addr, "register:"+addr); err != nil {
		return nil, "", 0, err
	}
	n.IsAdmin = false
	n.Levels = []string{r.DefaultLevel}
	u, err := s.CreateUser(ctx, n)
	if err != nil {
		return nil, "", 0, err
	}
	tok, ttl, err := s.NewSession(u.ID, false)
	return u, tok, ttl, err
}
