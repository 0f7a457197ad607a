package hfhubtest

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// storagePrefix starts the CDN paths that play the LFS storage uploads go to.
const storagePrefix = "/upload/"

// storageSig is the "presigned" part of storage URLs; a request without it is refused.
const storageSig = "sig=upload"

// lfsMedia is the media type of the LFS batch API.
const lfsMedia = "application/vnd.git-lfs+json"

// defaultLFSThreshold is the size from which the fake stores a file as LFS whatever its
// name (the Hub's rule is its own; 10 MiB is what its .gitattributes convention implies).
const defaultLFSThreshold = 10 << 20

// lfsExtensions are stored as LFS at any size, as a new Hub repo's .gitattributes says.
var lfsExtensions = []string{".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".msgpack", ".zip", ".tar", ".gz"}

// CommittedFile is one file a commit added, as the test sees it.
type CommittedFile struct {
	// Path is the path in the repo.
	Path string
	// Size and SHA256 describe the content.
	Size   int64
	SHA256 string
	// LFS is true when the commit referenced an LFS object (lfsFile) rather than carrying
	// the content (file).
	LFS bool
}

// CommitRecord is one commit received through the commit API.
type CommitRecord struct {
	// Revision is the branch committed to and Commit the new commit's id.
	Revision, Commit string
	// Summary and Description are the commit header's.
	Summary, Description string
	// Files are the files added, in the order of the request.
	Files []CommittedFile
}

// uploads is the upload side's state; Hub.mu guards it.
type uploads struct {
	// The thresholds and chunk size: see Hub.SetUploadLimits.
	lfsThreshold, multipartThreshold, chunkSize int64
	writeToken                                  string
	stored                                      map[string][]byte         // sha256 -> LFS content
	expect                                      map[string]int64          // sha256 -> size announced in a batch
	parts                                       map[string]map[int][]byte // sha256 -> part -> bytes
	failPut, failPutCode                        int
	cutPut                                      int64 // bytes read of the next storage PUT before the connection drops; -1 none
}

func newUploads() uploads {
	return uploads{lfsThreshold: defaultLFSThreshold, stored: map[string][]byte{}, expect: map[string]int64{},
		parts: map[string]map[int][]byte{}, cutPut: -1}
}

// SetUploadLimits sets the size from which any file is stored as LFS (0: 10 MiB), and the
// size from which the LFS batch answers with a multipart transfer in parts of chunk bytes
// (0: never multipart).
func (h *Hub) SetUploadLimits(lfsThreshold, multipartThreshold, chunk int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if lfsThreshold <= 0 {
		lfsThreshold = defaultLFSThreshold
	}
	h.up.lfsThreshold, h.up.multipartThreshold, h.up.chunkSize = lfsThreshold, multipartThreshold, chunk
}

// RequireWriteToken makes the write endpoints accept only "Authorization: Bearer token":
// no token answers 401, another token 403. By default any token may write.
func (h *Hub) RequireWriteToken(token string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.up.writeToken = token
}

// FailStorage makes the next n requests to the LFS storage (uploads of whole objects or
// parts, and completions) answer status.
func (h *Hub) FailStorage(n, status int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.up.failPut, h.up.failPutCode = n, status
}

// CutUploadAfter makes the next PUT to the LFS storage read n bytes of its body and then
// drop the connection without an answer.
func (h *Hub) CutUploadAfter(n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.up.cutPut = n
}

// Commits returns the commits repoID received through the commit API, oldest first.
func (h *Hub) Commits(repoID string) []CommitRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r := h.repos[repoID]; r != nil {
		return append([]CommitRecord(nil), r.log...)
	}
	return nil
}

// Files returns the files of repoID at revision (a branch or commit), nil if unknown.
func (h *Hub) Files(repoID, revision string) map[string]File {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.repos[repoID]
	if r == nil {
		return nil
	}
	if c, ok := r.refs[revision]; ok {
		revision = c
	}
	out := map[string]File{}
	for k, v := range r.commits[revision] {
		out[k] = v
	}
	return out
}

