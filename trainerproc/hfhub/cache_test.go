package hfhub

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestConfigFromEnv(t *testing.T) {
	home := t.TempDir()
	tokenFile := filepath.Join(home, "tok")
	if err := os.WriteFile(tokenFile, []byte("hf_file\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		want Config
	}{
		{"defaults", nil, Config{CacheDir: filepath.Join(home, ".cache/huggingface/hub"), Endpoint: DefaultEndpoint}},
		{"xdg", map[string]string{"XDG_CACHE_HOME": "/x"}, Config{CacheDir: "/x/huggingface/hub", Endpoint: DefaultEndpoint}},
		{"hf home with tilde", map[string]string{"HF_HOME": "~/hf"}, Config{CacheDir: filepath.Join(home, "hf/hub"), Endpoint: DefaultEndpoint}},
		{"hub cache wins", map[string]string{"HF_HOME": "/h", "HF_HUB_CACHE": "/c", "HUGGINGFACE_HUB_CACHE": "/legacy"}, Config{CacheDir: "/c", Endpoint: DefaultEndpoint}},
		{"legacy cache", map[string]string{"HUGGINGFACE_HUB_CACHE": "$V/legacy", "V": "/v"}, Config{CacheDir: "/v/legacy", Endpoint: DefaultEndpoint}},
		{"endpoint slash", map[string]string{"HF_HUB_CACHE": "/c", "HF_ENDPOINT": "http://h:1/"}, Config{CacheDir: "/c", Endpoint: "http://h:1"}},
		{"token env", map[string]string{"HF_HUB_CACHE": "/c", "HF_TOKEN": " hf_a\n", "HUGGING_FACE_HUB_TOKEN": "hf_b"}, Config{CacheDir: "/c", Endpoint: DefaultEndpoint, Token: "hf_a"}},
		{"token legacy", map[string]string{"HF_HUB_CACHE": "/c", "HUGGING_FACE_HUB_TOKEN": "hf_b"}, Config{CacheDir: "/c", Endpoint: DefaultEndpoint, Token: "hf_b"}},
		{"token file", map[string]string{"HF_HUB_CACHE": "/c", "HF_TOKEN_PATH": tokenFile}, Config{CacheDir: "/c", Endpoint: DefaultEndpoint, Token: "hf_file"}},
		{"implicit token disabled", map[string]string{"HF_HUB_CACHE": "/c", "HF_TOKEN": "hf_a", "HF_HUB_DISABLE_IMPLICIT_TOKEN": "yes"}, Config{CacheDir: "/c", Endpoint: DefaultEndpoint}},
		{"offline", map[string]string{"HF_HUB_CACHE": "/c", "HF_HUB_OFFLINE": "1"}, Config{CacheDir: "/c", Endpoint: DefaultEndpoint, Offline: true}},
		{"offline transformers", map[string]string{"HF_HUB_CACHE": "/c", "TRANSFORMERS_OFFLINE": "true"}, Config{CacheDir: "/c", Endpoint: DefaultEndpoint, Offline: true}},
		{"timeouts", map[string]string{"HF_HUB_CACHE": "/c", "HF_HUB_ETAG_TIMEOUT": "3", "HF_HUB_DOWNLOAD_TIMEOUT": "x"}, Config{CacheDir: "/c", Endpoint: DefaultEndpoint, EtagTimeout: 3 * time.Second}},
		{"no symlinks", map[string]string{"HF_HUB_CACHE": "/c", "HF_HUB_DISABLE_SYMLINKS": "ON"}, Config{CacheDir: "/c", Endpoint: DefaultEndpoint, DisableSymlinks: true}},
		{"offline shadowed", map[string]string{"HF_HUB_CACHE": "/c", "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "1"}, Config{CacheDir: "/c", Endpoint: DefaultEndpoint}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ConfigFromEnv(func(k string) string { return tt.env[k] }, home)
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestValidateNames(t *testing.T) {
	for _, tt := range []struct {
		id string
		ok bool
	}{
		{"gpt2", true}, {"org/name", true}, {"org/na.me-1_x", true},
		{"a/b/c", false}, {"a--b", false}, {"a/../b", false}, {"x.git", false}, {"", false}, {"/x", false},
	} {
		if err := ValidateRepoID(tt.id); (err == nil) != tt.ok {
			t.Errorf("ValidateRepoID(%q) = %v", tt.id, err)
		}
	}
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"config.json", true}, {"vae/diffusion_pytorch_model.safetensors", true},
		{"../x", false}, {"a/../../x", false}, {"/etc/passwd", false}, {`C:\x`, false}, {"", false}, {`a\..\..\b`, false},
	} {
		if err := validateFilename(tt.name); (err == nil) != tt.ok {
			t.Errorf("validateFilename(%q) = %v", tt.name, err)
		}
	}
}

// pythonLayout writes a cache entry the way huggingface_hub lays it out, by hand, so the
// lookup is checked against that layout and not against our own writer.
func pythonLayout(t *testing.T, dir, repo, ref, commit, file, content string) {
	t.Helper()
	rd := filepath.Join(dir, RepoFolderName(repo))
	etag := fmt.Sprintf("%x", sha1.Sum([]byte(content)))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(rd, "blobs"), 0o755))
	must(os.WriteFile(filepath.Join(rd, "blobs", etag), []byte(content), 0o644))
	if ref != "" {
		must(os.MkdirAll(filepath.Dir(filepath.Join(rd, "refs", ref)), 0o755))
		must(os.WriteFile(filepath.Join(rd, "refs", ref), []byte(commit), 0o644))
	}
	ptr := filepath.Join(rd, "snapshots", commit, file)
	must(os.MkdirAll(filepath.Dir(ptr), 0o755))
	rel, err := filepath.Rel(filepath.Dir(ptr), filepath.Join(rd, "blobs", etag))
	must(err)
	must(os.Symlink(rel, ptr))
}

func TestLookupPythonLayout(t *testing.T) {
	dir := t.TempDir()
	c := Cache{Dir: dir}
	commit := "607a30d783dfa663caf39e06633721c8d4cfcd7e"
	pythonLayout(t, dir, "org/model", "main", commit, "vae/config.json", `{"a":1}`)
	pythonLayout(t, dir, "org/model", "refs/pr/1", commit, "model_index.json", `{}`)

	tests := []struct {
		name, rev, file string
		wantErr         error
		content         string
	}{
		{"branch", "main", "vae/config.json", nil, `{"a":1}`},
		{"commit", commit, "vae/config.json", nil, `{"a":1}`},
		{"pr ref nested", "refs/pr/1", "model_index.json", nil, `{}`},
		{"unknown branch", "dev", "vae/config.json", ErrNotCached, ""},
		{"short hash is not a commit", commit[:7], "vae/config.json", ErrNotCached, ""},
		{"missing file", "main", "unet/config.json", ErrNotCached, ""},
		{"directory", "main", "vae", ErrNotCached, ""},
		{"escape", "main", "../x", ErrInvalidName, ""},
		{"bad revision", "../../etc", "vae/config.json", ErrInvalidName, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := c.Lookup("org/model", tt.rev, tt.file)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(p)
			if err != nil || string(b) != tt.content {
				t.Fatalf("read %s = %q, %v", p, b, err)
			}
		})
	}
}

