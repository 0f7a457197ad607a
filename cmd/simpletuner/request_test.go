package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Requests of the black-box tests: every helper below goes through roundTrip.

// roundTrip sends req with the headers in hdr and returns the status and the answer as
// text, or the transport error (a client timeout, a closed connection) for the caller to
// judge. An event stream's body is not read: its status is the answer.
func roundTrip(c *http.Client, req *http.Request, hdr map[string]string) (int, string, error) {
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		return res.StatusCode, "", nil
	}
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

// jsonRequest is a request with body encoded as JSON (nil: no body).
func jsonRequest(ctx context.Context, method, url string, body any) (*http.Request, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err == nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, err
}

// object decodes an answer that should be a JSON object (empty when it is not).
func object(body string) map[string]any {
	out := map[string]any{}
	_ = json.Unmarshal([]byte(body), &out)
	return out
}

// doJSON sends body as JSON and returns the status and the answer, or the transport error.
func doJSON(c *http.Client, method, url string, body any, hdr map[string]string) (int, string, error) {
	req, err := jsonRequest(context.Background(), method, url, body)
	if err != nil {
		return 0, "", err
	}
	return roundTrip(c, req, hdr)
}

// call sends body as JSON and decodes the JSON object answered.
func call(t *testing.T, c *http.Client, method, url string, body any, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	code, text, err := doJSON(c, method, url, body, hdr)
	if err != nil {
		t.Fatal(err)
	}
	return code, object(text)
}

// hostCall is call with the Host header set to host (Go's client takes it from req.Host).
func hostCall(t *testing.T, c *http.Client, method, url, host string, body any, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req, err := jsonRequest(context.Background(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	code, text, err := roundTrip(c, req, hdr)
	if err != nil {
		t.Fatal(err)
	}
	return code, object(text)
}

// rawCall sends body as it is (JSON bytes, nil for none) within 20 s and returns the
// status and the answer as text.
func rawCall(t *testing.T, c *http.Client, method, url string, body []byte, hdr map[string]string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	code, text, err := roundTrip(c, req, hdr)
	if err != nil {
		t.Fatal(err)
	}
	return code, text
}

// jsonBytes encodes v as a request body (nil stays nil: no body).
func jsonBytes(t *testing.T, v any) []byte {
	t.Helper()
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keyStatus is a request safe to make from any goroutine: the status, or 0 when the
// request failed.
func keyStatus(c *http.Client, method, url, key string) int {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0
	}
	code, _, _ := roundTrip(c, req, map[string]string{"X-API-Key": key})
	return code
}

// mpart is one part of a multipart form: a field, or a file when filename is set.
type mpart struct {
	field, value, filename string
	data                   []byte
}

// fieldParts turns name/value pairs into form parts.
func fieldParts(fields [][2]string) []mpart {
	parts := make([]mpart, 0, len(fields))
	for _, f := range fields {
		parts = append(parts, mpart{field: f[0], value: f[1]})
	}
	return parts
}

// sendParts posts a multipart form the way curl -F does, parts in order, and returns the
// status and the answer, or the transport error.
func sendParts(c *http.Client, url string, hdr map[string]string, parts ...mpart) (int, string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		if p.filename == "" {
			mw.WriteField(p.field, p.value)
			continue
		}
		w, err := mw.CreateFormFile(p.field, p.filename)
		if err != nil {
			return 0, "", err
		}
		w.Write(p.data)
	}
	mw.Close()
	req, err := http.NewRequest("POST", url, &buf)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return roundTrip(c, req, hdr)
}

// postParts is sendParts that fails the test on a transport error.
func postParts(t *testing.T, c *http.Client, url string, hdr map[string]string, parts ...mpart) (int, string) {
	t.Helper()
	code, text, err := sendParts(c, url, hdr, parts...)
	if err != nil {
		t.Fatal(err)
	}
	return code, text
}

// postFields posts form fields asking for JSON, and returns the transport error (a client
// timeout) for the caller to report.
func postFields(c *http.Client, url string, fields [][2]string, hdr map[string]string) (int, string, error) {
	h := map[string]string{"Accept": "application/json"}
	for k, v := range hdr {
		h[k] = v
	}
	return sendParts(c, url, h, fieldParts(fields)...)
}

// form posts multipart fields the way curl -F does, with an Accept header unless accept
// is empty.
func form(t *testing.T, c *http.Client, url string, fields [][2]string, accept string) (int, string) {
	t.Helper()
	var hdr map[string]string
	if accept != "" {
		hdr = map[string]string{"Accept": accept}
	}
	return postParts(t, c, url, hdr, fieldParts(fields)...)
}

// startJob starts a training job with fields as c and returns its id.
func startJob(t *testing.T, d *proc, c *http.Client, fields [][2]string) string {
	t.Helper()
	code, body := form(t, c, d.base+"/api/training/start", fields, "application/json")
	var st struct {
		JobID string `json:"job_id"`
	}
	json.Unmarshal([]byte(body), &st)
	if code != 200 || st.JobID == "" {
		t.Fatalf("start: %d %s", code, body)
	}
	return st.JobID
}

// startRunning starts a training job with fields as c and waits until it runs.
func startRunning(t *testing.T, d *proc, c *http.Client, fields [][2]string) string {
	t.Helper()
	id := startJob(t, d, c, fields)
	waitJob(t, c, d.base, id, 30*time.Second, "running")
	return id
}