// Private reports whether repoID was created private.
func (h *Hub) Private(repoID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.repos[repoID]
	return r != nil && r.private
}

// writeAuth checks the token of a write request, answering 401/403 itself.
func (h *Hub) writeAuth(w http.ResponseWriter, r *http.Request, repoID string) bool {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	h.mu.Lock()
	want := h.up.writeToken
	h.mu.Unlock()
	switch {
	case tok == "":
		hubError(w, http.StatusUnauthorized, "", "Invalid credentials in Authorization header", "")
		return false
	case want != "" && tok != want:
		hubError(w, http.StatusForbidden, "", "You don't have the rights to write to "+repoID, "")
		return false
	}
	return true
}

// serveUploadAPI routes the Hub's POST endpoints.
func (h *Hub) serveUploadAPI(w http.ResponseWriter, r *http.Request, p string) {
	if p == "/api/repos/create" {
		h.serveCreate(w, r)
		return
	}
	if rest, ok := strings.CutPrefix(p, "/api/models/"); ok {
		for _, op := range []string{"/preupload/", "/commit/"} {
			if before, rev, ok := strings.Cut(rest, op); ok {
				repoID, _ := url.PathUnescape(before)
				rev, _ = url.PathUnescape(rev)
				if op == "/preupload/" {
					h.servePreupload(w, r, repoID, rev)
				} else {
					h.serveCommit(w, r, repoID, rev)
				}
				return
			}
		}
	}
	for _, op := range []string{".git/info/lfs/objects/batch", ".git/info/lfs/objects/verify"} {
		if before, ok := strings.CutSuffix(p, "/"+op[len(".git/"):]); ok && strings.HasSuffix(before, ".git") {
			repoID, _ := url.PathUnescape(strings.TrimPrefix(strings.TrimSuffix(before, ".git"), "/"))
			if strings.HasSuffix(op, "batch") {
				h.serveBatch(w, r, repoID)
			} else {
				h.serveVerify(w, r, repoID)
			}
			return
		}
	}
	http.NotFound(w, r)
}

// badRequest answers 400 with the Hub's JSON error body.
func badRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// serveCreate answers POST /api/repos/create: 200 with the new repo's URL, 409 (with the
// URL too) when it exists. A new repo starts with one commit holding .gitattributes.
func (h *Hub) serveCreate(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name         string  `json:"name"`
		Organization *string `json:"organization"`
		Type         string  `json:"type"`
		Visibility   string  `json:"visibility"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Name == "" {
		badRequest(w, "bad create request")
		return
	}
	repoID := in.Name
	if in.Organization != nil && *in.Organization != "" {
		repoID = *in.Organization + "/" + in.Name
	}
	if !h.writeAuth(w, r, repoID) {
		return
	}
	u := h.URL + "/" + repoID
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.repos[repoID]; ok {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "You already created this model repo", "url": u})
		return
	}
	h.commitLocked(repoID, "main", map[string]File{".gitattributes": {Content: []byte("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")}})
	h.repos[repoID].private = in.Visibility == "private"
	writeJSON(w, http.StatusOK, map[string]string{"url": u})
}

// branchFiles returns the head commit and files of branch of a repo, answering the Hub's
// errors itself. The caller holds h.mu.
func (h *Hub) branchFiles(w http.ResponseWriter, repoID, branch string) (*repo, string, bool) {
	rp := h.repos[repoID]
	if rp == nil {
		hubError(w, http.StatusNotFound, "RepoNotFound", "Repository not found", "")
		return nil, "", false
	}
	head, ok := rp.refs[branch]
	if !ok {
		hubError(w, http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+branch, "")
		return nil, "", false
	}
	return rp, head, true
}

// isLFS is the fake's rule for storing a file as LFS.
func (u *uploads) isLFS(p string, size int64) bool {
	if size == 0 {
		return false
	}
	if size >= u.lfsThreshold {
		return true
	}
	for _, ext := range lfsExtensions {
		if strings.HasSuffix(p, ext) {
			return true
		}
	}
	return false
}

// servePreupload answers POST /api/models/{repo}/preupload/{rev}.
func (h *Hub) servePreupload(w http.ResponseWriter, r *http.Request, repoID, rev string) {
	if !h.writeAuth(w, r, repoID) {
		return
	}
	var in struct {
		Files []struct {
			Path   string `json:"path"`
			Sample string `json:"sample"`
			Size   int64  `json:"size"`
		} `json:"files"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		badRequest(w, "bad preupload request: "+err.Error())
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	rp, head, ok := h.branchFiles(w, repoID, rev)
	if !ok {
		return
	}
	type ans struct {
		Path         string `json:"path"`
		UploadMode   string `json:"uploadMode"`
		ShouldIgnore bool   `json:"shouldIgnore"`
		OID          string `json:"oid,omitempty"`
	}
	out := []ans{}
	for _, f := range in.Files {
		if _, err := base64.StdEncoding.DecodeString(f.Sample); err != nil {
			badRequest(w, "sample of "+f.Path+" is not base64")
			return
		}
		a := ans{Path: f.Path, UploadMode: "regular"}
		if h.up.isLFS(f.Path, f.Size) {
			a.UploadMode = "lfs"
		}
		if old, ok := rp.commits[head][f.Path]; ok {
			a.OID = old.Etag()
		}
		out = append(out, a)
	}
	writeJSON(w, http.StatusOK, map[string]any{"files": out, "commitOid": head})
}

