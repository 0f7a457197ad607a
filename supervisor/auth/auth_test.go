package auth

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"simpletuner/store"
)

func TestPermissions(t *testing.T) {
	cases := []struct {
		levels []string
		admin  bool
		perm   string
		want   bool
	}{
		{[]string{"viewer"}, false, "config.view", true},
		{[]string{"viewer"}, false, "job.submit", false},
		{[]string{"researcher"}, false, "api.keys.own", true},
		{[]string{"researcher"}, false, PermJobHooks, false},
		{[]string{"lead"}, false, PermJobHooks, true},
		{[]string{"lead"}, false, PermAdminUsers, false},
		{[]string{"admin"}, false, PermAdminUsers, true},
		{[]string{"viewer"}, false, PermDatasetWrite, false},
		{[]string{"researcher"}, false, PermDatasetWrite, true},
		{[]string{"researcher"}, false, PermDatasetOverwrite, false},
		{[]string{"lead"}, false, PermDatasetWrite, true},
		{[]string{"lead"}, false, PermDatasetOverwrite, true},
		{[]string{"admin"}, false, PermDatasetOverwrite, true},
		{nil, true, "anything.at.all", true},
		{[]string{"unknown"}, false, "config.view", false},
	}
	for _, c := range cases {
		got := HasPermission(PermissionsFor(c.levels, c.admin), c.perm)
		if got != c.want {
			t.Errorf("%v admin=%v %s: got %v", c.levels, c.admin, c.perm, got)
		}
	}
	if !HasPermission([]string{"job.*"}, "job.view.all") || HasPermission([]string{"job.*"}, "jobs.view") {
		t.Error("hierarchical wildcard")
	}
	for _, l := range Levels() {
		for _, p := range l.Permissions {
			if p != "*" && !strings.Contains(strings.Join(Catalogue(), " "), p) {
				t.Errorf("level %s grants %s which is not in the catalogue", l.Name, p)
			}
		}
	}
}

func TestPrincipalScopes(t *testing.T) {
	p := &Principal{User: &store.User{IsActive: true}, Permissions: []string{"*"}, Scopes: []string{"job.view.own"}}
	if !p.Can("job.view.own") || p.Can(PermAdminUsers) {
		t.Fatal("scoped key not restricted")
	}
	p.User.IsActive = false
	if p.Can("job.view.own") {
		t.Fatal("inactive user holds permissions")
	}
}

