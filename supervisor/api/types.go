package api

import (
	"time"

	"simpletuner/store"
	"simpletuner/supervisor/auth"
)

// detailBody is the error body of every failed request: {"detail": "..."}.
type detailBody struct {
	Detail string `json:"detail"`
}

// validationBody is the FastAPI-style 422 body: a list of field errors.
type validationBody struct {
	Detail []fieldError `json:"detail"`
}

type fieldError struct {
	Type string   `json:"type"`
	Loc  []string `json:"loc"`
	Msg  string   `json:"msg"`
}

type successBody struct {
	Success bool `json:"success"`
}

type healthBody struct {
	Status string `json:"status"`
	Mode   string `json:"mode"`
}

type levelRef struct {
	ID       int    `json:"id"`
	Name     string `json:"name"`
	Priority int    `json:"priority"`
}

// userBody is SimpleTuner's User.to_dict / UserResponse shape.
type userBody struct {
	ID            int64      `json:"id"`
	Email         string     `json:"email"`
	Username      string     `json:"username"`
	DisplayName   string     `json:"display_name"`
	AvatarURL     *string    `json:"avatar_url"`
	AuthProvider  string     `json:"auth_provider"`
	IsActive      bool       `json:"is_active"`
	IsAdmin       bool       `json:"is_admin"`
	EmailVerified bool       `json:"email_verified"`
	CreatedAt     string     `json:"created_at"`
	LastLoginAt   *string    `json:"last_login_at"`
	Levels        []levelRef `json:"levels"`
	Permissions   []string   `json:"permissions"`
	ResourceRules []string   `json:"resource_rules"`
	OrgID         *int64     `json:"org_id"`
	Organization  *string    `json:"organization"`
	Teams         []string   `json:"teams"`
}

func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000+00:00") }

func isoPtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := isoTime(*t)
	return &s
}

func toUserBody(u *store.User) userBody {
	levels := []levelRef{}
	for _, name := range u.Levels {
		if l, ok := auth.LevelByName(name); ok {
			levels = append(levels, levelRef{ID: l.ID, Name: l.Name, Priority: l.Priority})
		}
	}
	return userBody{ID: u.ID, Email: u.Email, Username: u.Username, DisplayName: u.DisplayName,
		AuthProvider: u.AuthProvider, IsActive: u.IsActive, IsAdmin: u.IsAdmin, EmailVerified: u.EmailVerified,
		CreatedAt: isoTime(u.CreatedAt), LastLoginAt: isoPtr(u.LastLoginAt), Levels: levels,
		Permissions: auth.PermissionsFor(u.Levels, u.IsAdmin), ResourceRules: []string{}, Teams: []string{}}
}

type setupRequest struct {
	Email       string  `json:"email"`
	Username    string  `json:"username"`
	Password    string  `json:"password"`
	DisplayName *string `json:"display_name"`
	// SetupToken is needed only when the request does not come from the server machine:
	// the daemon writes it to <state>/bootstrap-token.
	SetupToken string `json:"setup_token,omitempty"`
}

type firstAdminBody struct {
	Success bool     `json:"success"`
	Message string   `json:"message"`
	User    userBody `json:"user"`
}

type loginRequest struct {
	Username   string `json:"username"`
	Password   string `json:"password"`
	RememberMe bool   `json:"remember_me"`
}

type loginBody struct {
	Success bool     `json:"success"`
	User    userBody `json:"user"`
	Message *string  `json:"message"`
}

type checkBody struct {
	Authenticated bool   `json:"authenticated"`
	UserID        *int64 `json:"user_id,omitempty"`
	Username      string `json:"username,omitempty"`
	IsAdmin       *bool  `json:"is_admin,omitempty"`
}

type changePasswordRequest struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

type apiKeyRequest struct {
	Name              string   `json:"name"`
	ExpiresDays       *int     `json:"expires_days"`
	ScopedPermissions []string `json:"scoped_permissions"`
}

type apiKeyInfo struct {
	ID                int64    `json:"id"`
	Name              string   `json:"name"`
	KeyPrefix         string   `json:"key_prefix"`
	CreatedAt         string   `json:"created_at"`
	LastUsedAt        *string  `json:"last_used_at"`
	ExpiresAt         *string  `json:"expires_at"`
	IsActive          bool     `json:"is_active"`
	ScopedPermissions []string `json:"scoped_permissions"`
}

func toKeyInfo(k *store.APIKey) apiKeyInfo {
	return apiKeyInfo{ID: k.ID, Name: k.Name, KeyPrefix: k.KeyPrefix, CreatedAt: isoTime(k.CreatedAt),
		LastUsedAt: isoPtr(k.LastUsedAt), ExpiresAt: isoPtr(k.ExpiresAt), IsActive: k.IsActive, ScopedPermissions: k.ScopedPermissions}
}

type apiKeyCreated struct {
	Key     string     `json:"key"`
	KeyInfo apiKeyInfo `json:"key_info"`
}

type createUserRequest struct {
	Email       string   `json:"email"`
	Username    string   `json:"username"`
	Password    *string  `json:"password"`
	DisplayName *string  `json:"display_name"`
	IsAdmin     bool     `json:"is_admin"`
	LevelNames  []string `json:"level_names"`
}

type updateUserRequest struct {
	Email       *string   `json:"email"`
	Username    *string   `json:"username"`
	DisplayName *string   `json:"display_name"`
	Password    *string   `json:"password"`
	IsAdmin     *bool     `json:"is_admin"`
	IsActive    *bool     `json:"is_active"`
	LevelNames  *[]string `json:"level_names"`
}

type levelsRequest struct {
	LevelNames []string `json:"level_names"`
}

type authStatusBody struct {
	InUse                bool `json:"in_use"`
	UserCount            int  `json:"user_count"`
	HasExternalProviders bool `json:"has_external_providers"`
}

type registrationRequest struct {
	Enabled      *bool   `json:"enabled"`
	DefaultLevel *string `json:"default_level"`
}

// trainingStatusBody is GET /api/training/status. Until job supervision lands the daemon
// is always idle.
type trainingStatusBody struct {
	Status          string         `json:"status"`
	Config          map[string]any `json:"config"`
	JobID           *string        `json:"job_id"`
	JobInfo         map[string]any `json:"job_info"`
	Progress        *progressBody  `json:"progress"`
	StartupProgress map[string]any `json:"startup_progress"`
}
