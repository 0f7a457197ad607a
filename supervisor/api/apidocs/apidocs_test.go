package apidocs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/gorilla/mux"
)

// newRouter mounts d the way the daemon does, one line per route, so the
// tests exercise the documented mounting and gorilla/mux's path handling.
func newRouter(d *Docs) *mux.Router {
	r := mux.NewRouter()
	r.Handle(SwaggerPath, d.SwaggerUI())
	r.Handle(ReDocPath, d.ReDoc())
	r.Handle(AssetsPath+"{file}", d.Assets())
	return r
}

func get(t *testing.T, h http.Handler, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

var attrURL = regexp.MustCompile(`(?i)\b(?:src|href)\s*=\s*"([^"]*)"`)

// pageURLs returns every src= and href= value in the page.
func pageURLs(t *testing.T, html string) []string {
	t.Helper()
	var urls []string
	for _, m := range attrURL.FindAllStringSubmatch(html, -1) {
		urls = append(urls, m[1])
	}
	if len(urls) == 0 {
		t.Fatal("page has no src/href attributes at all")
	}
	return urls
}

func TestPagesLoadNothingFromOutside(t *testing.T) {
	d := New("")
	r := newRouter(d)
	for _, p := range []string{SwaggerPath, ReDocPath} {
		rec := get(t, r, p, nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s = %d", p, rec.Code)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("GET %s Content-Type = %q", p, ct)
		}
		body := rec.Body.String()
		if !strings.Contains(body, "<title>simpletuner API</title>") {
			t.Errorf("GET %s: title missing", p)
		}
		for _, bad := range []string{"http://", "https://", "//fonts.", "googleapis", "cdn"} {
			if strings.Contains(strings.ToLower(body), bad) {
				t.Errorf("GET %s: page contains %q", p, bad)
			}
		}
		if strings.Contains(body, "<script>") || strings.Contains(body, "onload=") {
			t.Errorf("GET %s: page has an inline script, which script-src 'self' forbids", p)
		}
		if !strings.Contains(body, `data-spec-url="/openapi.json"`) {
			t.Errorf("GET %s: default spec URL not passed to the viewer", p)
		}
		for _, u := range pageURLs(t, body) {
			local := strings.HasPrefix(u, AssetsPath) || u == DefaultSpecURL || u == "data:,"
			if !local || strings.Contains(u, "..") {
				t.Errorf("GET %s: references %q, want only %s..., the spec or data:,", p, u, AssetsPath)
			}
		}
	}
}

func TestReferencedAssetsAreServed(t *testing.T) {
	d := New("")
	r := newRouter(d)
	seen := map[string]bool{}
	for _, p := range []string{SwaggerPath, ReDocPath} {
		for _, u := range pageURLs(t, get(t, r, p, nil).Body.String()) {
			if !strings.HasPrefix(u, AssetsPath) || seen[u] {
				continue
			}
			seen[u] = true
			rec := get(t, r, u, nil)
			if rec.Code != http.StatusOK {
				t.Errorf("GET %s (from %s) = %d", u, p, rec.Code)
				continue
			}
			ct := rec.Header().Get("Content-Type")
			switch path.Ext(u) {
			case ".js":
				if ct != "text/javascript; charset=utf-8" {
					t.Errorf("GET %s Content-Type = %q, want JavaScript", u, ct)
				}
			case ".css":
				if ct != "text/css; charset=utf-8" {
					t.Errorf("GET %s Content-Type = %q, want CSS", u, ct)
				}
			default:
				t.Errorf("page %s references %s, neither JS nor CSS", p, u)
			}
			if cc := rec.Header().Get("Cache-Control"); !strings.Contains(cc, "max-age=31536000") {
				t.Errorf("GET %s Cache-Control = %q, want a year (hashed name)", u, cc)
			}
			if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s: no X-Content-Type-Options: nosniff", u)
			}
			if rec.Body.Len() == 0 {
				t.Errorf("GET %s: empty body", u)
			}
		}
	}
	// Both viewers, both init scripts, Swagger UI's CSS and ours.
	if len(seen) != 6 {
		t.Errorf("pages reference %d distinct assets, want 6: %v", len(seen), seen)
	}
}