// serveBatch answers POST /{repo}.git/info/lfs/objects/batch for uploads: a stored object
// needs no action; others get a basic or (from the multipart threshold) a multipart
// upload action on the storage, and a verify action.
func (h *Hub) serveBatch(w http.ResponseWriter, r *http.Request, repoID string) {
	if r.Header.Get("Accept") != lfsMedia || r.Header.Get("Content-Type") != lfsMedia {
		badRequest(w, "want Accept and Content-Type "+lfsMedia)
		return
	}
	if !h.writeAuth(w, r, repoID) {
		return
	}
	var in struct {
		Operation string   `json:"operation"`
		Transfers []string `json:"transfers"`
		HashAlgo  string   `json:"hash_algo"`
		Objects   []struct {
			OID  string `json:"oid"`
			Size int64  `json:"size"`
		} `json:"objects"`
		Ref struct {
			Name string `json:"name"`
		} `json:"ref"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Operation != "upload" || in.HashAlgo != "sha256" {
		badRequest(w, "want an upload batch with hash_algo sha256")
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.repos[repoID] == nil {
		hubError(w, http.StatusNotFound, "RepoNotFound", "Repository not found", "")
		return
	}
	verify := map[string]any{"href": h.URL + "/" + repoID + ".git/info/lfs/objects/verify"}
	var objs []map[string]any
	for _, o := range in.Objects {
		obj := map[string]any{"oid": o.OID, "size": o.Size}
		if len(o.OID) != 64 {
			obj["error"] = map[string]any{"code": 422, "message": "oid is not a sha256"}
			objs = append(objs, obj)
			continue
		}
		if b, ok := h.up.stored[o.OID]; ok && int64(len(b)) == o.Size {
			objs = append(objs, obj) // no actions: already stored
			continue
		}
		h.up.expect[o.OID] = o.Size
		base := h.CDNURL + storagePrefix + o.OID
		upload := map[string]any{"href": base + "?" + storageSig}
		if h.up.multipartThreshold > 0 && o.Size >= h.up.multipartThreshold {
			chunk := h.up.chunkSize
			if chunk <= 0 {
				chunk = 1 << 20
			}
			hdr := map[string]any{"chunk_size": strconv.FormatInt(chunk, 10)}
			for i := int64(1); (i-1)*chunk < o.Size; i++ {
				hdr[strconv.FormatInt(i, 10)] = fmt.Sprintf("%s/%d?%s", base, i, storageSig)
			}
			upload = map[string]any{"href": base + "/complete?" + storageSig, "header": hdr}
			h.up.parts[o.OID] = map[int][]byte{}
		}
		obj["actions"] = map[string]any{"upload": upload, "verify": verify}
		objs = append(objs, obj)
	}
	w.Header().Set("Content-Type", lfsMedia)
	_ = json.NewEncoder(w).Encode(map[string]any{"transfer": "basic", "objects": objs})
}

// serveVerify answers POST /{repo}.git/info/lfs/objects/verify: 200 when the object is
// stored with that size, 404 otherwise.
func (h *Hub) serveVerify(w http.ResponseWriter, r *http.Request, repoID string) {
	if !h.writeAuth(w, r, repoID) {
		return
	}
	var in struct {
		OID  string `json:"oid"`
		Size int64  `json:"size"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		badRequest(w, "bad verify request")
		return
	}
	h.mu.Lock()
	b, ok := h.up.stored[in.OID]
	h.mu.Unlock()
	if !ok || int64(len(b)) != in.Size {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "object " + in.OID + " not stored"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "ok"})
}

