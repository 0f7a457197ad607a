package options

import (
	"errors"
	"testing"
)

func TestResolveConfigPath(t *testing.T) {
	tests := []struct {
		dir, in, want string
		err           error
	}{
		{"/srv/config", "config/multidatabackend-once.json", "/srv/config/multidatabackend-once.json", nil},
		{"/srv/config", "pixart-api-demo/multidatabackend.json", "/srv/config/pixart-api-demo/multidatabackend.json", nil},
		{"/srv/config", "./config/x.json", "/srv/config/x.json", nil},
		{"/srv/config", "././x.json", "/srv/config/x.json", nil},
		{"/srv/configs", "configs/x.json", "/srv/configs/x.json", nil},            // the dir's own name
		{"/srv/configs", "config/x.json", "/srv/configs/x.json", nil},             // the tutorial's name
		{"/srv/config", "config/config/x.json", "/srv/config/config/x.json", nil}, // one segment only
		{"/srv/config", "a/../b.json", "/srv/config/b.json", nil},
		{"/srv/config", "/etc/abs.json", "/etc/abs.json", nil},
		{"/srv/config", "/etc/../tmp/abs.json", "/tmp/abs.json", nil},
		{"/srv/config", "X.JSON", "/srv/config/X.JSON", nil},
		{"/srv/config", "", "", nil},
		{"/srv/config", `[{"webhook_type":"raw"}]`, `[{"webhook_type":"raw"}]`, nil},
		{"/srv/config", "{env:DATALOADER}.json", "{env:DATALOADER}.json", nil},
		{"/srv/config", "dataloader.yaml", "dataloader.yaml", nil},
		{"/srv/config", "../secrets.json", "", ErrPathEscape},
		{"/srv/config", "config/../../secrets.json", "", ErrPathEscape},
		{"/srv/config", "a/../../b.json", "", ErrPathEscape},
		{"/srv/config", "..json", "/srv/config/..json", nil}, // a file name, not a parent
		{"", "x.json", "", ErrInvalidValue},
	}
	for _, tt := range tests {
		got, err := ResolveConfigPath(tt.dir, tt.in)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("ResolveConfigPath(%q, %q) error = %v, want %v", tt.dir, tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ResolveConfigPath(%q, %q) = %q, %v; want %q", tt.dir, tt.in, got, err, tt.want)
		}
	}
}

func TestResolveOutputDir(t *testing.T) {
	tests := []struct {
		root, in, want string
		err            error
	}{
		{"/home/u/.simpletuner/output", "output/pixart", "/home/u/.simpletuner/output/output/pixart", nil},
		{"/out", "run1", "/out/run1", nil},
		{"/out", "./run1/", "/out/run1", nil},
		{"/out", "/workspace/output/pixart900m", "/workspace/output/pixart900m", nil},
		{"/out", "a/../b", "/out/b", nil},
		{"/out", "", "", nil},
		{"/out", "..", "", ErrPathEscape},
		{"/out", "../elsewhere", "", ErrPathEscape},
		{"/out", "a/../../b", "", ErrPathEscape},
		{"", "run1", "", ErrInvalidValue},
		{"/out", "0 /.", "", ErrInvalidValue},
		{"/out", "/abs/run \t/", "", ErrInvalidValue},
		{"/out", "a b/c", "/out/a b/c", nil},
	}
	for _, tt := range tests {
		got, err := ResolveOutputDir(tt.root, tt.in)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("ResolveOutputDir(%q, %q) error = %v, want %v", tt.root, tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ResolveOutputDir(%q, %q) = %q, %v; want %q", tt.root, tt.in, got, err, tt.want)
		}
	}
}

func TestConfigResolvePaths(t *testing.T) {
	c, _ := Default().Merge(nil, Values{
		"--data_backend_config": "config/db.json", "--output_dir": "run", "--user_prompt_library": "../../etc/x.json",
		"--webhook_config": `[{"webhook_type":"raw","callback_url":"http://h/cb"}]`, "--cache_dir_vae": "relative/cache",
	})
	issues := c.ResolvePaths("/c", "/o")
	wantMsg := `--user_prompt_library: "../../etc/x.json" climbs out of the configs directory; use a path inside it or an absolute path`
	if len(issues) != 1 || !errors.Is(issues[0], ErrPathEscape) || issues[0].Option != "--user_prompt_library" || issues[0].Message != wantMsg {
		t.Fatalf("issues = %q", issues.Messages())
	}
	want := map[string]string{
		"--data_backend_config": "/c/db.json",
		"--output_dir":          "/o/run",
		"--user_prompt_library": "../../etc/x.json", // left alone, reported
		"--lycoris_config":      "/c/lycoris_config.json",
		"--webhook_config":      `[{"webhook_type":"raw","callback_url":"http://h/cb"}]`,
		"--cache_dir_vae":       "relative/cache", // not a config-relative option
	}
	for k, w := range want {
		if got := c.String(k); got != w {
			t.Errorf("%s = %q, want %q", k, got, w)
		}
	}
	if c.Source("--data_backend_config") != FromSubmitted || c.Source("--lycoris_config") != FromDefault {
		t.Error("ResolvePaths changed sources")
	}
}
