// Package hfhubtest is a fake Hugging Face Hub for tests: an httptest server speaking the
// Hub's HTTP API with the same headers: the download side (HEAD/GET
// /{repo}/resolve/{revision}/{path}, the revision info endpoint) and the upload side
// (create_repo, preupload, the LFS batch API with basic and multipart transfers and
// verify, NDJSON commits; see upload.go), plus a second server playing the CDN that LFS
// files redirect to and the storage LFS uploads go to. Committed files are served at the
// new revision. Faults (a connection cut mid-file, corrupted content, gated repos, failed
// or cut uploads) can be injected so clients are tested without the network.
package hfhubtest

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// File is one file of a commit.
type File struct {
	// Content is the file's bytes.
	Content []byte
	// LFS makes the file an LFS file: its resolve URL redirects to the CDN and its etag is
	// the sha256 of the content (a regular file's etag is its git blob sha1).
	LFS bool
}

// Request is one request the fake Hub or its CDN received, for assertions.
type Request struct {
	// CDN is true for requests to the CDN server.
	CDN bool
	// Method and Path are the request's method and escaped path.
	Method, Path string
	// Range, Authorization and ContentType are the request's headers of those names.
	Range, Authorization, ContentType string
}

// repo is one fake repository.
type repo struct {
	commits map[string]map[string]File // commit -> path -> file
	refs    map[string]string          // branch/tag -> commit
	gated   bool
	allowed map[string]bool // tokens that accepted the licence of a gated repo
	private bool            // created with visibility private
	log     []CommitRecord  // commits made through the commit API, oldest first
}

// Hub is a fake Hub. Create it with New; it is closed with the test.
type Hub struct {
	// URL is the Hub's endpoint (the value of HF_ENDPOINT).
	URL string
	// CDNURL is the base URL of the CDN LFS files redirect to.
	CDNURL string

	mu       sync.Mutex
	repos    map[string]*repo
	requests []Request
	cutAfter map[string]int64 // repo+"/"+path -> bytes sent before the next GET is cut
	corrupt  map[string]bool  // repo+"/"+path -> serve flipped content
	stall    map[string]int64 // repo+"/"+path -> bytes sent before the next GET stalls
	failNext int              // answer this many next requests (Hub and CDN) with failStatus
	failCode int
	seq      int
	up       uploads
}

// New starts a fake Hub and its CDN; both are closed when the test ends.
func New(t interface{ Cleanup(func()) }) *Hub {
	h := &Hub{repos: map[string]*repo{}, cutAfter: map[string]int64{}, corrupt: map[string]bool{}, stall: map[string]int64{},
		up: newUploads()}
	hub := httptest.NewServer(http.HandlerFunc(h.serveHub))
	cdn := httptest.NewServer(http.HandlerFunc(h.serveCDN))
	t.Cleanup(hub.Close)
	t.Cleanup(cdn.Close)
	h.URL, h.CDNURL = hub.URL, cdn.URL
	return h
}

// Commit adds a commit holding exactly files to repoID (created if needed), moves branch to
// it, and returns the commit hash.
func (h *Hub) Commit(repoID, branch string, files map[string]File) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.commitLocked(repoID, branch, files)
}

// commitLocked is Commit with h.mu held.
func (h *Hub) commitLocked(repoID, branch string, files map[string]File) string {
	r := h.repos[repoID]
	if r == nil {
		r = &repo{commits: map[string]map[string]File{}, refs: map[string]string{}, allowed: map[string]bool{}}
		h.repos[repoID] = r
	}
	h.seq++
	hash := sha1.New()
	fmt.Fprintf(hash, "%s\x00%d\x00", repoID, h.seq)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	cp := map[string]File{}
	for _, n := range names {
		fmt.Fprintf(hash, "%s\x00%x\x00", n, files[n].Content)
		cp[n] = files[n]
	}
	commit := hex.EncodeToString(hash.Sum(nil))
	r.commits[commit] = cp
	r.refs[branch] = commit
	return commit
}

// Gate makes repoID gated: only requests carrying one of tokens (licence accepted) get files.
func (h *Hub) Gate(repoID string, tokens ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.repos[repoID]
	r.gated = true
	for _, t := range tokens {
		r.allowed[t] = true
	}
}

// CutAfter makes the next GET of path (on the Hub or the CDN) send n bytes of the body and
// then drop the connection. Later GETs are served normally.
func (h *Hub) CutAfter(repoID, path string, n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cutAfter[repoID+"/"+path] = n
}