// serveStorage plays the LFS storage: PUT /upload/{oid} (a whole object), PUT
// /upload/{oid}/{n} (part n, answered with an ETag) and POST /upload/{oid}/complete. It
// refuses requests carrying a token (presigned URLs need none, and a token must not leak
// there) and checks sha256 and size before storing.
func (h *Hub) serveStorage(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "" {
		http.Error(w, "storage URLs are presigned: no Authorization header", http.StatusBadRequest)
		return
	}
	if r.URL.RawQuery != storageSig {
		http.Error(w, "bad signature", http.StatusForbidden)
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, storagePrefix)
	oid, sub, _ := strings.Cut(rest, "/")
	h.mu.Lock()
	fail, code := h.up.failPut, h.up.failPutCode
	if fail > 0 {
		h.up.failPut--
	}
	cut := int64(-1)
	if r.Method == http.MethodPut {
		cut, h.up.cutPut = h.up.cutPut, -1
	}
	want, known := h.up.expect[oid]
	h.mu.Unlock()
	if fail > 0 {
		http.Error(w, http.StatusText(code), code)
		return
	}
	if !known {
		http.Error(w, "no batch announced "+oid, http.StatusNotFound)
		return
	}
	if cut >= 0 {
		_, _ = io.CopyN(io.Discard, r.Body, cut)
		// Aborting the handler drops the connection before any answer.
		panic(http.ErrAbortHandler)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch {
	case r.Method == http.MethodPut && sub == "":
		if err := checkObject(oid, want, body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.up.stored[oid] = body
		h.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodPut:
		n, err := strconv.Atoi(sub)
		h.mu.Lock()
		parts := h.up.parts[oid]
		if err == nil && parts != nil {
			parts[n] = body
		}
		h.mu.Unlock()
		if err != nil || parts == nil {
			http.Error(w, "no multipart upload for "+rest, http.StatusNotFound)
			return
		}
		w.Header().Set("ETag", partETag(body))
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodPost && sub == "complete":
		h.completeMultipart(w, r, oid, want, body)
	default:
		http.NotFound(w, r)
	}
}

// partETag is the ETag the storage gives a part (quoted, as S3 does).
func partETag(b []byte) string {
	s := sha1.Sum(b)
	return `"` + hex.EncodeToString(s[:]) + `"`
}

func checkObject(oid string, size int64, b []byte) error {
	s := sha256.Sum256(b)
	if got := hex.EncodeToString(s[:]); got != oid || int64(len(b)) != size {
		return fmt.Errorf("content is %d bytes with sha256 %s, announced %d bytes with %s", len(b), got, size, oid)
	}
	return nil
}

// completeMultipart joins the parts the completion request lists, checking each ETag.
func (h *Hub) completeMultipart(w http.ResponseWriter, r *http.Request, oid string, size int64, body []byte) {
	if r.Header.Get("Content-Type") != lfsMedia {
		http.Error(w, "want Content-Type "+lfsMedia, http.StatusBadRequest)
		return
	}
	var in struct {
		OID   string `json:"oid"`
		Parts []struct {
			PartNumber int    `json:"partNumber"`
			ETag       string `json:"etag"`
		} `json:"parts"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.OID != oid {
		http.Error(w, "bad completion request", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	parts := h.up.parts[oid]
	var all bytes.Buffer
	for i, p := range in.Parts {
		b, ok := parts[p.PartNumber]
		if p.PartNumber != i+1 || !ok || partETag(b) != p.ETag {
			http.Error(w, fmt.Sprintf("part %d: missing, out of order or wrong ETag %s", p.PartNumber, p.ETag), http.StatusBadRequest)
			return
		}
		all.Write(b)
	}
	if err := checkObject(oid, size, all.Bytes()); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.up.stored[oid] = all.Bytes()
	delete(h.up.parts, oid)
	w.WriteHeader(http.StatusOK)
}

// serveCommit answers POST /api/models/{repo}/commit/{rev}: an NDJSON body of a header
// line and file, lfsFile, deletedFile and deletedFolder lines; it makes a commit on the
// branch and moves the branch to it.
func (h *Hub) serveCommit(w http.ResponseWriter, r *http.Request, repoID, rev string) {
	if r.Header.Get("Content-Type") != "application/x-ndjson" {
		badRequest(w, "want Content-Type application/x-ndjson")
		return
	}
	if !h.writeAuth(w, r, repoID) {
		return
	}
	type line struct {
		Key   string `json:"key"`
		Value struct {
			Summary     string `json:"summary"`
			Description string `json:"description"`
			Path        string `json:"path"`
			Content     string `json:"content"`
			Encoding    string `json:"encoding"`
			Algo        string `json:"algo"`
			OID         string `json:"oid"`
			Size        int64  `json:"size"`
		} `json:"value"`
	}
	var lines []line
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			badRequest(w, "bad NDJSON line: "+err.Error())
			return
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		badRequest(w, "reading the commit: "+err.Error())
		return
	}
	if len(lines) == 0 || lines[0].Key != "header" || lines[0].Value.Summary == "" {
		badRequest(w, "the first line must be a header with a summary")
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	rp, head, ok := h.branchFiles(w, repoID, rev)
	if !ok {
		return
	}
	files := map[string]File{}
	for k, v := range rp.commits[head] {
		files[k] = v
	}
	rec := CommitRecord{Revision: rev, Summary: lines[0].Value.Summary, Description: lines[0].Value.Description}
	for _, l := range lines[1:] {
		v := l.Value
		if v.Path == "" || path.Clean(v.Path) != v.Path || strings.HasPrefix(v.Path, "/") {
			badRequest(w, "bad path "+strconv.Quote(v.Path))
			return
		}
		switch l.Key {
		case "file":
			b, err := base64.StdEncoding.DecodeString(v.Content)
			if err != nil || v.Encoding != "base64" {
				badRequest(w, "file "+v.Path+" is not base64")
				return
			}
			files[v.Path] = File{Content: b}
			s := sha256.Sum256(b)
			rec.Files = append(rec.Files, CommittedFile{Path: v.Path, Size: int64(len(b)), SHA256: hex.EncodeToString(s[:])})
		case "lfsFile":
			b, ok := h.up.stored[v.OID]
			if !ok || v.Algo != "sha256" || int64(len(b)) != v.Size {
				badRequest(w, "LFS object "+v.OID+" of "+v.Path+" was not uploaded")
				return
			}
			files[v.Path] = File{Content: b, LFS: true}
			rec.Files = append(rec.Files, CommittedFile{Path: v.Path, Size: v.Size, SHA256: v.OID, LFS: true})
		case "deletedFile":
			delete(files, v.Path)
		case "deletedFolder":
			for k := range files {
				if strings.HasPrefix(k, strings.TrimSuffix(v.Path, "/")+"/") {
					delete(files, k)
				}
			}
		default:
			badRequest(w, "unknown line key "+l.Key)
			return
		}
	}
	rec.Commit = h.commitLocked(repoID, rev, files)
	rp.log = append(rp.log, rec)
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "commitOid": rec.Commit,
		"commitUrl": h.URL + "/" + repoID + "/commit/" + rec.Commit, "hookOutput": ""})
}
