package hfhubtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// post sends body to url with hdr and returns the status and answer.
func post(t *testing.T, method, url, body string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.NewDecoder(bytes.NewReader(b)).Decode(&m)
	return resp.StatusCode, m
}

// TestHubSpeaksTheUploadProtocol checks the fake's own answers where a client would not
// notice a wrong one: create's 409 carries the URL, writes need a token, the storage
// refuses a token and content that does not match, verify says 404 for what is missing.
func TestHubSpeaksTheUploadProtocol(t *testing.T) {
	h := New(t)
	auth := map[string]string{"Authorization": "Bearer hf_w", "Content-Type": "application/json"}
	create := `{"name":"m","organization":"org","type":"model"}`
	if code, m := post(t, "POST", h.URL+"/api/repos/create", create, nil); code != 401 {
		t.Fatalf("create without a token: %d %v", code, m)
	}
	if code, m := post(t, "POST", h.URL+"/api/repos/create", create, auth); code != 200 || m["url"] != h.URL+"/org/m" {
		t.Fatalf("create: %d %v", code, m)
	}
	if code, m := post(t, "POST", h.URL+"/api/repos/create", create, auth); code != 409 || m["url"] != h.URL+"/org/m" {
		t.Fatalf("create again: %d %v", code, m)
	}
	content := []byte("0123456789")
	sum := sha256.Sum256(content)
	oid := hex.EncodeToString(sum[:])
	lfs := map[string]string{"Authorization": "Bearer hf_w", "Accept": lfsMedia, "Content-Type": lfsMedia}
	batch := `{"operation":"upload","transfers":["basic"],"hash_algo":"sha256","objects":[{"oid":"` + oid + `","size":10}]}`
	code, m := post(t, "POST", h.URL+"/org/m.git/info/lfs/objects/batch", batch, lfs)
	objs, _ := m["objects"].([]any)
	if code != 200 || len(objs) != 1 {
		t.Fatalf("batch: %d %v", code, m)
	}
	actions := objs[0].(map[string]any)["actions"].(map[string]any)
	href := actions["upload"].(map[string]any)["href"].(string)
	verify := actions["verify"].(map[string]any)["href"].(string)
	if !strings.HasPrefix(href, h.CDNURL+storagePrefix) {
		t.Fatalf("upload href %s is not on the storage", href)
	}
	check := `{"oid":"` + oid + `","size":10}`
	if code, _ := post(t, "POST", verify, check, lfs); code != 404 {
		t.Fatalf("verify before the upload: %d", code)
	}
	if code, _ := post(t, "PUT", href, string(content), map[string]string{"Authorization": "Bearer hf_w"}); code != 400 {
		t.Fatalf("storage PUT with a token: %d", code)
	}
	if code, _ := post(t, "PUT", href, "0123456780", nil); code != 400 {
		t.Fatalf("storage PUT of other content: %d", code)
	}
	if code, _ := post(t, "PUT", strings.Split(href, "?")[0], string(content), nil); code != 403 {
		t.Fatalf("unsigned storage PUT: %d", code)
	}
	if code, _ := post(t, "PUT", href, string(content), nil); code != 200 {
		t.Fatalf("storage PUT: %d", code)
	}
	if code, _ := post(t, "POST", verify, check, lfs); code != 200 {
		t.Fatalf("verify after the upload: %d", code)
	}
	// Stored: a second batch needs no action.
	if _, m := post(t, "POST", h.URL+"/org/m.git/info/lfs/objects/batch", batch, lfs); m["objects"].([]any)[0].(map[string]any)["actions"] != nil {
		t.Fatalf("stored object still has actions: %v", m)
	}
}
