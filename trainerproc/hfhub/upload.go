package hfhub

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// ErrUpload means the Hub answered an upload step in a way the protocol does not allow (an
// LFS batch error, a multipart answer with the wrong number of parts, a part without an
// ETag, a commit answer without a commit), or a local file changed while it was uploaded.
// Retrying the same request would not help.
var ErrUpload = errors.New("hfhub: upload failed")

// UploadFile is one local file of a commit and the path it gets in the repo.
type UploadFile struct {
	// Local is the file on disk; it is read as a stream, never whole into memory.
	Local string
	// Path is its path in the repo, slash-separated ("transformer/config.json").
	Path string
}

// CommitOptions say where a commit goes and what it is called.
type CommitOptions struct {
	// Revision is the branch committed to; "" means main.
	Revision string
	// Message is the commit's summary (its first line on the Hub); required.
	Message string
	// Description is the commit's longer text, may be empty.
	Description string
	// OnProgress, when set, is called as the bytes of LFS files are sent (File is the path
	// in the repo), and once per regular file when the commit carrying it succeeded.
	// Several LFS files are sent at once, so calls for different files may overlap.
	OnProgress func(Progress)
}

// CommitInfo is the Hub's answer to a commit.
type CommitInfo struct {
	// Commit is the new commit; when every file was already in the repo with the same
	// content no commit is made and Commit is the branch's head.
	Commit string
	// URL is the commit's page ("" when no commit was made).
	URL string
	// Committed are the repo paths the commit changed, LFS those of them stored as LFS
	// objects; unchanged files are in neither.
	Committed, LFS []string
}

// Limits of the Hub's API, as huggingface_hub batches its requests.
const (
	preuploadBatch = 256
	lfsBatch       = 256
	sampleSize     = 512
	lfsMediaType   = "application/vnd.git-lfs+json"
)

// upload modes of a preupload answer.
const (
	modeLFS     = "lfs"
	modeRegular = "regular"
)

// commitFile is one file of a commit as the steps learn about it.
type commitFile struct {
	UploadFile
	size   int64
	sample []byte
	mode   string // modeLFS or modeRegular, the Hub's choice
	ignore bool   // the repo's .gitignore excludes it
	oid    string // the content's sha256 (lfs) or git blob sha1 (regular)
	remote string // the oid the Hub has at that path, if any
}

