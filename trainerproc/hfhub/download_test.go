package hfhub

import (
	"context"
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

const repoID = "org/pipe"

// content makes n deterministic, non-repeating-looking bytes.
func content(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

type fixture struct {
	hub    *hfhubtest.Hub
	commit string
	files  map[string]hfhubtest.File
	cache  string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	hub := hfhubtest.New(t)
	files := map[string]hfhubtest.File{
		"model_index.json":                         {Content: []byte(`{"_class_name":"PixArtSigmaPipeline"}`)},
		"vae/config.json":                          {Content: []byte(`{"scaling_factor":0.13025}`)},
		"vae/diffusion_pytorch_model.safetensors":  {Content: content(3<<20+123, 1), LFS: true},
		"text_encoder/model.safetensors":           {Content: content(5000, 2), LFS: true},
		"tokenizer/special_tokens_map.json":        {Content: []byte(`{}`)},
		"transformer/diffusion_pytorch_model.json": {Content: []byte(`{"x":1}`)},
	}
	commit := hub.Commit(repoID, "main", files)
	return &fixture{hub: hub, commit: commit, files: files, cache: t.TempDir()}
}

func (fx *fixture) client(token string) *Client {
	c := NewClient(Config{CacheDir: fx.cache, Endpoint: fx.hub.URL, Token: token})
	return c
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDownloadFreshIntoCacheLayout(t *testing.T) {
	fx := newFixture(t)
	c := fx.client("hf_secret")
	var mu sync.Mutex
	var events []Progress
	c.OnProgress = func(p Progress) {
		mu.Lock()
		events = append(events, p)
		mu.Unlock()
	}
	ctx := context.Background()
	for _, name := range []string{"model_index.json", "vae/diffusion_pytorch_model.safetensors"} {
		p, err := c.Download(ctx, repoID, "", name)
		if err != nil {
			t.Fatal(err)
		}
		f := fx.files[name]
		if got := readFile(t, p); string(got) != string(f.Content) {
			t.Fatalf("%s: content differs", name)
		}
		want := filepath.Join(fx.cache, "models--org--pipe", "snapshots", fx.commit, filepath.FromSlash(name))
		if p != want {
			t.Fatalf("path %s, want %s", p, want)
		}
		target, err := os.Readlink(p)
		if err != nil {
			t.Fatal(err)
		}
		wantTarget := strings.Repeat("../", strings.Count(name, "/")+2) + "blobs/" + f.Etag()
		if target != wantTarget {
			t.Fatalf("%s links to %s, want %s", name, target, wantTarget)
		}
		st, err := os.Lstat(filepath.Join(fx.cache, "models--org--pipe", "blobs", f.Etag()))
		if err != nil || !st.Mode().IsRegular() {
			t.Fatalf("blob: %v %v", st, err)
		}
	}
	if ref := readFile(t, filepath.Join(fx.cache, "models--org--pipe", "refs", "main")); string(ref) != fx.commit {
		t.Fatalf("refs/main = %q", ref)
	}
	if _, err := os.Stat(filepath.Join(fx.cache, "CACHEDIR.TAG")); err != nil {
		t.Fatal(err)
	}
	for _, r := range fx.hub.Requests() {
		switch {
		case r.CDN && r.Authorization != "":
			t.Errorf("token sent to the CDN: %+v", r)
		case !r.CDN && r.Authorization != "Bearer hf_secret":
			t.Errorf("no token sent to the Hub: %+v", r)
		}
	}
	var last Progress
	for _, e := range events {
		if e.File == "vae/diffusion_pytorch_model.safetensors" {
			if e.Done < last.Done || e.Total != int64(len(fx.files[e.File].Content)) {
				t.Fatalf("progress went %+v -> %+v", last, e)
			}
			last = e
		}
	}
	if last.Done != last.Total || last.Total == 0 {
		t.Fatalf("last progress %+v", last)
	}
	// The lookup an offline caller uses finds the same file.
	if _, err := c.Cache().Lookup(repoID, "main", "vae/diffusion_pytorch_model.safetensors"); err != nil {
		t.Fatal(err)
	}
}

func rangesFor(h *hfhubtest.Hub, suffix string) []string {
	var out []string
	for _, r := range h.Requests() {
		if r.Method == "GET" && strings.HasSuffix(strings.SplitN(r.Path, "?", 2)[0], suffix) {
			out = append(out, r.Range)
		}
	}
	return out
}

func TestDownloadResumesAfterCut(t *testing.T) {
	const name = "vae/diffusion_pytorch_model.safetensors"
	for _, tt := range []struct {
		test     string
		attempts int // 0: the first call fails and a second call resumes
	}{{"same call", 5}, {"next call", 0}} {
		t.Run(tt.test, func(t *testing.T) {
			fx := newFixture(t)
			fx.hub.CutAfter(repoID, name, 777_777)
			c := fx.client("")
			c.ResumeAttempts = tt.attempts
			p, err := c.Download(context.Background(), repoID, "main", name)
			if tt.attempts == 0 {
				if err == nil || !strings.Contains(err.Error(), "run again to resume") {
					t.Fatalf("err = %v", err)
				}
				inc := filepath.Join(fx.cache, "models--org--pipe", "blobs", fx.files[name].Etag()+".incomplete")
				if st, serr := os.Stat(inc); serr != nil || st.Size() != 777_777 {
					t.Fatalf("partial file: %v %v", st, serr)
				}
				p, err = c.Download(context.Background(), repoID, "main", name)
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(readFile(t, p)) != string(fx.files[name].Content) {
				t.Fatal("content differs after resume")
			}
			if got := rangesFor(fx.hub, name); len(got) != 2 || got[0] != "" || got[1] != "bytes=777777-" {
				t.Fatalf("GET ranges %q, want a full GET then bytes=777777-", got)
			}
			matches, _ := filepath.Glob(filepath.Join(fx.cache, "models--org--pipe", "blobs", "*.incomplete"))
			if len(matches) != 0 {
				t.Fatalf("left over: %v", matches)
			}
		})
	}
}

func TestDownloadRefusesCorruptedContent(t *testing.T) {
	for _, name := range []string{"vae/diffusion_pytorch_model.safetensors", "vae/config.json"} {
		t.Run(name, func(t *testing.T) {
			fx := newFixture(t)
			fx.hub.Corrupt(repoID, name, true)
			c := fx.client("")
			_, err := c.Download(context.Background(), repoID, "main", name)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			blobs, _ := filepath.Glob(filepath.Join(fx.cache, "models--org--pipe", "blobs", "*"))
			if len(blobs) != 0 {
				t.Fatalf("blobs kept after a corrupted download: %v", blobs)
			}
			if _, err := c.Cache().Lookup(repoID, "main", name); !errors.Is(err, ErrNotCached) {
				t.Fatalf("snapshot entry exists after a corrupted download: %v", err)
			}
			fx.hub.Corrupt(repoID, name, false)
			p, err := c.Download(context.Background(), repoID, "main", name)
			if err != nil {
				t.Fatal(err)
			}
			if string(readFile(t, p)) != string(fx.files[name].Content) {
				t.Fatal("content differs")
			}
		})
	}
}

func TestOfflineReusesCache(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	online := fx.client("")
	var paths []string
	for _, name := range []string{"model_index.json", "text_encoder/model.safetensors"} {
		p, err := online.Download(ctx, repoID, "main", name)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	before := len(fx.hub.Requests())

	env := map[string]string{"HF_HUB_CACHE": fx.cache, "HF_ENDPOINT": fx.hub.URL, "HF_HUB_OFFLINE": "1"}
	offline := NewClient(ConfigFromEnv(func(k string) string { return env[k] }, t.TempDir()))
	for i, name := range []string{"model_index.json", "text_encoder/model.safetensors"} {
		for _, rev := range []string{"main", fx.commit} {
			p, err := offline.Download(ctx, repoID, rev, name)
			if err != nil {
				t.Fatal(err)
			}
			if p != paths[i] {
				t.Fatalf("offline path %s, online %s", p, paths[i])
			}
		}
	}
	_, err := offline.Download(ctx, repoID, "main", "vae/config.json")
	if !errors.Is(err, ErrOffline) || !strings.Contains(err.Error(), "vae/config.json") || !strings.Contains(err.Error(), "HF_HUB_OFFLINE") {
		t.Fatalf("err = %v", err)
	}
	if after := len(fx.hub.Requests()); after != before {
		t.Fatalf("offline client made %d requests", after-before)
	}

	// A Hub that cannot be reached is not offline mode, but a cached revision still resolves.
	down := NewClient(Config{CacheDir: fx.cache, Endpoint: "http://127.0.0.1:1"})
	if p, err := down.Download(ctx, repoID, "main", "model_index.json"); err != nil || p != paths[0] {
		t.Fatalf("unreachable Hub: %s, %v", p, err)
	}
}

func TestGatedRepo(t *testing.T) {
	fx := newFixture(t)
	fx.hub.Gate(repoID, "hf_accepted")
	tests := []struct {
		token string
		want  []string
	}{
		{"", []string{"HF_TOKEN", "accept its licence on " + fx.hub.URL + "/" + repoID, "401"}},
		{"hf_other", []string{"HF_TOKEN", "accept the licence on " + fx.hub.URL + "/" + repoID, "403"}},
	}
	for _, tt := range tests {
		_, err := fx.client(tt.token).Download(context.Background(), repoID, "main", "model_index.json")
		if !errors.Is(err, ErrGatedRepo) {
			t.Fatalf("token %q: err = %v", tt.token, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("token %q: %q lacks %q", tt.token, err, w)
			}
		}
	}
	if _, err := fx.client("hf_accepted").Download(context.Background(), repoID, "main", "vae/diffusion_pytorch_model.safetensors"); err != nil {
		t.Fatal(err)
	}
}

func TestDownloadErrors(t *testing.T) {
	fx := newFixture(t)
	tests := []struct {
		repo, rev, file string
		want            error
	}{
		{"org/missing", "main", "model_index.json", ErrRepoNotFound},
		{repoID, "nope", "model_index.json", ErrRevisionNotFound},
		{repoID, "main", "unet/config.json", ErrEntryNotFound},
		{repoID, "main", "../../x", ErrInvalidName},
		{"bad--id", "main", "x", ErrInvalidName},
	}
	for _, tt := range tests {
		_, err := fx.client("").Download(context.Background(), tt.repo, tt.rev, tt.file)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s@%s %s: err = %v, want %v", tt.repo, tt.rev, tt.file, err, tt.want)
		}
	}
	// The missing entry is remembered for offline callers, as Python does.
	if !(Cache{Dir: fx.cache}).IsKnownMissing(repoID, "main", "unet/config.json") {
		t.Error("no .no_exist marker for a missing entry")
	}
	if _, err := os.Stat(filepath.Join(fx.cache, "models--org--pipe", ".no_exist", fx.commit, "unet", "config.json")); err != nil {
		t.Error(err)
	}
	if (Cache{Dir: fx.cache}).IsKnownMissing(repoID, "main", "model_index.json") {
		t.Error("an existing file is marked missing")
	}
	// Not a Hub at all: the metadata headers are missing.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("hello"))
	}))
	defer plain.Close()
	notHub := NewClient(Config{CacheDir: fx.cache, Endpoint: plain.URL})
	if _, err := notHub.Download(context.Background(), repoID, "main", "model_index.json"); !errors.Is(err, ErrMetadata) || !strings.Contains(err.Error(), "HF_ENDPOINT") {
		t.Fatalf("a non-Hub endpoint: %v", err)
	}
}

func TestRevisionBranchVersusCommit(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	c := fx.client("")
	first := fx.commit
	p1, err := c.Download(ctx, repoID, "main", "vae/config.json")
	if err != nil {
		t.Fatal(err)
	}
	changed := map[string]hfhubtest.File{}
	for k, v := range fx.files {
		changed[k] = v
	}
	changed["vae/config.json"] = hfhubtest.File{Content: []byte(`{"scaling_factor":0.5}`)}
	second := fx.hub.Commit(repoID, "main", changed)
	fx.hub.Commit(repoID, "dev", fx.files)

	// The branch moved: main now resolves to the new commit and the ref follows.
	p2, err := c.Download(ctx, repoID, "main", "vae/config.json")
	if err != nil {
		t.Fatal(err)
	}
	if p2 == p1 || string(readFile(t, p2)) != `{"scaling_factor":0.5}` {
		t.Fatalf("main after the push: %s %q", p2, readFile(t, p2))
	}
	if ref := readFile(t, filepath.Join(fx.cache, "models--org--pipe", "refs", "main")); string(ref) != second {
		t.Fatalf("refs/main = %s, want %s", ref, second)
	}
	// A pinned commit already cached answers without the network.
	before := len(fx.hub.Requests())
	p, err := c.Download(ctx, repoID, first, "vae/config.json")
	if err != nil || p != p1 || string(readFile(t, p)) != `{"scaling_factor":0.13025}` {
		t.Fatalf("pinned commit: %s %v", p, err)
	}
	if n := len(fx.hub.Requests()) - before; n != 0 {
		t.Fatalf("pinned cached commit made %d requests", n)
	}
	// Another branch at another commit gets its own ref and snapshot; equal content shares
	// the blob.
	pd, err := c.Download(ctx, repoID, "dev", "vae/diffusion_pytorch_model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	pm, err := c.Download(ctx, repoID, "main", "vae/diffusion_pytorch_model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if pd == pm {
		t.Fatal("dev and main share a snapshot path")
	}
	td, _ := filepath.EvalSymlinks(pd)
	tm, _ := filepath.EvalSymlinks(pm)
	if td != tm {
		t.Fatalf("same content, different blobs: %s %s", td, tm)
	}
	if cnt := len(rangesFor(fx.hub, "vae/diffusion_pytorch_model.safetensors")); cnt != 1 {
		t.Fatalf("shared blob downloaded %d times", cnt)
	}
}

func TestDownloadResumesAfterStall(t *testing.T) {
	const name = "vae/diffusion_pytorch_model.safetensors"
	fx := newFixture(t)
	fx.hub.StallAfter(repoID, name, 4096)
	c := fx.client("")
	// Short so the test is quick; nothing asserts on time, only on the resumed transfer.
	c.Config.DownloadTimeout = 200 * time.Millisecond
	p, err := c.Download(context.Background(), repoID, "main", name)
	if err != nil {
		t.Fatal(err)
	}
	if string(readFile(t, p)) != string(fx.files[name].Content) {
		t.Fatal("content differs after a stall")
	}
	// A slow machine may add resumes of its own; the stall's must be among them.
	if got := rangesFor(fx.hub, name); !slices.Contains(got, "bytes=4096-") {
		t.Fatalf("GET ranges %q, want one from byte 4096", got)
	}
}

func TestTransientErrorsRetried(t *testing.T) {
	const name = "vae/diffusion_pytorch_model.safetensors"
	tests := []struct {
		name     string
		fail     int
		status   int
		attempts int
		ok       bool
	}{
		{"503 on HEAD then fine", 1, 503, 5, true},
		{"429 on HEAD and GET", 2, 429, 5, true},
		{"overloaded past the retries", 10, 503, 2, false},
		{"no retries", 1, 502, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			c := fx.client("")
			c.ResumeAttempts = tt.attempts
			var waits []int
			c.Backoff = func(a int) time.Duration { waits = append(waits, a); return 0 }
			fx.hub.FailNext(tt.fail, tt.status)
			p, err := c.Download(context.Background(), repoID, "main", name)
			if !tt.ok {
				var he *HubError
				if !errors.As(err, &he) || he.Status != tt.status {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(readFile(t, p)) != string(fx.files[name].Content) {
				t.Fatal("content differs")
			}
			if len(waits) != tt.fail {
				t.Fatalf("waited %v times, want %d", waits, tt.fail)
			}
		})
	}
}

func TestDownloadWithoutSymlinks(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	c := fx.client("")
	c.Config.DisableSymlinks = true
	const name = "text_encoder/model.safetensors"
	p, err := c.Download(ctx, repoID, "main", name)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Lstat(p)
	if err != nil || !st.Mode().IsRegular() || string(readFile(t, p)) != string(fx.files[name].Content) {
		t.Fatalf("snapshot entry: %v %v", st, err)
	}
	// The new blob was moved into the snapshot, as Python does without symlinks.
	if _, err := os.Stat(filepath.Join(fx.cache, "models--org--pipe", "blobs", fx.files[name].Etag())); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("blob still present: %v", err)
	}
	// An existing blob is copied instead: another branch at another commit with the same file.
	c.Config.DisableSymlinks = false
	fx.hub.Commit(repoID, "dev", fx.files)
	if _, err := c.Download(ctx, repoID, "main", "model_index.json"); err != nil {
		t.Fatal(err)
	}
	c.Config.DisableSymlinks = true
	if _, err := c.Download(ctx, repoID, "dev", "text_encoder/model.safetensors"); err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(fx.cache, "models--org--pipe", "blobs", fx.files["model_index.json"].Etag())
	pd, err := c.Download(ctx, repoID, "dev", "model_index.json")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(pd); err != nil || !st.Mode().IsRegular() {
		t.Fatalf("copied entry: %v %v", st, err)
	}
	if _, err := os.Stat(blob); err != nil {
		t.Fatalf("copied blob must stay: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	c := NewClient(Config{})
	hub429 := &HubError{Kind: ErrHTTP, Status: 429, RetryAfter: 3 * time.Second}
	tests := []struct {
		attempt int
		cause   error
		want    time.Duration
	}{
		{1, errors.New("net"), time.Second},
		{2, errors.New("net"), 2 * time.Second},
		{4, errors.New("net"), 8 * time.Second},
		{6, errors.New("net"), 8 * time.Second},
		{1, hub429, 3 * time.Second},
		{1, &HubError{Kind: ErrHTTP, Status: 503, RetryAfter: time.Hour}, maxRetryAfter},
	}
	for _, tt := range tests {
		if got := c.backoffFor(tt.attempt, tt.cause); got != tt.want {
			t.Errorf("backoffFor(%d, %v) = %v, want %v", tt.attempt, tt.cause, got, tt.want)
		}
	}
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{hub429, true}, {&HubError{Kind: ErrHTTP, Status: 502}, true}, {&HubError{Kind: ErrHTTP, Status: 408}, true},
		{&HubError{Kind: ErrGatedRepo, Status: 401}, false}, {&HubError{Kind: ErrHTTP, Status: 400}, false},
		{errors.New("connection reset"), true}, {ErrMetadata, false}, {ErrCorrupt, false},
	} {
		if got := transient(tt.err); got != tt.want {
			t.Errorf("transient(%v) = %v", tt.err, got)
		}
	}
	// The fake Hub's Retry-After reaches the error.
	fx := newFixture(t)
	c = fx.client("")
	c.ResumeAttempts = 0
	fx.hub.FailNext(1, 503)
	_, err := c.Download(context.Background(), repoID, "main", "model_index.json")
	var he *HubError
	if !errors.As(err, &he) || he.RetryAfter != time.Second {
		t.Fatalf("err = %v", err)
	}
}