// StallAfter makes the next GET of path send n bytes of the body and then send nothing more
// until the client gives up (it holds the connection open). Later GETs are served normally.
func (h *Hub) StallAfter(repoID, path string, n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stall[repoID+"/"+path] = n
}

// FailNext makes the next n requests, on the Hub or the CDN, answer status (e.g. 503 or
// 429) as an overloaded Hub does.
func (h *Hub) FailNext(n, status int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failNext, h.failCode = n, status
}

// failing consumes one injected failure, if any, and writes it.
func (h *Hub) failing(w http.ResponseWriter) bool {
	h.mu.Lock()
	n, code := h.failNext, h.failCode
	if n > 0 {
		h.failNext--
	}
	h.mu.Unlock()
	if n <= 0 {
		return false
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, http.StatusText(code), code)
	return true
}

// Corrupt makes every GET of path serve content with one byte flipped, while the metadata
// still announces the true etag and size.
func (h *Hub) Corrupt(repoID, path string, on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.corrupt[repoID+"/"+path] = on
}

// Requests returns a copy of the requests received so far.
func (h *Hub) Requests() []Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Request(nil), h.requests...)
}

// GitBlobSHA1 is the etag the Hub gives a regular (non-LFS) file.
func GitBlobSHA1(content []byte) string {
	s := sha1.New()
	fmt.Fprintf(s, "blob %d\x00", len(content))
	s.Write(content)
	return hex.EncodeToString(s.Sum(nil))
}

// Etag is the normalized etag of f, i.e. the name of its blob in the cache.
func (f File) Etag() string {
	if f.LFS {
		s := sha256.Sum256(f.Content)
		return hex.EncodeToString(s[:])
	}
	return GitBlobSHA1(f.Content)
}

