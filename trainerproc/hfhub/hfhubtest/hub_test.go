package hfhubtest

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func do(t *testing.T, method, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestHubSpeaksTheDownloadProtocol(t *testing.T) {
	h := New(t)
	files := map[string]File{"config.json": {Content: []byte(`{"a":1}`)}, "w/model.safetensors": {Content: []byte("0123456789"), LFS: true}}
	commit := h.Commit("org/m", "refs/pr/1", files)

	tests := []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		headers            map[string]string
		body               string
	}{
		{"regular HEAD", "HEAD", "/org/m/resolve/refs%2Fpr%2F1/config.json", nil, 200,
			map[string]string{"ETag": `"` + GitBlobSHA1([]byte(`{"a":1}`)) + `"`, "Content-Length": "7", "X-Repo-Commit": commit}, ""},
		{"regular GET by commit", "GET", "/org/m/resolve/" + commit + "/config.json", nil, 200, nil, `{"a":1}`},
		{"lfs HEAD", "HEAD", "/org/m/resolve/" + commit + "/w/model.safetensors", nil, 302,
			map[string]string{"X-Linked-Etag": `"` + files["w/model.safetensors"].Etag() + `"`, "X-Linked-Size": "10", "X-Repo-Commit": commit}, ""},
		{"missing entry", "HEAD", "/org/m/resolve/" + commit + "/nope.json", nil, 404,
			map[string]string{"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, ""},
		{"missing revision", "GET", "/org/m/resolve/main/config.json", nil, 404,
			map[string]string{"X-Error-Code": "RevisionNotFound"}, ""},
		{"missing repo", "GET", "/org/x/resolve/main/config.json", nil, 401,
			map[string]string{"X-Error-Code": "RepoNotFound"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, tt.method, h.URL+tt.path, tt.hdr)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d", resp.StatusCode)
			}
			for k, v := range tt.headers {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tt.body != "" && string(body) != tt.body {
				t.Errorf("body %q", body)
			}
		})
	}

	// The LFS redirect goes to the CDN, which honours Range.
	resp, _ := do(t, "HEAD", h.URL+"/org/m/resolve/"+commit+"/w/model.safetensors", nil)
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, h.CDNURL+"/") {
		t.Fatalf("Location %q is not on the CDN", loc)
	}
	resp, body := do(t, "GET", loc, map[string]string{"Range": "bytes=4-"})
	if resp.StatusCode != 206 || string(body) != "456789" || resp.Header.Get("Content-Range") != "bytes 4-9/10" {
		t.Fatalf("range: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Range"))
	}
	if resp, _ := do(t, "GET", loc, map[string]string{"Range": "bytes=10-"}); resp.StatusCode != 416 {
		t.Fatalf("range past the end: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", strings.Split(loc, "?")[0], nil); resp.StatusCode != 403 {
		t.Fatalf("unsigned CDN URL: %d", resp.StatusCode)
	}

	// Repo info.
	resp, body = do(t, "GET", h.URL+"/api/models/org/m/revision/refs%2Fpr%2F1", nil)
	var info struct {
		ID       string
		SHA      string
		Siblings []struct{ Rfilename string }
	}
	if err := json.Unmarshal(body, &info); err != nil || resp.StatusCode != 200 || info.SHA != commit || len(info.Siblings) != 2 {
		t.Fatalf("info %d %s %v", resp.StatusCode, body, err)
	}

	// Gated: 401 without a token, 403 with one not allowed, 200 with an allowed one.
	h.Gate("org/m", "hf_ok")
	for tok, want := range map[string]int{"": 401, "hf_no": 403, "hf_ok": 200} {
		hdr := map[string]string{}
		if tok != "" {
			hdr["Authorization"] = "Bearer " + tok
		}
		resp, _ := do(t, "GET", h.URL+"/org/m/resolve/"+commit+"/config.json", hdr)
		if resp.StatusCode != want || (want != 200 && resp.Header.Get("X-Error-Code") != "GatedRepo") {
			t.Errorf("token %q: %d %q", tok, resp.StatusCode, resp.Header.Get("X-Error-Code"))
		}
	}
	if len(h.Requests()) == 0 {
		t.Fatal("requests not recorded")
	}
}

func TestDirFiles(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "vae"), 0o755)
	os.WriteFile(filepath.Join(dir, "model_index.json"), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(dir, "vae", "diffusion_pytorch_model.safetensors"), []byte("weights"), 0o644)
	files, err := DirFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files["model_index.json"].LFS || string(files["model_index.json"].Content) != "{}" ||
		!files["vae/diffusion_pytorch_model.safetensors"].LFS || string(files["vae/diffusion_pytorch_model.safetensors"].Content) != "weights" {
		t.Fatalf("files %+v", files)
	}
	if _, err := DirFiles(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing directory read without error")
	}
}
