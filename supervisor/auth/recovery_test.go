package auth

import (
	"context"
	"testing"

	"simpletuner/store"
)

func TestResetAdmin(t *testing.T) {
	ctx := context.Background()
	t.Run("re-activates the first administrator", func(t *testing.T) {
		s := newService(t)
		a, err := s.CreateFirstAdmin(ctx, NewUser{Email: "a@example.com", Username: "root", Password: "old-password"})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.NewSession(a.ID, false); err != nil {
			t.Fatal(err)
		}
		// Locked out as the offline tool finds it: deactivated and demoted by hand.
		if err := s.db.Users().Create(&store.User{Username: "other", Email: "o@example.com", IsAdmin: true, IsActive: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.db.Users().Update(a.ID, func(u *store.User) error { u.IsActive, u.IsAdmin, u.Levels = false, false, nil; return nil }); err != nil {
			t.Fatal(err)
		}
		res, err := s.ResetAdmin(ctx, "", "", "new-password")
		if err != nil {
			t.Fatal(err)
		}
		if res.Created || res.User.ID != a.ID || !res.User.IsActive || !res.User.IsAdmin || res.Sessions != 1 {
			t.Fatalf("reset: %+v %+v", res, res.User)
		}
		if _, _, _, err := s.Login(ctx, "x", "root", "new-password", false); err != nil {
			t.Fatalf("login with the new password: %v", err)
		}
		if _, _, _, err := s.Login(ctx, "x", "root", "old-password", false); err == nil {
			t.Fatal("the old password still works")
		}
	})
	t.Run("creates a named account", func(t *testing.T) {
		s := newService(t)
		res, err := s.ResetAdmin(ctx, "rescue", "", "new-password")
		if err != nil {
			t.Fatal(err)
		}
		if !res.Created || !res.User.IsAdmin || res.User.Email != "rescue@localhost" {
			t.Fatalf("created: %+v %+v", res, res.User)
		}
		if !s.SetupDone() {
			t.Fatal("creating an administrator offline left setup open")
		}
	})
	t.Run("refuses a short password", func(t *testing.T) {
		s := newService(t)
		if _, err := s.ResetAdmin(ctx, "", "", "short"); err == nil {
			t.Fatal("short password accepted")
		}
	})
}
