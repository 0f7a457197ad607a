package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"simpletuner/store"
)

// Options configures a Service. Zero values mean the defaults.
type Options struct {
	SessionTTL     time.Duration // default 24 h
	RememberMeTTL  time.Duration // default 30 days
	HashParallel   int           // concurrent password hashes; default GOMAXPROCS
	HashWait       time.Duration // how long a login waits for a hash slot before 503; default 5 s
	LoginLimits    *LoginLimits  // default DefaultLoginLimits()
	Now            func() time.Time
	KeyTouchPeriod time.Duration // how often last_used_at is written per key; default 1 min
}

// Service is the auth service. It is safe for concurrent use.
type Service struct {
	db      *store.DB
	hasher  *Hasher
	limiter *LoginLimiter
	now     func() time.Time
	log     *slog.Logger
	opts    Options

	// setupClaim is held by the one first-admin call in progress in this process, from
	// before its password is hashed until its user is stored or it failed: concurrent
	// calls are refused at once instead of each hashing a password (slow, and bounded by
	// the hasher's slots) only to lose at commit. The store transaction makes creation
	// safe across processes too. setupDone caches "an admin exists": it only ever goes
	// from false to true.
	setupClaim atomic.Bool
	setupDone  atomic.Bool

	// touchMu guards touched: when each API key's last_used_at was last written, so a busy
	// key costs one write a minute rather than one per request.
	touchMu sync.Mutex
	touched map[int64]time.Time

	// fpKey keys the fingerprints of unknown logins in the log (fingerprint): random per
	// process, so a logged fingerprint cannot be reversed by hashing guessed passwords.
	fpKey []byte

	// keyMu guards keys: principals of recently used API keys by key hash, so a script
	// polling with a key costs no database read per request. Every change to a key or a
	// user bumps gen, which invalidates all entries at once: a revoked key or disabled
	// user is refused on the very next request.
	keyMu sync.Mutex
	keys  map[string]cachedKey
	gen   atomic.Uint64
}

// cachedKey is a resolved API key.
type cachedKey struct {
	p   *Principal
	exp *time.Time
	gen uint64
	at  time.Time
}

// keyCacheTTL bounds how long a resolved key is reused even without changes.
const keyCacheTTL = 10 * time.Second

// invalidate drops every cached credential (after any change to keys or users).
func (s *Service) invalidate() { s.gen.Add(1) }

