package configs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWritesAreOwnerOnlyAndCapped(t *testing.T) {
	s := newService(t)
	seedEnv(t, s)
	if _, err := s.Copy("pixart-api-demo", "copy"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateDataloader("copy", DataloaderRequest{Path: sp("shared/dl/copy.json")}); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(s.Dir(), func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, _ := os.Lstat(p)
		want := fs.FileMode(0o600)
		if st.IsDir() {
			want = 0o700
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s is %#o, want %#o", p, st.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	cfgPath := filepath.Join(s.Dir(), "pixart-api-demo", "config.json")
	before, _ := os.ReadFile(cfgPath)
	big := make([]any, 300_000)
	for i := range big {
		big[i] = 1
	}
	_, err = putSeed(t, s, func(c map[string]any) { c["--user_prompt_library"] = []any{big} })
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "at most 1048576 bytes") {
		t.Errorf("oversized PUT: %v", err)
	}
	if after, _ := os.ReadFile(cfgPath); string(after) != string(before) {
		t.Error("the oversized PUT rewrote config.json")
	}
}