func TestAPIKeyFormat(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		k := NewAPIKey()
		if !LooksLikeAPIKey(k) {
			t.Fatalf("%q does not look like a key", k)
		}
		if seen[k] {
			t.Fatal("duplicate key")
		}
		seen[k] = true
	}
	for _, bad := range []string{"", "st_", "st_" + strings.Repeat("a", 31), "xx_" + strings.Repeat("a", 32), "st_" + strings.Repeat("-", 32)} {
		if LooksLikeAPIKey(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestHasherRoundTripAndBusy(t *testing.T) {
	h := NewHasher(1)
	ctx := context.Background()
	phc, err := h.Hash(ctx, "correct horse")
	if err != nil || !strings.HasPrefix(phc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q %v", phc, err)
	}
	if ok, err := h.Verify(ctx, phc, "correct horse"); !ok || err != nil {
		t.Fatalf("verify: %v %v", ok, err)
	}
	if ok, _ := h.Verify(ctx, phc, "correct horsE"); ok {
		t.Fatal("wrong password verified")
	}
	if ok, _ := h.Verify(ctx, "", "anything"); ok {
		t.Fatal("empty hash verified")
	}
	if _, err := h.Verify(ctx, "$bcrypt$nonsense", "x"); err == nil {
		t.Fatal("foreign hash format accepted")
	}
	// With the only slot taken, a caller whose deadline passes gets ErrBusy.
	h.sem <- struct{}{}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := h.Hash(short, "x"); !errors.Is(err, ErrBusy) {
		t.Fatalf("got %v, want ErrBusy", err)
	}
	<-h.sem
}

func TestLoginLimiter(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	l := NewLoginLimiter(LoginLimits{PerIPBurst: 3, PerIPRate: 1, FreeFailures: 2, BaseLock: time.Second, MaxLock: 8 * time.Second}, clock)

	// Per address: 3 attempts, then wait ~1 s per token.
	for i := range 3 {
		if err := l.Allow("a", "u"+string(rune('0'+i))); err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	var rl *RateLimitError
	if err := l.Allow("a", "x"); !errors.As(err, &rl) || rl.RetryAfter <= 0 {
		t.Fatalf("4th attempt: %v", err)
	}
	if err := l.Allow("b", "x"); err != nil {
		t.Fatalf("other address limited: %v", err)
	}
	now = now.Add(time.Second)
	if err := l.Allow("a", "x"); err != nil {
		t.Fatalf("after refill: %v", err)
	}

	// Per account: 2 free failures, then 1 s, 2 s, 4 s, 8 s, 8 s (capped) locks.
	wants := []time.Duration{0, 0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	for i, want := range wants {
		l.Failed("Admin")
		err := l.Allow("addr"+string(rune('a'+i)), "admin")
		if want == 0 {
			if err != nil {
				t.Fatalf("failure %d: locked too early: %v", i+1, err)
			}
			continue
		}
		if !errors.As(err, &rl) || rl.RetryAfter != want {
			t.Fatalf("failure %d: %v, want lock %v", i+1, err, want)
		}
	}
	now = now.Add(9 * time.Second)
	if err := l.Allow("z", "admin"); err != nil {
		t.Fatalf("lock did not expire: %v", err)
	}
	l.Succeeded("admin")
	l.Failed("admin")
	if err := l.Allow("z2", "admin"); err != nil {
		t.Fatalf("success did not reset failures: %v", err)
	}
}

func newService(t *testing.T) *Service {
	t.Helper()
	db, err := store.OpenInMemory(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := NewService(db, slog.New(slog.DiscardHandler), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestServiceAPIKeyExpiry(t *testing.T) {
	s := newService(t)
	now := time.Now()
	s.now = func() time.Time { return now }
	u, err := s.CreateFirstAdmin(context.Background(), NewUser{Email: "a@example.com", Username: "admin", Password: "long-enough"})
	if err != nil {
		t.Fatal(err)
	}
	p := &Principal{User: u, Permissions: []string{"*"}, Method: "session"}
	days := 1
	key, rec, err := s.CreateAPIKey(p, "short-lived", &days, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.KeyHash == key || strings.Contains(rec.KeyHash, key[3:]) {
		t.Fatal("key stored in clear")
	}
	if _, err := s.Authenticate(key, ""); err != nil {
		t.Fatalf("fresh key: %v", err)
	}
	now = now.Add(25 * time.Hour)
	if _, err := s.Authenticate(key, ""); !errors.Is(err, ErrInvalidAPIKey) {
		t.Fatalf("expired key: %v", err)
	}
}

func TestServiceConcurrentFirstAdmin(t *testing.T) {
	s := newService(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "admin" + string(rune('a'+i))
			_, err := s.CreateFirstAdmin(context.Background(), NewUser{Email: name + "@example.com", Username: name, Password: "long-enough"})
			if err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			} else if !errors.Is(err, ErrSetupDone) && !errors.Is(err, ErrSetupInProgress) {
				t.Errorf("unexpected: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d first admins", ok)
	}
}

// newServiceWith is newService with options (the hasher's slots and wait).
func newServiceWith(t *testing.T, o Options) *Service {
	t.Helper()
	db, err := store.OpenInMemory(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := NewService(db, slog.New(slog.DiscardHandler), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestFirstAdminBurstHashesOnce: fifty calls at once against a hasher with one slot and
// (almost) no patience get one success and refusals that say setup is done or under
// way; none is told the server is busy, because only the call that claimed setup hashes
// a password. Hashing first made every call queue for the slot and most give up (503).
func TestFirstAdminBurstHashesOnce(t *testing.T) {
	s := newServiceWith(t, Options{HashParallel: 1, HashWait: time.Millisecond})
	const n = 50
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			name := "admin" + string(rune('a'+i%26)) + string(rune('a'+i/26))
			_, errs[i] = s.CreateFirstAdmin(context.Background(), NewUser{Email: name + "@example.com", Username: name, Password: "long-enough"})
		}()
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrSetupDone), errors.Is(err, ErrSetupInProgress):
		default:
			t.Errorf("unexpected: %v", err)
		}
	}
	if ok != 1 || !s.SetupDone() {
		t.Fatalf("%d first admins, setup done %v", ok, s.SetupDone())
	}
}

// TestFirstAdminClaimReleasedOnFailure: a call that claimed setup and then failed (no
// hash slot in time) leaves setup open, and the next call creates the administrator.
func TestFirstAdminClaimReleasedOnFailure(t *testing.T) {
	s := newServiceWith(t, Options{HashParallel: 1, HashWait: time.Millisecond})
	nu := NewUser{Email: "a@example.com", Username: "admin", Password: "long-enough"}
	s.hasher.sem <- struct{}{} // the only slot is taken
	if _, err := s.CreateFirstAdmin(context.Background(), nu); !errors.Is(err, ErrBusy) {
		t.Fatalf("with no hash slot: %v, want ErrBusy", err)
	}
	<-s.hasher.sem
	if s.SetupDone() {
		t.Fatal("a failed call completed setup")
	}
	if _, err := s.CreateFirstAdmin(context.Background(), NewUser{Password: "short"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid request: %v, want ErrInvalid", err)
	}
	u, err := s.CreateFirstAdmin(context.Background(), nu)
	if err != nil || !u.IsAdmin {
		t.Fatalf("after a failed call: %+v %v", u, err)
	}
	if _, err := s.CreateFirstAdmin(context.Background(), NewUser{Email: "b@example.com", Username: "other", Password: "long-enough"}); !errors.Is(err, ErrSetupDone) {
		t.Fatalf("after setup: %v, want ErrSetupDone", err)
	}
}

// TestHasherTakesAFreeSlotPastItsDeadline: an idle hasher never answers busy, even to a
// caller whose deadline has already passed (a descheduled caller on a loaded machine).
func TestHasherTakesAFreeSlotPastItsDeadline(t *testing.T) {
	h := NewHasher(1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 5 {
		if _, err := h.Hash(ctx, "correct horse"); err != nil {
			t.Fatalf("idle hasher: %v", err)
		}
	}
}

func TestCachedKeyStopsWorkingAtOnce(t *testing.T) {
	s := newService(t)
	u, err := s.CreateFirstAdmin(context.Background(), NewUser{Email: "a@example.com", Username: "admin", Password: "long-enough"})
	if err != nil {
		t.Fatal(err)
	}
	p := &Principal{User: u, Permissions: []string{"*"}, Method: "session"}
	other, err := s.CreateUser(context.Background(), NewUser{Email: "b@example.com", Username: "bob", Password: "long-enough", Levels: []string{"researcher"}})
	if err != nil {
		t.Fatal(err)
	}
	bob := &Principal{User: other, Permissions: PermissionsFor(other.Levels, false), Method: "session"}
	key, rec, err := s.CreateAPIKey(bob, "k", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // the second and third come from the cache
		if _, err := s.Authenticate(key, ""); err != nil {
			t.Fatal(err)
		}
	}
	off := false
	if _, err := s.UpdateUser(context.Background(), other.ID, UserPatch{IsActive: &off}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(key, ""); !errors.Is(err, ErrInvalidAPIKey) {
		t.Fatalf("disabled user's cached key: %v", err)
	}
	on := true
	s.UpdateUser(context.Background(), other.ID, UserPatch{IsActive: &on})
	if _, err := s.Authenticate(key, ""); err != nil {
		t.Fatalf("re-enabled: %v", err)
	}
	if err := s.RevokeAPIKey(p, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(key, ""); !errors.Is(err, ErrInvalidAPIKey) {
		t.Fatalf("revoked cached key: %v", err)
	}
}