func TestWriteRefAndLink(t *testing.T) {
	dir := t.TempDir()
	c := Cache{Dir: dir}
	commit := "607a30d783dfa663caf39e06633721c8d4cfcd7e"
	if err := c.writeRef("org/m", "refs/pr/3", commit); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(c.RepoDir("org/m"), "refs", "refs", "pr", "3"))
	if err != nil || string(b) != commit {
		t.Fatalf("ref = %q, %v (no trailing newline expected)", b, err)
	}
	etag := "abcdef"
	if err := os.MkdirAll(filepath.Dir(c.BlobPath("org/m", etag)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.BlobPath("org/m", etag), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := c.linkSnapshot("org/m", commit, "text_encoder/model.safetensors", etag, false, false)
	if err != nil {
		t.Fatal(err)
	}
	target, err := os.Readlink(p)
	if err != nil || target != "../../../blobs/abcdef" {
		t.Fatalf("link target = %q, %v", target, err)
	}
	if _, err := c.Lookup("org/m", "refs/pr/3", "text_encoder/model.safetensors"); err != nil {
		t.Fatal(err)
	}
}

func TestNormalizeEtag(t *testing.T) {
	for in, want := range map[string]string{`W/"a16a"`: "a16a", `"a16a"`: "a16a", "a16a": "a16a"} {
		if got := normalizeEtag(in); got != want {
			t.Errorf("normalizeEtag(%q) = %q", in, got)
		}
	}
}