func (h *Hub) record(r *http.Request, cdn bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests = append(h.requests, Request{CDN: cdn, Method: r.Method, Path: r.URL.EscapedPath(),
		Range: r.Header.Get("Range"), Authorization: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type")})
}

func hubError(w http.ResponseWriter, status int, code, msg, commit string) {
	w.Header().Set("X-Error-Code", code)
	w.Header().Set("X-Error-Message", msg)
	if commit != "" {
		w.Header().Set("X-Repo-Commit", commit)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// lookup resolves repo and revision under the lock, answering the Hub's errors itself.
// It returns the commit and its files, or ok=false when an error was written.
func (h *Hub) lookup(w http.ResponseWriter, r *http.Request, repoID, rev string) (string, map[string]File, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rp := h.repos[repoID]
	if rp == nil {
		hubError(w, http.StatusUnauthorized, "RepoNotFound", "Repository not found", "")
		return "", nil, false
	}
	if rp.gated {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		switch {
		case tok == "":
			hubError(w, http.StatusUnauthorized, "GatedRepo", "Access to model "+repoID+" is restricted. You must have access to it and be authenticated to access it. Please log in.", "")
			return "", nil, false
		case !rp.allowed[tok]:
			hubError(w, http.StatusForbidden, "GatedRepo", "Access to model "+repoID+" is restricted and you are not in the authorized list. Visit https://huggingface.co/"+repoID+" to ask for access.", "")
			return "", nil, false
		}
	}
	commit := rev
	if c, ok := rp.refs[rev]; ok {
		commit = c
	}
	files, ok := rp.commits[commit]
	if !ok {
		hubError(w, http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+rev, "")
		return "", nil, false
	}
	return commit, files, true
}

func (h *Hub) serveHub(w http.ResponseWriter, r *http.Request) {
	h.record(r, false)
	if h.failing(w) {
		return
	}
	p := r.URL.EscapedPath()
	if r.Method == http.MethodPost {
		h.serveUploadAPI(w, r, p)
		return
	}
	if rest, ok := strings.CutPrefix(p, "/api/models/"); ok && r.Method == http.MethodGet {
		h.serveInfo(w, r, rest)
		return
	}
	before, after, ok := strings.Cut(strings.TrimPrefix(p, "/"), "/resolve/")
	if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		http.NotFound(w, r)
		return
	}
	repoID, _ := url.PathUnescape(before)
	escRev, escPath, _ := strings.Cut(after, "/")
	rev, err1 := url.PathUnescape(escRev)
	name, err2 := url.PathUnescape(escPath)
	if err1 != nil || err2 != nil {
		http.Error(w, "bad escape", http.StatusBadRequest)
		return
	}
	commit, files, ok := h.lookup(w, r, repoID, rev)
	if !ok {
		return
	}
	f, ok := files[name]
	if !ok {
		hubError(w, http.StatusNotFound, "EntryNotFound", name+" does not exist at "+rev, commit)
		return
	}
	w.Header().Set("X-Repo-Commit", commit)
	if f.LFS {
		w.Header().Set("X-Linked-Etag", `"`+f.Etag()+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(f.Content)))
		w.Header().Set("ETag", `"`+GitBlobSHA1([]byte("pointer of "+name))+`"`)
		loc := fmt.Sprintf("%s/repos/%s/%s/%s?sig=signed", h.CDNURL, url.PathEscape(repoID), commit, escPath)
		w.Header().Set("Location", loc)
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set("ETag", `"`+f.Etag()+`"`)
	h.serveBody(w, r, repoID, name, f.Content)
}

// serveInfo answers GET /api/models/{repo}/revision/{rev} (and /api/models/{repo}).
func (h *Hub) serveInfo(w http.ResponseWriter, r *http.Request, rest string) {
	before, escRev, hasRev := strings.Cut(rest, "/revision/")
	repoID, _ := url.PathUnescape(before)
	rev := "main"
	if hasRev {
		rev, _ = url.PathUnescape(escRev)
	}
	commit, files, ok := h.lookup(w, r, repoID, rev)
	if !ok {
		return
	}
	type sibling struct {
		Rfilename string `json:"rfilename"`
	}
	sib := []sibling{}
	for n := range files {
		sib = append(sib, sibling{n})
	}
	sort.Slice(sib, func(i, j int) bool { return sib[i].Rfilename < sib[j].Rfilename })
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"id": repoID, "sha": commit, "siblings": sib})
}

// serveCDN answers GET /repos/{repo}/{commit}/{path} for LFS content; it wants no token.
func (h *Hub) serveCDN(w http.ResponseWriter, r *http.Request) {
	h.record(r, true)
	if h.failing(w) {
		return
	}
	if strings.HasPrefix(r.URL.EscapedPath(), storagePrefix) {
		h.serveStorage(w, r)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/repos/")
	if !ok || r.URL.Query().Get("sig") != "signed" {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) != 3 {
		http.NotFound(w, r)
		return
	}
	repoID, _ := url.PathUnescape(parts[0])
	name, _ := url.PathUnescape(parts[2])
	h.mu.Lock()
	var f File
	if rp := h.repos[repoID]; rp != nil {
		f, ok = rp.commits[parts[1]][name]
	}
	h.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	h.serveBody(w, r, repoID, name, f.Content)
}

// serveBody writes content honouring "Range: bytes=N-" / "bytes=N-M" and the injected
// faults (corruption, connection cut).
func (h *Hub) serveBody(w http.ResponseWriter, r *http.Request, repoID, name string, content []byte) {
	key := repoID + "/" + name
	h.mu.Lock()
	if h.corrupt[key] && len(content) > 0 {
		content = append([]byte(nil), content...)
		content[len(content)/2] ^= 0xff
	}
	cut, doCut := int64(-1), false
	stall, doStall := int64(-1), false
	if r.Method == http.MethodGet {
		if n, ok := h.cutAfter[key]; ok {
			cut, doCut = n, true
			delete(h.cutAfter, key)
		}
		if n, ok := h.stall[key]; ok {
			stall, doStall = n, true
			delete(h.stall, key)
		}
	}
	h.mu.Unlock()

	total := int64(len(content))
	start, end := int64(0), total-1
	status := http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" {
		spec, ok := strings.CutPrefix(rg, "bytes=")
		a, b, _ := strings.Cut(spec, "-")
		s, err := strconv.ParseInt(a, 10, 64)
		if !ok || err != nil || s >= total {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", total))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		if e, err := strconv.ParseInt(b, 10, 64); err == nil && e < end {
			end = e
		}
		start, status = s, http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, total))
	}
	body := content[start : end+1]
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Accept-Ranges", "bytes")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	if doCut && cut < int64(len(body)) {
		_, _ = w.Write(body[:cut])
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		// Aborting the handler makes the server drop the connection mid-body.
		panic(http.ErrAbortHandler)
	}
	if doStall && stall < int64(len(body)) {
		_, _ = w.Write(body[:stall])
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		<-r.Context().Done()
		return
	}
	_, _ = w.Write(body)
}