// NewService returns the auth service over db.
func NewService(db *store.DB, log *slog.Logger, o Options) (*Service, error) {
	if o.SessionTTL == 0 {
		o.SessionTTL = 24 * time.Hour
	}
	if o.RememberMeTTL == 0 {
		o.RememberMeTTL = 30 * 24 * time.Hour
	}
	if o.HashParallel == 0 {
		o.HashParallel = runtime.GOMAXPROCS(0)
	}
	if o.HashWait == 0 {
		o.HashWait = 5 * time.Second
	}
	if o.LoginLimits == nil {
		l := DefaultLoginLimits()
		o.LoginLimits = &l
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.KeyTouchPeriod == 0 {
		o.KeyTouchPeriod = time.Minute
	}
	s := &Service{db: db, hasher: NewHasher(o.HashParallel), limiter: NewLoginLimiter(*o.LoginLimits, o.Now),
		now: o.Now, log: log, opts: o, touched: map[int64]time.Time{}, keys: map[string]cachedKey{}, fpKey: make([]byte, 32)}
	_, _ = rand.Read(s.fpKey)
	done, err := db.Users().RepairSetup()
	if err != nil {
		return nil, fmt.Errorf("read setup state: %w", err)
	}
	s.setupDone.Store(done)
	return s, nil
}

// Principal is the authenticated caller of a request.
type Principal struct {
	User        *store.User
	Permissions []string
	// Method is how the caller authenticated: "session", "api_key" or "local" (loopback
	// before the first administrator exists).
	Method      string
	SessionHash string
	APIKeyID    int64
	// Scopes, when non-empty, further restrict an API key to these permissions.
	Scopes []string
}

// Can reports whether the principal holds permission p.
func (p *Principal) Can(perm string) bool {
	if p == nil || (p.User != nil && !p.User.IsActive) {
		return false
	}
	if !HasPermission(p.Permissions, perm) {
		return false
	}
	return len(p.Scopes) == 0 || HasPermission(p.Scopes, perm)
}

// IsLocal reports whether this is the implicit local administrator of a fresh install.
func (p *Principal) IsLocal() bool { return p != nil && p.Method == "local" }

// SetupDone reports whether the first administrator exists.
func (s *Service) SetupDone() bool { return s.setupDone.Load() }

// LocalAdmin is the principal for loopback callers before setup: the seed's first steps
// (create the first admin, log in) run from the machine itself.
func (s *Service) LocalAdmin() *Principal {
	u := &store.User{ID: 0, Username: "local", Email: "local@localhost", DisplayName: "local", AuthProvider: "local",
		IsActive: true, IsAdmin: true, Levels: []string{"admin"}}
	return &Principal{User: u, Permissions: []string{"*"}, Method: "local"}
}

// SetupStatus is the answer of GET …/setup/status.
type SetupStatus struct {
	NeedsSetup          bool `json:"needs_setup"`
	HasAdmin            bool `json:"has_admin"`
	UserCount           int  `json:"user_count"`
	RegistrationEnabled bool `json:"registration_enabled"`
}

// Status reports whether setup is needed.
func (s *Service) Status() (SetupStatus, error) {
	users, err := s.db.Users().List()
	if err != nil {
		return SetupStatus{}, err
	}
	reg, err := s.Registration()
	if err != nil {
		return SetupStatus{}, err
	}
	hasAdmin := slices.ContainsFunc(users, func(u *store.User) bool { return u.IsAdmin && u.IsActive })
	return SetupStatus{NeedsSetup: !s.SetupDone(), HasAdmin: hasAdmin, UserCount: len(users), RegistrationEnabled: reg.Enabled}, nil
}

// NewUser is the input to user creation.
type NewUser struct {
	Email       string
	Username    string
	Password    string
	DisplayName string
	IsAdmin     bool
	Levels      []string
}

var (
	usernameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{3,50}$`)
	emailRE    = regexp.MustCompile(`^[^@\s]{1,64}@[^@\s]{1,189}$`)
)

func (n *NewUser) validate() error {
	if err := n.validateIdentity(); err != nil {
		return err
	}
	return checkPassword(n.Password)
}

// validateIdentity checks everything but the password (which a patch may leave alone).
func (n *NewUser) validateIdentity() error {
	n.Email = strings.TrimSpace(n.Email)
	n.Username = strings.TrimSpace(n.Username)
	if !emailRE.MatchString(n.Email) {
		return invalidf("email: %q is not a valid e-mail address", truncate(n.Email, 80))
	}
	if !usernameRE.MatchString(n.Username) {
		return invalidf("username: use 3 to 50 characters from a-z, A-Z, 0-9, '_' and '-'")
	}
	if len(n.DisplayName) > 100 {
		return invalidf("display_name: at most 100 characters")
	}
	for _, l := range n.Levels {
		if _, ok := LevelByName(l); !ok {
			return invalidf("level_names: unknown level %q (known: viewer, researcher, lead, admin)", truncate(l, 40))
		}
	}
	return nil
}

func checkPassword(pw string) error {
	if len(pw) < MinPasswordLen {
		return invalidf("password: at least %d characters", MinPasswordLen)
	}
	if len(pw) > MaxPasswordLen {
		return invalidf("password: at most %d bytes", MaxPasswordLen)
	}
	return nil
}

func (s *Service) hashCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.HashWait)
}

func (s *Service) newStoreUser(ctx context.Context, n NewUser) (*store.User, error) {
	if err := n.validate(); err != nil {
		return nil, err
	}
	return s.hashedUser(ctx, n)
}

// hashedUser builds the store record of a validated n, hashing its password.
func (s *Service) hashedUser(ctx context.Context, n NewUser) (*store.User, error) {
	hctx, cancel := s.hashCtx(ctx)
	defer cancel()
	hash, err := s.hasher.Hash(hctx, n.Password)
	if err != nil {
		return nil, err
	}
	levels := n.Levels
	if n.IsAdmin && !slices.Contains(levels, "admin") {
		levels = append(slices.Clone(levels), "admin")
	}
	if slices.Contains(levels, "admin") {
		n.IsAdmin = true
	}
	display := n.DisplayName
	if display == "" {
		display = n.Username
	}
	return &store.User{Email: n.Email, Username: n.Username, DisplayName: display, PasswordHash: hash,
		AuthProvider: "local", IsActive: true, IsAdmin: n.IsAdmin, Levels: levels, CreatedAt: s.now().UTC()}, nil
}

// CreateFirstAdmin creates the first administrator. Exactly one call ever succeeds; the
// rest get ErrSetupDone, or ErrSetupInProgress while another call is creating it. The
// order is claim, hash, commit: a burst of calls costs one password hash, so none of
// them waits for a hash slot (and fails busy) behind the others; a call that fails after
// claiming releases the claim, so a later one may try again.
func (s *Service) CreateFirstAdmin(ctx context.Context, n NewUser) (*store.User, error) {
	if s.SetupDone() {
		return nil, ErrSetupDone
	}
	n.IsAdmin = true
	n.Levels = []string{"admin"}
	if err := n.validate(); err != nil {
		return nil, err // a malformed request never holds the claim
	}
	if !s.setupClaim.CompareAndSwap(false, true) {
		return nil, ErrSetupInProgress
	}
	defer s.setupClaim.Store(false)
	if s.SetupDone() {
		return nil, ErrSetupDone // the previous holder finished while this call validated
	}
	u, err := s.hashedUser(ctx, n)
	if err != nil {
		return nil, err
	}
	if err := s.db.Users().CreateFirstAdmin(u); err != nil {
		if errors.Is(err, store.ErrSetupDone) || errors.Is(err, store.ErrConflict) {
			return nil, ErrSetupDone
		}
		return nil, mapStoreErr(err)
	}
	s.setupDone.Store(true)
	s.log.Info("first administrator created", "username", u.Username, "id", u.ID)
	return u, nil
}

// CreateUser creates an account (admin operation, or registration).
func (s *Service) CreateUser(ctx context.Context, n NewUser) (*store.User, error) {
	if len(n.Levels) == 0 && !n.IsAdmin {
		n.Levels = []string{"researcher"}
	}
	u, err := s.newStoreUser(ctx, n)
	if err != nil {
		return nil, err
	}
	if err := s.db.Users().Create(u); err != nil {
		return nil, mapStoreErr(err)
	}
	s.noteAdmin(u)
	return u, nil
}

// noteAdmin closes setup in memory once an active administrator exists, by whichever
// route it was made (first-admin, POST /api/users, a promotion, the offline reset). The
// store already recorded it in the same transaction as the write (store.markSetup); this
// only updates the cache that principal resolution reads on every request.
func (s *Service) noteAdmin(u *store.User) {
	if u.IsAdmin && u.IsActive && s.setupDone.CompareAndSwap(false, true) {
		s.log.Info("setup complete: an administrator exists; loopback callers are no longer implicit administrators", "username", u.Username, "id", u.ID)
	}
}

// Login checks credentials for a client at addr and opens a session. It returns the user,
// the session token for the cookie, and the session lifetime.
func (s *Service) Login(ctx context.Context, addr, login, password string, remember bool) (*store.User, string, time.Duration, error) {
	login = strings.TrimSpace(login)
	if login == "" || password == "" {
		return nil, "", 0, invalidf("username and password are required")
	}
	if len(password) > MaxPasswordLen || len(login) > 254 {
		return nil, "", 0, ErrInvalidCredentials
	}
	u, err := s.db.Users().GetByLogin(login)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, "", 0, err
	}
	// One lock per account, whichever of its names was typed: the username and the e-mail
	// share the free failures. Unknown logins are counted per string, so they are throttled
	// (and answer) exactly as a real account would.
	account := accountKey(u, login)
	if err := s.limiter.Allow(addr, account); err != nil {
		return nil, "", 0, err
	}
	phc := ""
	if u != nil {
		phc = u.PasswordHash
	}
	hctx, cancel := s.hashCtx(ctx)
	defer cancel()
	ok, err := s.hasher.Verify(hctx, phc, password)
	if err != nil {
		if errors.Is(err, ErrBusy) {
			return nil, "", 0, err
		}
		s.log.Error("password hash unreadable", "user_id", u.ID, "err", err)
		ok = false
	}
	if !ok || u == nil || !u.IsActive {
		s.limiter.Failed(account)
		if u != nil {
			s.log.Info("failed login", "user_id", u.ID, "username", u.Username, "addr", addr)
		} else {
			// A login that names no account is never logged: people type passwords
			// there. The fingerprint lets an operator see repeats within this run only.
			s.log.Info("failed login for an unknown account", "login_fingerprint", s.fingerprint(login), "addr", addr)
		}
		return nil, "", 0, ErrInvalidCredentials
	}
	s.limiter.Succeeded(account)
	now := s.now().UTC()
	u, err = s.db.Users().Update(u.ID, func(u *store.User) error { u.LastLoginAt = &now; return nil })
	if err != nil {
		return nil, "", 0, mapStoreErr(err)
	}
	tok, ttl, err := s.NewSession(u.ID, remember)
	if err != nil {
		return nil, "", 0, err
	}
	return u, tok, ttl, nil
}

// NewSession opens a session for the user and returns its token and lifetime. A fresh
// token is minted every time: a token the client supplied is never adopted (fixation).
func (s *Service) NewSession(uid int64, remember bool) (string, time.Duration, error) {
	ttl := s.opts.SessionTTL
	if remember {
		ttl = s.opts.RememberMeTTL
	}
	tok := NewSessionToken()
	now := s.now()
	err := s.db.Sessions().Create(&store.Session{TokenHash: HashToken(tok), UserID: uid, CreatedAt: now.UTC(), ExpiresAt: now.Add(ttl).UTC()})
	if err != nil {
		return "", 0, fmt.Errorf("create session: %w", err)
	}
	return tok, ttl, nil
}

// Logout ends the session with that token (no error when there is none).
func (s *Service) Logout(token string) error {
	if token == "" {
		return nil
	}
	return s.db.Sessions().Delete(HashToken(token))
}

// Authenticate resolves credentials to a principal: an API key when one is presented
// (an invalid key is an error, never a fall-through to the cookie), else the session token.
// With neither, it returns ErrUnauthenticated.
func (s *Service) Authenticate(apiKey, sessionToken string) (*Principal, error) {
	if apiKey != "" {
		return s.authAPIKey(apiKey)
	}
	if sessionToken == "" {
		return nil, ErrUnauthenticated
	}
	hash := HashToken(sessionToken)
	sess, err := s.db.Sessions().Get(hash)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrUnauthenticated
		}
		return nil, err
	}
	u, err := s.db.Users().Get(sess.UserID)
	if err != nil || !u.IsActive {
		return nil, ErrUnauthenticated
	}
	return &Principal{User: u, Permissions: PermissionsFor(u.Levels, u.IsAdmin), Method: "session", SessionHash: hash}, nil
}

func (s *Service) authAPIKey(key string) (*Principal, error) {
	if !LooksLikeAPIKey(key) {
		return nil, ErrInvalidAPIKey
	}
	hash := HashToken(key)
	now := s.now()
	gen := s.gen.Load()
	s.keyMu.Lock()
	c, ok := s.keys[hash]
	s.keyMu.Unlock()
	if ok && c.gen == gen && now.Sub(c.at) < keyCacheTTL && (c.exp == nil || !now.After(*c.exp)) {
		s.touchKey(c.p.APIKeyID, now)
		return c.p, nil
	}
	k, err := s.db.APIKeys().GetByHash(hash)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrInvalidAPIKey
		}
		return nil, err
	}
	// The index lookup found it; compare in constant time anyway so the check does not
	// depend on how the index is implemented.
	if subtle.ConstantTimeCompare([]byte(k.KeyHash), []byte(hash)) != 1 || !k.IsActive {
		return nil, ErrInvalidAPIKey
	}
	if k.ExpiresAt != nil && now.After(*k.ExpiresAt) {
		return nil, ErrInvalidAPIKey
	}
	u, err := s.db.Users().Get(k.UserID)
	if err != nil || !u.IsActive {
		return nil, ErrInvalidAPIKey
	}
	s.touchKey(k.ID, now)
	p := &Principal{User: u, Permissions: PermissionsFor(u.Levels, u.IsAdmin), Method: "api_key", APIKeyID: k.ID, Scopes: k.ScopedPermissions}
	s.keyMu.Lock()
	if len(s.keys) >= 10000 {
		clear(s.keys) // bounded: a flood of distinct keys cannot grow it
	}
	s.keys[hash] = cachedKey{p: p, exp: k.ExpiresAt, gen: gen, at: now}
	s.keyMu.Unlock()
	return p, nil
}

// touchKey records last use of a key, at most once per KeyTouchPeriod.
func (s *Service) touchKey(id int64, now time.Time) {
	s.touchMu.Lock()
	last, seen := s.touched[id]
	due := !seen || now.Sub(last) >= s.opts.KeyTouchPeriod
	if due {
		s.touched[id] = now
	}
	s.touchMu.Unlock()
	if !due {
		return
	}
	t := now.UTC()
	if err := s.db.APIKeys().Update(id, func(k *store.APIKey) error { k.LastUsedAt = &t; return nil }); err != nil {
		s.log.Warn("record api key use", "key_id", id, "err", err)
	}
}

// ChangePassword changes the caller's password and ends every other session of theirs.
func (s *Service) ChangePassword(ctx context.Context, p *Principal, current, next string) error {
	defer s.invalidate()
	if p.IsLocal() {
		return invalidf("create the first administrator before changing passwords")
	}
	if p.User.AuthProvider != "local" {
		return invalidf("password change is only available for local accounts")
	}
	if err := checkPassword(next); err != nil {
		return err
	}
	hctx, cancel := s.hashCtx(ctx)
	defer cancel()
	u, err := s.db.Users().Get(p.User.ID)
	if err != nil {
		return mapStoreErr(err)
	}
	ok, err := s.hasher.Verify(hctx, u.PasswordHash, current)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: Current password is incorrect", ErrInvalidCredentials)
	}
	hash, err := s.hasher.Hash(hctx, next)
	if err != nil {
		return err
	}
	if _, err := s.db.Users().Update(u.ID, func(u *store.User) error { u.PasswordHash = hash; return nil }); err != nil {
		return mapStoreErr(err)
	}
	_, err = s.db.Sessions().DeleteForUser(u.ID, p.SessionHash)
	return err
}

func mapStoreErr(err error) error {
	switch {
	case errors.Is(err, store.ErrLastAdmin):
		return invalidf("this is the last active administrator; make another user an administrator first")
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("%w: %s", ErrExists, strings.TrimPrefix(err.Error(), store.ErrExists.Error()+": "))
	case errors.Is(err, store.ErrNotFound):
		return ErrNotFound
	default:
		return err
	}
}

// fingerprint is a short keyed digest of an unknown login for the log: equal strings give
// equal fingerprints within one run, and nothing about the string itself is revealed.
func (s *Service) fingerprint(login string) string {
	m := hmac.New(sha256.New, s.fpKey)
	m.Write([]byte(normAccount(login)))
	return hex.EncodeToString(m.Sum(nil)[:6])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