func TestAssetNamesFollowContent(t *testing.T) {
	d := New("")
	for name, want := range map[string]string{
		"swagger-ui-bundle.js": "swagger-ui-bundle.",
		"redoc.standalone.js":  "redoc.standalone.",
		"swagger-init.js":      "swagger-init.",
	} {
		u, ok := d.AssetURL(name)
		if !ok {
			t.Fatalf("AssetURL(%q) missing", name)
		}
		data, err := files.ReadFile(map[bool]string{true: "web/", false: "assets/"}[strings.HasSuffix(name, "-init.js")] + name)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		wantURL := AssetsPath + want + hex.EncodeToString(sum[:6]) + ".js"
		if u != wantURL {
			t.Errorf("AssetURL(%q) = %q, want %q", name, u, wantURL)
		}
	}
	if _, ok := d.AssetURL("nope.js"); ok {
		t.Error("AssetURL(nope.js) reported ok")
	}
}

func TestUnknownAndTraversalAre404(t *testing.T) {
	d := New("")
	r := newRouter(d)
	hashed, _ := d.AssetURL("swagger-ui.css")
	targets := []string{
		AssetsPath + "nope.js",
		AssetsPath,
		AssetsPath + "swagger-ui.css", // the unhashed name is not served
		AssetsPath + "../x",
		AssetsPath + "../apidocs.go",
		AssetsPath + "..%2fapidocs.go",
		AssetsPath + "%2e%2e/apidocs.go",
		AssetsPath + "%2e%2e%2f%2e%2e%2fgo.mod",
		AssetsPath + "assets/swagger-ui.css",
		AssetsPath + "web/swagger-init.js",
		AssetsPath + "./" + path.Base(hashed),
		AssetsPath + "x/../" + path.Base(hashed),
		AssetsPath + "..%5c" + path.Base(hashed),
		hashed + "/",
		hashed + "%00",
	}
	for _, target := range targets {
		// Straight to the handler: no router cleans the path first.
		if rec := get(t, d.Assets(), target, nil); rec.Code != http.StatusNotFound {
			t.Errorf("Assets() GET %s = %d, want 404", target, rec.Code)
		}
	}
	// Through the router: gorilla/mux may redirect a dotted path to its
	// clean form; it must not serve anything from it.
	for _, target := range targets {
		rec := get(t, r, target, nil)
		if rec.Code == http.StatusOK {
			t.Errorf("router GET %s = 200, want no content", target)
		}
	}
	if rec := get(t, r, hashed, nil); rec.Code != http.StatusOK {
		t.Fatalf("control: GET %s = %d, want 200", hashed, rec.Code)
	}
}

func TestAssetsBehindStripPrefix(t *testing.T) {
	d := New("")
	h := http.StripPrefix(AssetsPath, d.Assets())
	u, _ := d.AssetURL("redoc-init.js")
	if rec := get(t, h, u, nil); rec.Code != http.StatusOK {
		t.Fatalf("GET %s behind StripPrefix = %d", u, rec.Code)
	}
}

func TestLicencesServed(t *testing.T) {
	d := New("")
	for _, name := range []string{"swagger-ui-LICENSE", "redoc-LICENSE", "swagger-ui-bundle.js.LICENSE.txt", "redoc.standalone.js.LICENSE.txt"} {
		u, ok := d.AssetURL(name)
		if !ok {
			t.Fatalf("no URL for %s", name)
		}
		rec := get(t, d.Assets(), u, nil)
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
			t.Errorf("GET %s = %d %q, want 200 text/plain", u, rec.Code, rec.Header().Get("Content-Type"))
		}
		if rec.Header().Get("Cache-Control") != "no-cache" {
			t.Errorf("GET %s Cache-Control = %q: a stable name must be revalidated", u, rec.Header().Get("Cache-Control"))
		}
	}
}