// CreateRepo creates the model repo repoID (public unless private) and returns its URL.
// A repo that already exists is fine (huggingface_hub's exist_ok), as is a token that may
// not create repos in the namespace but can read the existing repo (it may still be
// allowed to write to it).
func (c *Client) CreateRepo(ctx context.Context, repoID string, private bool) (string, error) {
	if err := ValidateRepoID(repoID); err != nil {
		return "", err
	}
	if c.Config.Offline {
		return "", fmt.Errorf("%w: cannot create %s (unset HF_HUB_OFFLINE to upload)", ErrOffline, repoID)
	}
	body := map[string]any{"name": repoID, "organization": nil, "type": "model"}
	if org, name, ok := strings.Cut(repoID, "/"); ok {
		body["organization"], body["name"] = org, name
	}
	if private {
		body["visibility"] = "private"
	}
	u := c.Config.Endpoint + "/api/repos/create"
	var out struct {
		URL string `json:"url"`
	}
	err := c.retrying(ctx, func() error {
		out.URL = ""
		err := c.sendJSON(ctx, http.MethodPost, u, repoID, "application/json", body, &out, true)
		var he *HubError
		if errors.As(err, &he) && he.Status == http.StatusConflict {
			if strings.Contains(he.Message, "conflicting operation in progress") {
				// Another create on the same repo is running: the Hub asks to try again.
				return &HubError{Kind: ErrHTTP, Status: http.StatusServiceUnavailable, Message: he.Message, URL: u, Repo: repoID,
					Endpoint: c.Config.Endpoint, TokenSent: he.TokenSent, Write: true}
			}
			return nil // exists already
		}
		return err
	})
	var he *HubError
	if errors.As(err, &he) && (he.Status == http.StatusUnauthorized || he.Status == http.StatusForbidden || he.Status == http.StatusPaymentRequired) {
		// Not allowed to create in that namespace: fine if the repo is already there.
		if _, _, ierr := c.info(ctx, repoID, "main"); ierr == nil {
			return c.Config.Endpoint + "/" + repoID, nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("creating Hub repo %s: %w", repoID, err)
	}
	if out.URL == "" || strings.HasPrefix(out.URL, DefaultEndpoint+"/") {
		out.URL = c.Config.Endpoint + "/" + repoID
	}
	return out.URL, nil
}

// FolderFiles lists the regular files under dir as upload files placed under prefix in
// the repo ("" for its root), sorted by path, leaving out .git and .cache folders (the
// Hub refuses those path segments; huggingface_hub's upload_folder skips .git and
// .cache/huggingface). Symbolic links are followed, to files
// and to folders (a saved pipeline may link its unchanged components to the base model's
// cache); a link back to a folder being listed is an error rather than a loop.
func FolderFiles(dir, prefix string) ([]UploadFile, error) {
	var out []UploadFile
	var walk func(p, rel string, open map[string]bool) error
	walk = func(p, rel string, open map[string]bool) error {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return err
		}
		if open[real] {
			return fmt.Errorf("%s links back to %s", p, real)
		}
		open[real] = true
		defer delete(open, real)
		entries, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		for _, e := range entries {
			child, childRel := filepath.Join(p, e.Name()), path.Join(rel, e.Name())
			st, err := os.Stat(child)
			if err != nil {
				return err
			}
			switch {
			case st.IsDir():
				if e.Name() == ".git" || e.Name() == ".cache" {
					continue // the Hub refuses these path segments
				}
				if err := walk(child, childRel, open); err != nil {
					return err
				}
			case st.Mode().IsRegular():
				out = append(out, UploadFile{Local: child, Path: path.Join(prefix, childRel)})
			}
		}
		return nil
	}
	if err := walk(dir, "", map[string]bool{}); err != nil {
		return nil, fmt.Errorf("hfhub: listing %s for upload: %w", dir, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// cleanRepoPath checks and normalises a path in the repo as huggingface_hub does: a
// leading "/" or "./" is dropped; ".", ".." and any ".git" or ".cache" segment are refused.
func cleanRepoPath(p string) (string, error) {
	p = strings.TrimPrefix(strings.TrimPrefix(filepath.ToSlash(p), "/"), "./")
	if p == "" || p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("%w: path in repo %q", ErrInvalidName, p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".git" || seg == ".cache" || seg == ".." || seg == "" {
			return "", fmt.Errorf("%w: path in repo %q (no empty, .., .git or .cache part)", ErrInvalidName, p)
		}
	}
	return p, nil
}

// Commit uploads files into repoID at opts.Revision in one commit, through the Hub's
// commit API: the Hub decides per file whether it is a regular or an LFS file (preupload);
// LFS content is sent to the storage the LFS batch answer names (one PUT, or multipart
// when the answer says so), verified, then the commit references it by sha256; regular
// files travel inside the commit. Files the repo already holds with the same content are
// left out. Files are hashed and sent as streams, so their size is bounded by the disk,
// not memory. Each step is retried on network failures and "later" answers (408, 429,
// 5xx) with the download's backoff; ctx cancels everything.
func (c *Client) Commit(ctx context.Context, repoID string, files []UploadFile, opts CommitOptions) (CommitInfo, error) {
	rev := opts.Revision
	if rev == "" {
		rev = "main"
	}
	if err := ValidateRepoID(repoID); err != nil {
		return CommitInfo{}, err
	}
	if err := validateRevision(rev); err != nil {
		return CommitInfo{}, err
	}
	if strings.TrimSpace(opts.Message) == "" {
		return CommitInfo{}, fmt.Errorf("%w: a commit needs a message", ErrInvalidName)
	}
	if c.Config.Offline {
		return CommitInfo{}, fmt.Errorf("%w: cannot upload to %s (unset HF_HUB_OFFLINE to upload)", ErrOffline, repoID)
	}
	cfs := make([]*commitFile, 0, len(files))
	seen := map[string]bool{}
	for _, f := range files {
		p, err := cleanRepoPath(f.Path)
		if err != nil {
			return CommitInfo{}, err
		}
		if seen[p] {
			return CommitInfo{}, fmt.Errorf("%w: %s is twice in one commit", ErrInvalidName, p)
		}
		seen[p] = true
		cf := &commitFile{UploadFile: UploadFile{Local: f.Local, Path: p}}
		if err := cf.readSample(); err != nil {
			return CommitInfo{}, err
		}
		cfs = append(cfs, cf)
	}
	head, err := c.preupload(ctx, repoID, rev, cfs)
	if err != nil {
		return CommitInfo{}, err
	}
	var todo []*commitFile
	for _, cf := range cfs {
		if cf.ignore {
			continue
		}
		if err := cf.hash(); err != nil {
			return CommitInfo{}, err
		}
		if cf.remote != "" && strings.EqualFold(cf.remote, cf.oid) {
			continue // unchanged: committing it again would be an empty change
		}
		todo = append(todo, cf)
	}
	if len(todo) == 0 {
		if !IsCommit(head) {
			if head, _, err = c.info(ctx, repoID, rev); err != nil {
				return CommitInfo{}, err
			}
		}
		return CommitInfo{Commit: head}, nil
	}
	if err := c.uploadLFS(ctx, repoID, rev, todo, opts.OnProgress); err != nil {
		return CommitInfo{}, err
	}
	info, err := c.commit(ctx, repoID, rev, todo, opts)
	if err != nil {
		return CommitInfo{}, err
	}
	for _, cf := range todo {
		info.Committed = append(info.Committed, cf.Path)
		if cf.mode == modeLFS {
			info.LFS = append(info.LFS, cf.Path)
		} else if opts.OnProgress != nil {
			opts.OnProgress(Progress{Repo: repoID, File: cf.Path, Done: cf.size, Total: cf.size})
		}
	}
	return info, nil
}

// readSample records the file's size and first bytes, which the preupload step needs.
func (cf *commitFile) readSample() error {
	f, err := os.Open(cf.Local)
	if err != nil {
		return fmt.Errorf("hfhub: upload of %s: %w", cf.Path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("hfhub: upload of %s: %w", cf.Path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file", ErrInvalidName, cf.Local)
	}
	cf.size = st.Size()
	buf := make([]byte, sampleSize)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("hfhub: upload of %s: %w", cf.Path, err)
	}
	cf.sample = buf[:n]
	return nil
}

// hash computes the oid the Hub knows the content by: sha256 for an LFS file, the git
// blob sha1 for a regular one. It reads the file as a stream.
func (cf *commitFile) hash() error {
	f, err := os.Open(cf.Local)
	if err != nil {
		return fmt.Errorf("hfhub: upload of %s: %w", cf.Path, err)
	}
	defer f.Close()
	h := sha256.New()
	if cf.mode == modeRegular {
		h = sha1.New()
		fmt.Fprintf(h, "blob %d\x00", cf.size)
	}
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("hfhub: upload of %s: %w", cf.Path, err)
	}
	if n != cf.size {
		return fmt.Errorf("%w: %s changed while it was being uploaded (%d bytes, then %d)", ErrUpload, cf.Local, cf.size, n)
	}
	cf.oid = hex.EncodeToString(h.Sum(nil))
	return nil
}

// retrying runs fn, and again after the backoff while it fails transiently, up to
// ResumeAttempts retries (huggingface_hub's http_backoff does five).
func (c *Client) retrying(ctx context.Context, fn func() error) error {
	err := fn()
	for attempt := 1; err != nil && attempt <= c.ResumeAttempts && transient(err) && ctx.Err() == nil; attempt++ {
		if werr := c.wait(ctx, attempt, err); werr != nil {
			return fmt.Errorf("%w (after %w)", werr, err)
		}
		err = fn()
	}
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return err
}

// writeError classifies an error answer to an upload request; the Hub often explains
// itself only in the JSON body, which becomes the message.
func (c *Client) writeError(resp *http.Response, repoID, u string, tokenSent bool) error {
	var he *HubError
	if !errors.As(c.hubError(resp, repoID, u, tokenSent), &he) {
		return fmt.Errorf("%w: HTTP %d for %s", ErrHTTP, resp.StatusCode, u)
	}
	he.Write = true
	if he.Message == "" {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		var m struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &m) == nil && m.Error != "" {
			he.Message = m.Error
		} else {
			he.Message = strings.TrimSpace(string(b))
		}
	}
	if errors.Is(he.Kind, ErrEntryNotFound) && he.Code == "" {
		// A bare 404 from an API endpoint is about the repo, not a file.
		he.Kind = ErrRepoNotFound
	}
	return he
}

// sendJSON sends in as JSON with contentType to u and decodes a 2xx answer into out
// (when not nil); auth adds the token and the Hub's user agent.
func (c *Client) sendJSON(ctx context.Context, method, u, repoID, contentType string, in, out any, auth bool) error {
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("hfhub: %w", err)
	}
	var req *http.Request
	if auth {
		req, err = c.newRequestBody(ctx, method, u, bytes.NewReader(b), true)
	} else {
		// Storage URLs are presigned: they get no token and no Hub headers.
		req, err = http.NewRequestWithContext(ctx, method, u, bytes.NewReader(b))
	}
	if err != nil {
		return fmt.Errorf("hfhub: %s %s: %w", method, u, err)
	}
	req.Header.Set("Content-Type", contentType)
	if contentType == lfsMediaType {
		req.Header.Set("Accept", lfsMediaType)
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return fmt.Errorf("hfhub: %s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.writeError(resp, repoID, u, auth && c.Config.Token != "")
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%w: answer of %s: %w", ErrUpload, u, err)
	}
	return nil
}

// apiURL is {endpoint}/api/models/{repo}/{op}/{revision}.
func (c *Client) apiURL(repoID, op, rev string) string {
	return c.Config.Endpoint + "/api/models/" + repoID + "/" + op + "/" + url.PathEscape(rev)
}

// preupload asks the Hub, 256 files at a time, how each file is to be stored and what it
// already holds at each path. It returns the branch's head commit when the Hub says.
func (c *Client) preupload(ctx context.Context, repoID, rev string, cfs []*commitFile) (string, error) {
	type reqFile struct {
		Path   string `json:"path"`
		Sample string `json:"sample"`
		Size   int64  `json:"size"`
	}
	type ansFile struct {
		Path         string `json:"path"`
		UploadMode   string `json:"uploadMode"`
		ShouldIgnore *bool  `json:"shouldIgnore"`
		OID          string `json:"oid"`
	}
	var head string
	u := c.apiURL(repoID, "preupload", rev)
	for start := 0; start < len(cfs); start += preuploadBatch {
		chunk := cfs[start:min(start+preuploadBatch, len(cfs))]
		byPath := map[string]*commitFile{}
		in := struct {
			Files []reqFile `json:"files"`
		}{}
		for _, cf := range chunk {
			byPath[cf.Path] = cf
			in.Files = append(in.Files, reqFile{Path: cf.Path, Sample: base64.StdEncoding.EncodeToString(cf.sample), Size: cf.size})
		}
		var out struct {
			Files     []ansFile `json:"files"`
			CommitOid string    `json:"commitOid"`
		}
		if err := c.retrying(ctx, func() error {
			return c.sendJSON(ctx, http.MethodPost, u, repoID, "application/json", in, &out, true)
		}); err != nil {
			return "", fmt.Errorf("uploading to %s: %w", repoID, err)
		}
		for _, a := range out.Files {
			cf := byPath[a.Path]
			if cf == nil || (a.UploadMode != modeLFS && a.UploadMode != modeRegular) || a.ShouldIgnore == nil {
				return "", fmt.Errorf("%w: preupload answer for %q (mode %q) from %s", ErrUpload, a.Path, a.UploadMode, u)
			}
			cf.mode, cf.ignore, cf.remote = a.UploadMode, *a.ShouldIgnore, a.OID
			if cf.size == 0 {
				cf.mode = modeRegular // an empty file cannot be an LFS object
			}
		}
		for _, cf := range chunk {
			if cf.mode == "" {
				return "", fmt.Errorf("%w: preupload answer from %s says nothing about %s", ErrUpload, u, cf.Path)
			}
		}
		head = out.CommitOid
	}
	return head, nil
}

// lfsAction is one action of an LFS batch answer.
type lfsAction struct {
	Href   string         `json:"href"`
	Header map[string]any `json:"header"`
}

// lfsObject is one object of an LFS batch answer.
type lfsObject struct {
	OID     string `json:"oid"`
	Size    int64  `json:"size"`
	Actions *struct {
		Upload *lfsAction `json:"upload"`
		Verify *lfsAction `json:"verify"`
	} `json:"actions"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// uploadLFS sends the content of the LFS files among cfs to the Hub's LFS storage: one
// batch request per 256 objects says, per object, whether it is stored already and where
// and how to send it. Files with equal content are sent once; several are sent at once.
func (c *Client) uploadLFS(ctx context.Context, repoID, rev string, cfs []*commitFile, progress func(Progress)) error {
	byOID := map[string]*commitFile{}
	var objs []*commitFile
	for _, cf := range cfs {
		if cf.mode != modeLFS || byOID[cf.oid] != nil {
			continue
		}
		byOID[cf.oid] = cf
		objs = append(objs, cf)
	}
	u := c.Config.Endpoint + "/" + repoID + ".git/info/lfs/objects/batch"
	for start := 0; start < len(objs); start += lfsBatch {
		chunk := objs[start:min(start+lfsBatch, len(objs))]
		type obj struct {
			OID  string `json:"oid"`
			Size int64  `json:"size"`
		}
		in := map[string]any{"operation": "upload", "transfers": []string{"basic", "multipart"},
			"hash_algo": "sha256", "ref": map[string]string{"name": rev}}
		list := make([]obj, 0, len(chunk))
		for _, cf := range chunk {
			list = append(list, obj{cf.oid, cf.size})
		}
		in["objects"] = list
		var out struct {
			Objects []lfsObject `json:"objects"`
		}
		if err := c.retrying(ctx, func() error {
			return c.sendJSON(ctx, http.MethodPost, u, repoID, lfsMediaType, in, &out, true)
		}); err != nil {
			return fmt.Errorf("uploading to %s: %w", repoID, err)
		}
		if out.Objects == nil {
			return fmt.Errorf("%w: LFS batch answer from %s has no objects", ErrUpload, u)
		}
		var todo []lfsTransfer
		for _, o := range out.Objects {
			cf := byOID[o.OID]
			switch {
			case cf == nil:
				return fmt.Errorf("%w: LFS batch answer from %s names unknown object %s", ErrUpload, u, o.OID)
			case o.Error != nil:
				return fmt.Errorf("%w: LFS batch refused %s (%s): %d %s", ErrUpload, cf.Path, o.OID, o.Error.Code, o.Error.Message)
			case o.Actions == nil || o.Actions.Upload == nil:
				continue // stored already
			}
			todo = append(todo, lfsTransfer{cf, o.Actions.Upload, o.Actions.Verify})
		}
		if err := c.transferAll(ctx, repoID, todo, progress); err != nil {
			return err
		}
	}
	return nil
}

// lfsTransfer is one object to send and the actions the batch answer gave for it.
type lfsTransfer struct {
	cf             *commitFile
	upload, verify *lfsAction
}

// uploadWorkers is how many LFS objects are sent at once, as huggingface_hub does.
const uploadWorkers = 5

// transferAll sends and verifies the objects, uploadWorkers at a time; the first failure
// stops the others and is returned.
func (c *Client) transferAll(ctx context.Context, repoID string, todo []lfsTransfer, progress func(Progress)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, uploadWorkers)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error // the first failure; once guards it
	)
	for _, tr := range todo {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			if err := c.transfer1(ctx, repoID, tr, progress); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// transfer1 sends one object and has the Hub verify it.
func (c *Client) transfer1(ctx context.Context, repoID string, tr lfsTransfer, progress func(Progress)) error {
	cf := tr.cf
	if err := c.sendObject(ctx, repoID, cf, tr.upload, progress); err != nil {
		return fmt.Errorf("uploading %s to %s: %w", cf.Path, repoID, err)
	}
	if v := tr.verify; v != nil {
		body := map[string]any{"oid": cf.oid, "size": cf.size}
		if err := c.retrying(ctx, func() error {
			return c.sendJSON(ctx, http.MethodPost, c.hubURL(v.Href), repoID, lfsMediaType, body, nil, true)
		}); err != nil {
			return fmt.Errorf("verifying the upload of %s to %s: %w", cf.Path, repoID, err)
		}
	}
	return nil
}

// hubURL rewrites an href on the public Hub to the configured endpoint, as
// huggingface_hub does, so a mirror or test Hub is not bypassed.
func (c *Client) hubURL(href string) string {
	if rest, ok := strings.CutPrefix(href, DefaultEndpoint); ok && (rest == "" || rest[0] == '/') {
		return c.Config.Endpoint + rest
	}
	return href
}

// sendObject sends one LFS object as the batch answer asks: a single PUT, or, when the
// upload header carries a chunk_size, one PUT per part to the numbered URLs and a
// completion request listing the parts' ETags.
func (c *Client) sendObject(ctx context.Context, repoID string, cf *commitFile, up *lfsAction, progress func(Progress)) error {
	f, err := os.Open(cf.Local)
	if err != nil {
		return fmt.Errorf("hfhub: %w", err)
	}
	defer f.Close()
	report := func(done int64) {
		if progress != nil {
			progress(Progress{Repo: repoID, File: cf.Path, Done: done, Total: cf.size})
		}
	}
	report(0)
	cs, multipart := up.Header["chunk_size"]
	if !multipart {
		_, err := c.putPart(ctx, repoID, c.hubURL(up.Href), f, 0, cf.size, report)
		return err
	}
	chunk, err := int64(0), error(nil)
	switch v := cs.(type) { // a string in the Hub's answers; a JSON number is accepted too
	case string:
		chunk, err = strconv.ParseInt(v, 10, 64)
	case float64:
		chunk = int64(v)
		if float64(chunk) != v {
			err = ErrUpload
		}
	default:
		err = ErrUpload
	}
	if err != nil || chunk <= 0 {
		return fmt.Errorf("%w: multipart chunk_size %v for %s", ErrUpload, cs, cf.Path)
	}
	var nums []int
	for k := range up.Header {
		if n, err := strconv.Atoi(k); err == nil {
			nums = append(nums, n)
		}
	}
	sort.Ints(nums)
	if want := (cf.size + chunk - 1) / chunk; int64(len(nums)) != want {
		return fmt.Errorf("%w: the Hub offered %d part URLs for %s, %d bytes in parts of %d need %d", ErrUpload, len(nums), cf.Path, cf.size, chunk, want)
	}
	type part struct {
		PartNumber int    `json:"partNumber"`
		ETag       string `json:"etag"`
	}
	parts := make([]part, 0, len(nums))
	for i, n := range nums {
		off := int64(i) * chunk
		partURL, _ := up.Header[strconv.Itoa(n)].(string)
		if partURL == "" {
			return fmt.Errorf("%w: part %d of %s has no URL", ErrUpload, n, cf.Path)
		}
		etag, err := c.putPart(ctx, repoID, partURL, f, off, min(chunk, cf.size-off), func(d int64) { report(off + d) })
		if err != nil {
			return fmt.Errorf("part %d of %d: %w", n, len(nums), err)
		}
		if etag == "" {
			return fmt.Errorf("%w: the storage answered part %d of %s without an ETag", ErrUpload, n, cf.Path)
		}
		parts = append(parts, part{n, etag})
	}
	body := map[string]any{"oid": cf.oid, "parts": parts}
	return c.retrying(ctx, func() error {
		return c.sendJSON(ctx, http.MethodPost, c.hubURL(up.Href), repoID, lfsMediaType, body, nil, false)
	})
}

// putPart PUTs size bytes of f from off to u (a presigned storage URL: no token, no Hub
// headers), retrying from the start of the part, and returns the answer's ETag.
func (c *Client) putPart(ctx context.Context, repoID, u string, f *os.File, off, size int64, report func(int64)) (string, error) {
	var etag string
	err := c.retrying(ctx, func() error {
		body := &countingReader{r: io.NewSectionReader(f, off, size), report: report}
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, body)
		if err != nil {
			return fmt.Errorf("hfhub: PUT %s: %w", u, err)
		}
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
		}
		resp, err := c.client().Do(req)
		if err != nil {
			return fmt.Errorf("hfhub: PUT %s: %w", u, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return c.writeError(resp, repoID, u, false)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		etag = resp.Header.Get("ETag")
		return nil
	})
	return etag, err
}

// countingReader reports how many bytes were read through it.
type countingReader struct {
	r      io.Reader
	n      int64
	report func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.n += int64(n)
		if c.report != nil {
			c.report(c.n)
		}
	}
	return n, err
}

// commit posts the commit as NDJSON: a header line, then one line per file: regular files
// inline (base64, streamed from disk), LFS files by sha256 and size.
func (c *Client) commit(ctx context.Context, repoID, rev string, cfs []*commitFile, opts CommitOptions) (CommitInfo, error) {
	u := c.apiURL(repoID, "commit", rev)
	var out struct {
		CommitOid string `json:"commitOid"`
		CommitURL string `json:"commitUrl"`
	}
	err := c.retrying(ctx, func() error {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeCommitBody(pw, cfs, opts)) }()
		req, err := c.newRequestBody(ctx, http.MethodPost, u, pr, true)
		if err != nil {
			pr.Close()
			return err
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := c.client().Do(req)
		pr.CloseWithError(errors.New("request done")) // stops the writer if the Hub answered early
		if err != nil {
			if errors.Is(err, ErrUpload) {
				return err
			}
			return fmt.Errorf("hfhub: POST %s: %w", u, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return c.writeError(resp, repoID, u, c.Config.Token != "")
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return fmt.Errorf("%w: commit answer of %s: %w", ErrUpload, u, err)
		}
		return nil
	})
	if err != nil {
		return CommitInfo{}, fmt.Errorf("committing to %s: %w", repoID, err)
	}
	if !IsCommit(out.CommitOid) {
		return CommitInfo{}, fmt.Errorf("%w: commit answer of %s has no commit id", ErrUpload, u)
	}
	return CommitInfo{Commit: out.CommitOid, URL: c.hubURL(out.CommitURL)}, nil
}

// writeCommitBody writes the NDJSON lines of a commit to w.
func writeCommitBody(w io.Writer, cfs []*commitFile, opts CommitOptions) error {
	line := func(key string, value any) error {
		b, err := json.Marshal(map[string]any{"key": key, "value": value})
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	}
	if err := line("header", map[string]string{"summary": opts.Message, "description": opts.Description}); err != nil {
		return err
	}
	for _, cf := range cfs {
		if cf.mode == modeLFS {
			if err := line("lfsFile", map[string]any{"path": cf.Path, "algo": "sha256", "oid": cf.oid, "size": cf.size}); err != nil {
				return err
			}
			continue
		}
		if err := writeInlineFile(w, cf); err != nil {
			return err
		}
	}
	return nil
}

// writeInlineFile writes a regular file's commit line, its content base64-encoded as it
// is read; base64 needs no JSON escaping, so the line is assembled around the stream.
func writeInlineFile(w io.Writer, cf *commitFile) error {
	f, err := os.Open(cf.Local)
	if err != nil {
		return fmt.Errorf("hfhub: %w", err)
	}
	defer f.Close()
	p, _ := json.Marshal(cf.Path)
	if _, err := io.WriteString(w, `{"key":"file","value":{"content":"`); err != nil {
		return err
	}
	enc := base64.NewEncoder(base64.StdEncoding, w)
	n, err := io.Copy(enc, f)
	if err != nil {
		return fmt.Errorf("hfhub: reading %s: %w", cf.Local, err)
	}
	if err := enc.Close(); err != nil {
		return err
	}
	if n != cf.size {
		return fmt.Errorf("%w: %s changed while it was being uploaded (%d bytes, then %d)", ErrUpload, cf.Local, cf.size, n)
	}
	_, err = fmt.Fprintf(w, `","path":%s,"encoding":"base64"}}`+"\n", p)
	return err
}
