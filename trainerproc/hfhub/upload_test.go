package hfhub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"simpletuner/trainerproc/hfhub/hfhubtest"
)

const upRepo = "me/tuned"

// upFixture is a fake Hub with small LFS and multipart thresholds (so the test files stay
// small) and a folder of local files: a small JSON (regular), an LFS file sent in one PUT
// and one big enough for a multipart transfer.
type upFixture struct {
	hub   *hfhubtest.Hub
	dir   string
	files map[string][]byte
}

const (
	upLFSThreshold   = 4 << 10
	upMultipartFrom  = 64 << 10
	upChunk          = 20 << 10
	upMultipartBytes = 70<<10 + 17 // 4 parts, the last one short
)

func newUpFixture(t *testing.T) *upFixture {
	t.Helper()
	hub := hfhubtest.New(t)
	hub.SetUploadLimits(upLFSThreshold, upMultipartFrom, upChunk)
	hub.RequireWriteToken("hf_write")
	fx := &upFixture{hub: hub, dir: t.TempDir(), files: map[string][]byte{
		"config.json":        []byte(`{"a": 1}`),
		"sub/lfs.dat":        content(upLFSThreshold+100, 7),
		"sub/deeper/big.dat": content(upMultipartBytes, 8),
	}}
	for p, b := range fx.files {
		full := filepath.Join(fx.dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return fx
}

func (fx *upFixture) client(t *testing.T, token string) *Client {
	c := NewClient(Config{CacheDir: t.TempDir(), Endpoint: fx.hub.URL, Token: token})
	c.Backoff = func(int) time.Duration { return 0 }
	return c
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestCommitFolderRoundTrip(t *testing.T) {
	fx := newUpFixture(t)
	c := fx.client(t, "hf_write")
	ctx := context.Background()
	u, err := c.CreateRepo(ctx, upRepo, true)
	if err != nil {
		t.Fatal(err)
	}
	if u != fx.hub.URL+"/"+upRepo || !fx.hub.Private(upRepo) {
		t.Fatalf("url %q private %v", u, fx.hub.Private(upRepo))
	}
	// exist_ok: creating it again is fine.
	if _, err := c.CreateRepo(ctx, upRepo, false); err != nil {
		t.Fatal(err)
	}
	files, err := FolderFiles(fx.dir, "ckpt")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // progress of different files is reported concurrently
	last := map[string]Progress{}
	info, err := c.Commit(ctx, upRepo, files, CommitOptions{Message: "Trained for 1 epochs", Description: "more",
		OnProgress: func(p Progress) { mu.Lock(); last[p.File] = p; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	if !IsCommit(info.Commit) || !strings.HasSuffix(info.URL, "/commit/"+info.Commit) {
		t.Fatalf("info %+v", info)
	}
	if want := []string{"ckpt/sub/deeper/big.dat", "ckpt/sub/lfs.dat"}; !slices.Equal(info.LFS, want) {
		t.Fatalf("LFS %v, want %v", info.LFS, want)
	}
	for p, b := range fx.files {
		if pr := last["ckpt/"+p]; pr.Done != int64(len(b)) || pr.Total != int64(len(b)) {
			t.Errorf("last progress of %s: %+v", p, pr)
		}
	}

	// What the Hub received: the paths, sizes, hashes, which went LFS, the message.
	recs := fx.hub.Commits(upRepo)
	if len(recs) != 1 || recs[0].Summary != "Trained for 1 epochs" || recs[0].Description != "more" || recs[0].Revision != "main" {
		t.Fatalf("commits %+v", recs)
	}
	got := map[string]hfhubtest.CommittedFile{}
	for _, f := range recs[0].Files {
		got[f.Path] = f
	}
	for p, b := range fx.files {
		f := got["ckpt/"+p]
		if f.Size != int64(len(b)) || f.SHA256 != sha(b) || f.LFS != (p != "config.json") {
			t.Errorf("%s committed as %+v", p, f)
		}
	}
	// Storage got no token; the big file went in parts; the commit was NDJSON.
	var parts, puts int
	for _, r := range fx.hub.Requests() {
		if r.CDN && r.Authorization != "" {
			t.Errorf("token sent to the storage: %s %s", r.Method, r.Path)
		}
		if r.CDN && r.Method == http.MethodPut {
			puts++
			if strings.Count(r.Path, "/") == 3 {
				parts++
			}
		}
		if strings.Contains(r.Path, "/commit/") && r.ContentType != "application/x-ndjson" {
			t.Errorf("commit sent as %q", r.ContentType)
		}
	}
	if parts != 4 || puts != 5 {
		t.Errorf("%d part PUTs and %d PUTs, want 4 and 5", parts, puts)
	}

	// Round trip: the committed revision downloads to the same bytes.
	for p, b := range fx.files {
		lp, err := c.Download(ctx, upRepo, info.Commit, "ckpt/"+p)
		if err != nil {
			t.Fatal(err)
		}
		if string(readFile(t, lp)) != string(b) {
			t.Errorf("%s downloads different bytes", p)
		}
	}

	// Committing the same files again changes nothing and makes no commit.
	again, err := c.Commit(ctx, upRepo, files, CommitOptions{Message: "again"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Commit != info.Commit || len(again.Committed) != 0 || len(fx.hub.Commits(upRepo)) != 1 {
		t.Fatalf("unchanged files made a commit: %+v", again)
	}
}

func TestCommitRetriesFailedTransfers(t *testing.T) {
	tests := []struct {
		name   string
		inject func(h *hfhubtest.Hub)
		ok     bool
	}{
		{"500 on the first part", func(h *hfhubtest.Hub) { h.FailStorage(1, http.StatusInternalServerError) }, true},
		{"connection cut mid-upload", func(h *hfhubtest.Hub) { h.CutUploadAfter(1000) }, true},
		{"503 on the Hub's API", func(h *hfhubtest.Hub) { h.FailNext(2, http.StatusServiceUnavailable) }, true},
		{"storage failing past the retries", func(h *hfhubtest.Hub) { h.FailStorage(100, http.StatusBadGateway) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newUpFixture(t)
			c := fx.client(t, "hf_write")
			c.ResumeAttempts = 3
			ctx := context.Background()
			if _, err := c.CreateRepo(ctx, upRepo, false); err != nil {
				t.Fatal(err)
			}
			tt.inject(fx.hub)
			files := []UploadFile{{Local: filepath.Join(fx.dir, "sub/deeper/big.dat"), Path: "big.dat"}}
			info, err := c.Commit(ctx, upRepo, files, CommitOptions{Message: "m"})
			if !tt.ok {
				var he *HubError
				if !errors.As(err, &he) || he.Status != http.StatusBadGateway || len(fx.hub.Commits(upRepo)) != 0 {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f := fx.hub.Files(upRepo, info.Commit)["big.dat"]
			if !f.LFS || string(f.Content) != string(fx.files["sub/deeper/big.dat"]) {
				t.Fatal("committed content differs")
			}
		})
	}
}

func TestUploadErrorsSayWhatToDo(t *testing.T) {
	tests := []struct {
		name, token string
		create      bool
		sentinel    error
		advice      string
	}{
		{"no token", "", true, ErrUnauthorized, "Uploading needs a token"},
		{"read-only token", "hf_read", true, ErrUnauthorized, "write access"},
		{"missing repo", "hf_write", false, ErrRepoNotFound, "--hub_model_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newUpFixture(t)
			c := fx.client(t, tt.token)
			ctx := context.Background()
			var err error
			if tt.create {
				_, err = c.CreateRepo(ctx, upRepo, false)
			} else {
				_, err = c.Commit(ctx, upRepo, []UploadFile{{Local: filepath.Join(fx.dir, "config.json"), Path: "config.json"}}, CommitOptions{Message: "m"})
			}
			if !errors.Is(err, tt.sentinel) || !strings.Contains(err.Error(), tt.advice) {
				t.Fatalf("err = %v, want %v with %q", err, tt.sentinel, tt.advice)
			}
		})
	}
}

func TestCommitRefusesBadInput(t *testing.T) {
	fx := newUpFixture(t)
	c := fx.client(t, "hf_write")
	ctx := context.Background()
	good := filepath.Join(fx.dir, "config.json")
	tests := []struct {
		name  string
		repo  string
		files []UploadFile
		msg   string
		want  error
	}{
		{"no message", upRepo, []UploadFile{{good, "a.json"}}, "", ErrInvalidName},
		{"dot-dot path", upRepo, []UploadFile{{good, "../a.json"}}, "m", ErrInvalidName},
		{".git path", upRepo, []UploadFile{{good, "x/.git/config"}}, "m", ErrInvalidName},
		{"same path twice", upRepo, []UploadFile{{good, "a.json"}, {good, "/a.json"}}, "m", ErrInvalidName},
		{"bad repo id", "a/b/c", []UploadFile{{good, "a.json"}}, "m", ErrInvalidName},
		{"missing local file", upRepo, []UploadFile{{filepath.Join(fx.dir, "nope"), "a.json"}}, "m", os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Commit(ctx, tt.repo, tt.files, CommitOptions{Message: tt.msg}); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if n := len(fx.hub.Requests()); n != 0 {
		t.Fatalf("%d requests for refused input", n)
	}
}

func TestCommitStopsOnCancel(t *testing.T) {
	fx := newUpFixture(t)
	c := fx.client(t, "hf_write")
	if _, err := c.CreateRepo(context.Background(), upRepo, false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	files := []UploadFile{{Local: filepath.Join(fx.dir, "sub/deeper/big.dat"), Path: "big.dat"}}
	// Cancel as soon as the first bytes of the upload are sent.
	_, err := c.Commit(ctx, upRepo, files, CommitOptions{Message: "m", OnProgress: func(p Progress) {
		if p.Done > 0 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if len(fx.hub.Commits(upRepo)) != 0 {
		t.Fatal("a cancelled upload committed")
	}
}

// TestMultipartAnswersChecked runs Commit against a minimal Hub whose LFS batch answer is
// given per case, for the answers the protocol does not allow.
func TestMultipartAnswersChecked(t *testing.T) {
	const size = 2500
	tests := []struct {
		name    string
		object  func(base string) map[string]any // the batch answer's object
		noETag  bool
		wantErr error
	}{
		{"numeric chunk_size, three parts", func(base string) map[string]any {
			return map[string]any{"actions": map[string]any{"upload": map[string]any{"href": base + "/complete",
				"header": map[string]any{"chunk_size": 1000, "1": base + "/part/1", "2": base + "/part/2", "3": base + "/part/3"}}}}
		}, false, nil},
		{"a part URL missing", func(base string) map[string]any {
			return map[string]any{"actions": map[string]any{"upload": map[string]any{"href": base + "/complete",
				"header": map[string]any{"chunk_size": "1000", "1": base + "/part/1", "2": base + "/part/2"}}}}
		}, false, ErrUpload},
		{"chunk_size not a number", func(base string) map[string]any {
			return map[string]any{"actions": map[string]any{"upload": map[string]any{"href": base + "/complete",
				"header": map[string]any{"chunk_size": "big", "1": base + "/part/1"}}}}
		}, false, ErrUpload},
		{"part answered without an ETag", func(base string) map[string]any {
			return map[string]any{"actions": map[string]any{"upload": map[string]any{"href": base + "/complete",
				"header": map[string]any{"chunk_size": "1000", "1": base + "/part/1", "2": base + "/part/2", "3": base + "/part/3"}}}}
		}, true, ErrUpload},
		{"batch error object", func(string) map[string]any {
			return map[string]any{"error": map[string]any{"code": 422, "message": "too big"}}
		}, false, ErrUpload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var base string
			var parts int
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch p := r.URL.Path; {
				case strings.Contains(p, "/preupload/"):
					w.Write([]byte(`{"files":[{"path":"w.bin","uploadMode":"lfs","shouldIgnore":false}]}`))
				case strings.HasSuffix(p, "/objects/batch"):
					var in struct {
						Objects []map[string]any `json:"objects"`
					}
					json.NewDecoder(r.Body).Decode(&in)
					obj := tt.object(base)
					obj["oid"], obj["size"] = in.Objects[0]["oid"], in.Objects[0]["size"]
					json.NewEncoder(w).Encode(map[string]any{"objects": []any{obj}})
				case strings.HasPrefix(p, "/part/"):
					parts++
					if !tt.noETag {
						w.Header().Set("ETag", `"e`+p[len("/part/"):]+`"`)
					}
				case p == "/complete":
				case strings.Contains(p, "/commit/"):
					w.Write([]byte(`{"commitOid":"` + strings.Repeat("a", 40) + `","commitUrl":"` + base + `/c"}`))
				default:
					http.NotFound(w, r)
				}
			}))
			defer srv.Close()
			base = srv.URL
			local := filepath.Join(t.TempDir(), "w.bin")
			if err := os.WriteFile(local, content(size, 3), 0o644); err != nil {
				t.Fatal(err)
			}
			c := NewClient(Config{CacheDir: t.TempDir(), Endpoint: base, Token: "tok"})
			_, err := c.Commit(context.Background(), upRepo, []UploadFile{{Local: local, Path: "w.bin"}}, CommitOptions{Message: "m"})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && parts != 3 {
				t.Fatalf("%d parts sent", parts)
			}
		})
	}
}

func TestFolderFiles(t *testing.T) {
	root := t.TempDir()
	base := filepath.Join(root, "base")
	out := filepath.Join(root, "out")
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(base, "vae", "config.json"), "{}")
	write(filepath.Join(base, "blob"), "weights")
	write(filepath.Join(out, "model_index.json"), "{}")
	write(filepath.Join(out, "transformer", "config.json"), "{}")
	write(filepath.Join(out, ".git", "HEAD"), "x")
	write(filepath.Join(out, "sub", ".cache", "huggingface", "x"), "x")
	write(filepath.Join(out, "sub", ".cache", "other"), "x")
	// A linked component folder and a linked file, as a pipeline saved next to its base.
	if err := os.Symlink(filepath.Join(base, "vae"), filepath.Join(out, "vae")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(base, "blob"), filepath.Join(out, "transformer", "w.safetensors")); err != nil {
		t.Fatal(err)
	}
	files, err := FolderFiles(out, "ck")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Path)
	}
	want := []string{"ck/model_index.json", "ck/transformer/config.json", "ck/transformer/w.safetensors", "ck/vae/config.json"}
	if !slices.Equal(got, want) {
		t.Fatalf("FolderFiles = %v, want %v", got, want)
	}
	// A link back to a folder being listed is refused, not followed for ever.
	if err := os.Symlink(out, filepath.Join(out, "sub", "loop")); err != nil {
		t.Fatal(err)
	}
	if _, err := FolderFiles(out, ""); err == nil || !strings.Contains(err.Error(), "links back") {
		t.Fatalf("loop: err = %v", err)
	}
}