func TestConditionalAndCompressed(t *testing.T) {
	d := New("")
	u, _ := d.AssetURL("swagger-ui-bundle.js")
	plain := get(t, d.Assets(), u, nil)
	etag := plain.Header().Get("ETag")
	if plain.Code != http.StatusOK || etag == "" || plain.Header().Get("Content-Encoding") != "" {
		t.Fatalf("plain GET = %d, ETag %q, Content-Encoding %q", plain.Code, etag, plain.Header().Get("Content-Encoding"))
	}
	if rec := get(t, d.Assets(), u, http.Header{"If-None-Match": {etag}}); rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: %s = %d, want 304", etag, rec.Code)
	}

	gz := get(t, d.Assets(), u, http.Header{"Accept-Encoding": {"br, gzip;q=0.8"}})
	if gz.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("Accept-Encoding gzip: Content-Encoding = %q", gz.Header().Get("Content-Encoding"))
	}
	if gz.Header().Get("ETag") == etag {
		t.Error("gzip and identity responses share an ETag")
	}
	if !strings.Contains(gz.Header().Get("Vary"), "Accept-Encoding") {
		t.Error("no Vary: Accept-Encoding")
	}
	if gz.Body.Len() >= plain.Body.Len()/2 {
		t.Errorf("gzip body %d bytes, identity %d: expected at least halved", gz.Body.Len(), plain.Body.Len())
	}
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(unzipped, plain.Body.Bytes()) {
		t.Error("gzip body does not decompress to the asset")
	}
	if rec := get(t, d.Assets(), u, http.Header{"Accept-Encoding": {"gzip;q=0, identity"}}); rec.Header().Get("Content-Encoding") != "" {
		t.Error("gzip;q=0 still got gzip")
	}
}

func TestAcceptsGzip(t *testing.T) {
	for v, want := range map[string]bool{
		"":                  false,
		"gzip":              true,
		"GZIP":              true,
		"deflate, gzip":     true,
		"gzip;q=0.5":        true,
		"gzip; q=0":         false,
		"gzip;q=0.000":      false,
		"gzipx":             false,
		"br;q=1, identity":  false,
		"gzip;level=1;q=1":  true,
		"gzip;q=notanumber": false,
	} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if v != "" {
			req.Header.Set("Accept-Encoding", v)
		}
		if got := acceptsGzip(req); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestHeadersAndMethods(t *testing.T) {
	d := New("")
	rec := get(t, d.SwaggerUI(), SwaggerPath, nil)
	if got := rec.Header().Get("Content-Security-Policy"); got != ContentSecurityPolicy {
		t.Errorf("CSP = %q, want ContentSecurityPolicy", got)
	}
	if rec.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("page Cache-Control = %q, want no-cache (it names the current asset hashes)", rec.Header().Get("Cache-Control"))
	}
	// A policy set earlier (daemon middleware) is left alone.
	pre := httptest.NewRecorder()
	pre.Header().Set("Content-Security-Policy", "default-src 'none'")
	d.ReDoc().ServeHTTP(pre, httptest.NewRequest(http.MethodGet, ReDocPath, nil))
	if got := pre.Header().Values("Content-Security-Policy"); len(got) != 1 || got[0] != "default-src 'none'" {
		t.Errorf("preset CSP became %q", got)
	}
	for _, h := range []http.Handler{d.SwaggerUI(), d.ReDoc(), d.Assets()} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, SwaggerPath, nil))
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("POST = %d, Allow %q; want 405, GET, HEAD", rec.Code, rec.Header().Get("Allow"))
		}
	}
	head := httptest.NewRecorder()
	d.SwaggerUI().ServeHTTP(head, httptest.NewRequest(http.MethodHead, SwaggerPath, nil))
	if head.Code != http.StatusOK || head.Body.Len() != 0 || head.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD = %d, %d body bytes, Content-Length %q", head.Code, head.Body.Len(), head.Header().Get("Content-Length"))
	}
}

