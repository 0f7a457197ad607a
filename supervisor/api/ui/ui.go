// Package ui serves the daemon's status page at / (issue 17): jobs and their states,
// a live progress bar, loss curve, validation images and log tail per job, the buttons
// that steer it, the GPUs and who holds them, the queue and the schedules.
//
// The page is plain HTML, CSS and one vanilla script, embedded in the binary: nothing is
// built at run time and nothing is loaded from another host. The HTML is static and holds
// no data; the script fetches everything through the JSON API with the session cookie
// (POST /api/auth/login), so a caller who is not logged in gets the login form and
// nothing else, and every datum passes the API's permission checks. The script inserts
// data only as text nodes and attributes (never as markup), which the page's
// Content-Security-Policy backs: scripts only from this daemon, no inline script or
// style, images only from the daemon or data: URIs (validation images arrive as data:
// URIs on the event stream, docs/compatibility.md §7).
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// Paths the page is written for: index.html loads its script and style from AssetsPath.
const (
	// PagePath is where Page is mounted.
	PagePath = "/"
	// AssetsPath is the prefix Assets serves; mount it as "/ui/{file}".
	AssetsPath = "/ui/"
)

// ContentSecurityPolicy is the policy of the page and its assets, stricter than the
// daemon's default (which allows the inline styles the API documentation viewers inject):
// no inline script or style at all, no plugins, no frames, requests only to this daemon
// (fetch and EventSource), images from the daemon or data: URIs.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; " +
	"frame-ancestors 'none'"

// files holds the page, its script and its style.
//
//go:embed web/index.html web/app.js web/app.css
var files embed.FS

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// UI serves the page and its assets. It is immutable after New and safe for concurrent
// use.
type UI struct {
	page   asset
	assets map[string]asset // by file name under AssetsPath
}

// contentTypes are the types of the files the page is made of, by extension.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// New reads the embedded files.
func New() (*UI, error) {
	u := &UI{assets: map[string]asset{}}
	entries, err := fs.ReadDir(files, "web")
	if err != nil {
		return nil, fmt.Errorf("status page: %w", err)
	}
	for _, e := range entries {
		b, err := files.ReadFile(path.Join("web", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("status page: %w", err)
		}
		ct, ok := contentTypes[path.Ext(e.Name())]
		if !ok {
			return nil, fmt.Errorf("status page: no content type for %s", e.Name())
		}
		sum := sha256.Sum256(b)
		a := asset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		if e.Name() == "index.html" {
			u.page = a
			continue
		}
		u.assets[e.Name()] = a
	}
	return u, nil
}

// Page serves the page itself (GET and HEAD).
func (u *UI) Page() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serve(w, r, u.page) })
}

// Assets serves the script and the style under AssetsPath; other names are 404.
func (u *UI) Assets() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := u.assets[strings.TrimPrefix(r.URL.Path, AssetsPath)]
		if !ok {
			http.NotFound(w, r)
			return
		}
		serve(w, r, a)
	})
}

// serve writes a with the page's policy. The files are small and change only with the
// binary, so a browser revalidates them (no-cache) and gets 304 while the ETag matches.
func serve(w http.ResponseWriter, r *http.Request, a asset) {
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
