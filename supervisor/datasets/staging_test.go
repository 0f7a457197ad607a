package datasets

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPruneStaging: entries of the staging folder older than the limit go, newer ones
// stay, and nothing outside the staging folder is touched.
func TestPruneStaging(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	old, fresh, outside := filepath.Join(dir, stagingDir, "a.part"), filepath.Join(dir, stagingDir, "b.part"), filepath.Join(dir, "c.part")
	for _, p := range []string{old, fresh, outside} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, stagingDir, "zipx", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{old, outside, filepath.Join(dir, stagingDir, "zipx")} {
		if err := os.Chtimes(p, now.Add(-48*time.Hour), now.Add(-48*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.PruneStaging(24*time.Hour, now)
	if err != nil || n != 2 {
		t.Fatalf("PruneStaging = %d, %v; want 2 removed", n, err)
	}
	for p, want := range map[string]bool{old: false, fresh: true, outside: true, filepath.Join(dir, stagingDir, "zipx"): false} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s exists=%v, want %v", p, err == nil, want)
		}
	}
}
