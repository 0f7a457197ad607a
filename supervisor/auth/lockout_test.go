package auth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"simpletuner/store"
)

// loginService is a service with a frozen clock and a log the test can read.
func loginService(t *testing.T) (*Service, *bytes.Buffer) {
	t.Helper()
	db, err := store.OpenInMemory(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var logs bytes.Buffer
	now := time.Unix(2_000_000, 0)
	s, err := NewService(db, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateFirstAdmin(context.Background(), NewUser{Email: "alice@example.com", Username: "alice", Password: "right-password"}); err != nil {
		t.Fatal(err)
	}
	return s, &logs
}

// The username and the e-mail of one account share its free failures.
func TestLockoutKeyedByResolvedUser(t *testing.T) {
	s, _ := loginService(t)
	ctx := context.Background()
	for i, login := range []string{"alice", "ALICE", "alice", "alice@example.com", "Alice@Example.com", "alice@example.com"} {
		// Each attempt from its own address: only the account lock is under test.
		if _, _, _, err := s.Login(ctx, "addr"+string(rune('a'+i)), login, "wrong-password", false); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("failure %d (%s): %v", i+1, login, err)
		}
	}
	var rl *RateLimitError
	for _, login := range []string{"alice", "alice@example.com"} {
		if _, _, _, err := s.Login(ctx, "addr-z", login, "right-password", false); !errors.As(err, &rl) {
			t.Fatalf("%s with the right password after 6 failures across both names: %v, want a lock", login, err)
		}
	}
}

// Unknown logins are counted per string, like an account: the lock does not tell them
// apart from real ones.
func TestLockoutUnknownLoginPerString(t *testing.T) {
	s, _ := loginService(t)
	ctx := context.Background()
	var rl *RateLimitError
	for i := range 7 {
		_, _, _, err := s.Login(ctx, "addr"+string(rune('a'+i)), "nobody", "whatever-password", false)
		if i < 6 && !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("unknown login, attempt %d: %v", i+1, err)
		}
		if i == 6 && !errors.As(err, &rl) {
			t.Fatalf("unknown login, attempt 7: %v, want a lock as a real account gets", err)
		}
	}
	if _, _, _, err := s.Login(ctx, "addr-y", "somebody-else", "whatever-password", false); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("another unknown login shares the lock: %v", err)
	}
	if _, _, _, err := s.Login(ctx, "addr-x", "alice", "right-password", false); err != nil {
		t.Fatalf("a real account shares an unknown login's lock: %v", err)
	}
}

// A failed login never logs a login string that names no account (people type passwords
// there); a known account is logged by id and name.
func TestFailedLoginLogsNoUnknownString(t *testing.T) {
	s, logs := loginService(t)
	ctx := context.Background()
	const typed = "hunter2-secret-xyz"
	s.Login(ctx, "addr-a", typed, "whatever-password", false)
	s.Login(ctx, "addr-b", typed, "whatever-password", false)
	s.Login(ctx, "addr-c", "alice", "wrong-password", false)
	out := logs.String()
	if strings.Contains(strings.ToLower(out), "hunter2") {
		t.Fatalf("the log holds the unknown login:\n%s", out)
	}
	fps := fingerprints(out)
	if len(fps) != 2 || fps[0] != fps[1] || fps[0] == "" {
		t.Fatalf("want the same fingerprint twice for the same string, got %q\n%s", fps, out)
	}
	if !strings.Contains(out, "username=alice") {
		t.Fatalf("a known account's failure is not attributed:\n%s", out)
	}
	if s.fingerprint(typed) == s.fingerprint("other") {
		t.Fatal("fingerprints collide")
	}
}

func fingerprints(log string) []string {
	var out []string
	for _, f := range strings.Fields(log) {
		if v, ok := strings.CutPrefix(f, "login_fingerprint="); ok {
			out = append(out, v)
		}
	}
	return out
}

func TestAccountKey(t *testing.T) {
	u := &store.User{ID: 7, Username: "alice", Email: "alice@example.com"}
	for _, tc := range []struct {
		u     *store.User
		login string
		want  string
	}{
		{u, "alice", "user:7"},
		{u, "alice@example.com", "user:7"},
		{nil, " Nobody ", "login:nobody"},
		{nil, "user:7", "login:user:7"}, // a typed string never aliases an account
	} {
		if got := accountKey(tc.u, tc.login); got != tc.want {
			t.Errorf("accountKey(%v, %q) = %q, want %q", tc.u != nil, tc.login, got, tc.want)
		}
	}
}
