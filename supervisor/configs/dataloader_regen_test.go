package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCreateDataloaderRegenerates covers POST /api/configs/{name}/dataloader on a file
// that exists: refused with a message that says how to ask, replaced when asked, and
// never replacing a file that is not a dataloader.
func TestCreateDataloaderRegenerates(t *testing.T) {
	s := newService(t)
	seedEnv(t, s)
	dl := filepath.Join(s.Dir(), "pixart-api-demo", "multidatabackend.json")
	if err := os.WriteFile(dl, []byte(`[{"id":"mine"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	yes := true
	for _, tc := range []struct {
		name     string
		req      DataloaderRequest
		sentinel error
		msg      string // part of the error, or of the answer's message
		content  string // part of the file afterwards
	}{
		{"exists, not asked", DataloaderRequest{IncludeDefaults: &yes}, ErrExists, `send "overwrite": true`, `"mine"`},
		{"exists, asked", DataloaderRequest{IncludeDefaults: &yes, Overwrite: true}, nil, "replacing the previous pixart-api-demo/multidatabackend.json", `"pixart-api-demo-images"`},
		{"empty list when defaults are off", DataloaderRequest{IncludeDefaults: new(bool), Overwrite: true}, nil, "created", `[]`},
		{"a config.json is not a dataloader", DataloaderRequest{Path: sp("pixart-api-demo/config.json"), Overwrite: true}, ErrExists, "is not a dataloader", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := s.CreateDataloader("pixart-api-demo", tc.req)
			switch {
			case tc.sentinel != nil && (!errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.msg)):
				t.Fatalf("err = %v, want %v with %q", err, tc.sentinel, tc.msg)
			case tc.sentinel == nil && err != nil:
				t.Fatal(err)
			case tc.sentinel == nil && !strings.Contains(out.Message, tc.msg):
				t.Fatalf("message %q lacks %q", out.Message, tc.msg)
			}
			if b, _ := os.ReadFile(dl); !strings.Contains(string(b), tc.content) {
				t.Fatalf("dataloader is %s, want it to contain %s", b, tc.content)
			}
		})
	}
	if cfg := readFile(t, filepath.Join(s.Dir(), "pixart-api-demo", "config.json")); cfg["--model_family"] != "dit" {
		t.Fatalf("config.json was touched: %v", cfg)
	}
}