func TestSpecURL(t *testing.T) {
	if got := New("").SpecURL(); got != DefaultSpecURL {
		t.Errorf("New(\"\").SpecURL() = %q", got)
	}
	d := New(`/api/openapi.json?x="><script>alert(1)</script>`)
	body := get(t, d.SwaggerUI(), SwaggerPath, nil).Body.String()
	if strings.Contains(body, "<script>alert") || strings.Contains(body, `"><script`) {
		t.Errorf("spec URL not escaped:\n%s", body)
	}
	if !strings.Contains(body, `data-spec-url="/api/openapi.json?x=%22%3e%3cscript%3ealert%281%29%3c/script%3e"`) {
		t.Errorf("escaped spec URL not found:\n%s", body)
	}
	// A javascript: URL must not reach an attribute (as text it is inert).
	body = get(t, New("javascript:alert(1)").ReDoc(), ReDocPath, nil).Body.String()
	for _, u := range pageURLs(t, body) {
		if strings.HasPrefix(u, "javascript:") {
			t.Errorf("javascript: spec URL rendered into an attribute:\n%s", body)
		}
	}
	if !strings.Contains(body, `data-spec-url="#ZgotmplZ"`) {
		t.Errorf("javascript: spec URL not neutralised in data-spec-url:\n%s", body)
	}
}

// TestVendoredFilesMatchChecksums guards the vendored bundles against hand
// edits: they must be what fetch-assets.sh produced.
func TestVendoredFilesMatchChecksums(t *testing.T) {
	f, err := os.Open("assets/SHA256SUMS")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	listed := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("bad SHA256SUMS line %q", sc.Text())
		}
		listed[name] = true
		data, err := files.ReadFile("assets/" + name)
		if err != nil {
			t.Errorf("%s is in SHA256SUMS but not embedded: %v", name, err)
			continue
		}
		got := sha256.Sum256(data)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("assets/%s does not match SHA256SUMS; rerun FORCE=1 ./fetch-assets.sh", name)
		}
		// Keeps the binary lean and the pages quick on slow links.
		if len(data) > 2<<20 {
			t.Errorf("assets/%s is %d bytes, over the 2 MiB budget", name, len(data))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	entries, err := files.ReadDir("assets")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !listed[e.Name()] {
			t.Errorf("embedded assets/%s is not in SHA256SUMS", e.Name())
		}
	}
	for _, must := range []string{"swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-LICENSE", "redoc.standalone.js", "redoc-LICENSE"} {
		if !listed[must] {
			t.Errorf("assets/%s missing", must)
		}
	}
}

// TestVersionsMatchScript catches a version bump in fetch-assets.sh that was
// never followed by running it.
func TestVersionsMatchScript(t *testing.T) {
	script, err := os.ReadFile("fetch-assets.sh")
	if err != nil {
		t.Fatal(err)
	}
	versions, err := os.ReadFile("assets/VERSIONS")
	if err != nil {
		t.Fatal(err)
	}
	for pkg, v := range map[string]string{"swagger-ui-dist": "SWAGGER_UI_VERSION", "redoc": "REDOC_VERSION"} {
		m := regexp.MustCompile(`(?m)^` + v + `=(\S+)$`).FindSubmatch(script)
		if m == nil {
			t.Fatalf("fetch-assets.sh sets no %s", v)
		}
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(pkg+" "+string(m[1])) + ` sha512-`).Match(versions) {
			t.Errorf("assets/VERSIONS has no %s %s with an integrity; run ./fetch-assets.sh", pkg, m[1])
		}
	}
	src, err := os.ReadFile("apidocs.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(src, []byte("//go:generate ./fetch-assets.sh\n")) {
		t.Error("apidocs.go lacks the //go:generate ./fetch-assets.sh line")
	}
	if fi, err := os.Stat("fetch-assets.sh"); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("fetch-assets.sh is not executable (go generate runs it directly): %v", err)
	}
}
