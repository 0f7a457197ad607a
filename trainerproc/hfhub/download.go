package hfhub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Progress reports how far the download of one file is; Done counts bytes already on disk,
// including those kept from an interrupted earlier attempt.
type Progress struct {
	// Repo and File name the file being downloaded.
	Repo, File string
	// Done and Total are bytes written so far and the file's size.
	Done, Total int64
}

// Client resolves repo files through the cache and downloads missing ones from the Hub.
// Build it with NewClient; its fields may be adjusted before first use.
type Client struct {
	// Config is where the cache is, which Hub, which token, and whether offline.
	Config Config
	// HTTP is the client requests go through; its redirect policy is overridden because
	// redirects are followed by hand (a token must not follow a redirect to a CDN).
	HTTP *http.Client
	// OnProgress, when set, is called as bytes arrive, from the downloading goroutine; a
	// snapshot downloads several files at once, so calls for different files may overlap.
	OnProgress func(Progress)
	// Workers is how many files a snapshot downloads at once; 0 means 8, as Python does.
	Workers int
	// ResumeAttempts is how many consecutive interrupted transfers without progress are
	// resumed with a Range request before giving up (a partial file is kept for a later
	// call to resume).
	ResumeAttempts int
	// UserAgent is sent with each request.
	UserAgent string
	// Backoff is the wait before retry number attempt (1-based) after a transient failure
	// (network error, 408, 429, 5xx); nil means 1, 2, 4, 8, 8… seconds as Python waits.
	Backoff func(attempt int) time.Duration
}

// maxRetryAfter caps a server-requested wait, so a bogus header cannot hang a job.
const maxRetryAfter = time.Minute

// wait sleeps the backoff of attempt, or less if ctx ends first. A Retry-After in the
// failure's answer replaces the default schedule (not an explicit Client.Backoff).
func (c *Client) wait(ctx context.Context, attempt int, cause error) error {
	d := c.backoffFor(attempt, cause)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// backoffFor is the wait before retry attempt after cause.
func (c *Client) backoffFor(attempt int, cause error) time.Duration {
	if c.Backoff != nil {
		return c.Backoff(attempt)
	}
	var he *HubError
	if errors.As(cause, &he) && he.RetryAfter > 0 {
		return min(he.RetryAfter, maxRetryAfter)
	}
	return min(time.Second<<(attempt-1), 8*time.Second)
}

// transient says whether err is worth retrying: the network failed or the Hub said
// "later" (408, 429, 5xx); anything else is an answer.
func transient(err error) bool {
	var he *HubError
	if errors.As(err, &he) {
		return he.Status == http.StatusRequestTimeout || he.Status == http.StatusTooManyRequests || he.Status >= 500
	}
	// A local file that cannot be read (an upload's source) is not the network's fault.
	var pe *fs.PathError
	return !errors.Is(err, ErrMetadata) && !errors.Is(err, ErrInvalidName) && !errors.Is(err, ErrCorrupt) &&
		!errors.Is(err, ErrUpload) && !errors.As(err, &pe)
}

// NewClient returns a client for cfg with the defaults Python uses (five resumes).
func NewClient(cfg Config) *Client {
	return &Client{Config: cfg, HTTP: &http.Client{}, ResumeAttempts: 5, UserAgent: "simpletuner-go/hfhub"}
}

// Cache is the client's local cache.
func (c *Client) Cache() Cache { return Cache{Dir: c.Config.CacheDir} }

// fileMeta is what the HEAD on a resolve URL says about a file.
type fileMeta struct {
	commit, etag string
	size         int64
	location     string // where to GET the content (the CDN for LFS files)
}

// errStalled marks a transfer dropped for receiving nothing within the download timeout.
var errStalled = errors.New("hfhub: no data received")

// etagRE keeps etags usable as file names (they become blobs/<etag>).
var etagRE = regexp.MustCompile(`^[0-9A-Za-z_\-]{1,128}$`)

// resolveURL is {endpoint}/{repo}/resolve/{revision}/{path}, revision fully escaped (so
// refs/pr/1 stays one segment) and each path segment escaped.
func (c *Client) resolveURL(repoID, revision, filename string) string {
	segs := strings.Split(filename, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return c.Config.Endpoint + "/" + repoID + "/resolve/" + url.PathEscape(revision) + "/" + strings.Join(segs, "/")
}

func (c *Client) client() *http.Client {
	hc := http.Client{}
	if c.HTTP != nil {
		hc = *c.HTTP
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &hc
}

func (c *Client) newRequest(ctx context.Context, method, u string, auth bool) (*http.Request, error) {
	return c.newRequestBody(ctx, method, u, nil, auth)
}

// newRequestBody is newRequest with a body (uploads), carrying the Hub's headers: the
// user agent and, when auth, the token.
func (c *Client) newRequestBody(ctx context.Context, method, u string, body io.Reader, auth bool) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("hfhub: %s %s: %w", method, u, err)
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	if auth && c.Config.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Config.Token)
	}
	return req, nil
}

// head asks the Hub for a file's commit, etag, size and content location. Relative
// redirects (renamed repos) are followed; an absolute one (the CDN) ends the walk.
func (c *Client) head(ctx context.Context, repoID, revision, filename string) (fileMeta, error) {
	hc := c.client()
	start := c.resolveURL(repoID, revision, filename)
	cur := start
	ctx, cancel := context.WithTimeout(ctx, orDefault(c.Config.EtagTimeout))
	defer cancel()
	for range 10 {
		req, err := c.newRequest(ctx, http.MethodHead, cur, true)
		if err != nil {
			return fileMeta{}, err
		}
		req.Header.Set("Accept-Encoding", "identity")
		resp, err := hc.Do(req)
		if err != nil {
			return fileMeta{}, fmt.Errorf("hfhub: HEAD %s: %w", cur, err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 400 {
			return fileMeta{}, c.hubError(resp, repoID, cur, c.Config.Token != "")
		}
		isRedirect := resp.StatusCode >= 300 && resp.StatusCode < 400
		if isRedirect {
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil {
				return fileMeta{}, fmt.Errorf("%w: bad Location from %s: %w", ErrMetadata, cur, err)
			}
			if loc.Host == "" {
				u, _ := url.Parse(cur)
				u.Path, u.RawPath, u.RawQuery = loc.Path, loc.RawPath, ""
				cur = u.String()
				continue
			}
		}
		m := fileMeta{commit: resp.Header.Get("X-Repo-Commit"), location: cur}
		m.etag = resp.Header.Get("X-Linked-Etag")
		if m.etag == "" {
			m.etag = resp.Header.Get("ETag")
		}
		m.etag = normalizeEtag(m.etag)
		sz := resp.Header.Get("X-Linked-Size")
		if sz == "" && !isRedirect {
			sz = resp.Header.Get("Content-Length")
		}
		if isRedirect {
			u, _ := url.Parse(cur)
			m.location = u.ResolveReference(mustParse(resp.Header.Get("Location"))).String()
		}
		size, err := strconv.ParseInt(sz, 10, 64)
		switch {
		case !IsCommit(m.commit):
			return fileMeta{}, fmt.Errorf("%w: no X-Repo-Commit from %s (is HF_ENDPOINT a Hugging Face Hub?)", ErrMetadata, cur)
		case !etagRE.MatchString(m.etag):
			return fileMeta{}, fmt.Errorf("%w: no usable ETag from %s", ErrMetadata, cur)
		case err != nil || size < 0:
			return fileMeta{}, fmt.Errorf("%w: no size from %s", ErrMetadata, cur)
		}
		m.size = size
		return m, nil
	}
	return fileMeta{}, fmt.Errorf("%w: too many redirects from %s", ErrMetadata, start)
}

func mustParse(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		return &url.URL{}
	}
	return u
}

// Download returns the local path of filename of repoID at revision ("" means "main"),
// downloading it into the cache if needed. A full commit hash already in the cache answers
// without the network; in offline mode only the cache is consulted; when the Hub cannot be
// reached (or refuses) but the file is cached for that revision, the cached file is used.
func (c *Client) Download(ctx context.Context, repoID, revision, filename string) (string, error) {
	if revision == "" {
		revision = "main"
	}
	if err := ValidateRepoID(repoID); err != nil {
		return "", err
	}
	if err := validateFilename(filename); err != nil {
		return "", err
	}
	if err := validateRevision(revision); err != nil {
		return "", err
	}
	filename = strings.ReplaceAll(filename, `\`, "/")
	cache := c.Cache()
	if IsCommit(revision) {
		if p, err := cache.Lookup(repoID, revision, filename); err == nil {
			return p, nil
		}
	}
	if c.Config.Offline {
		p, err := cache.Lookup(repoID, revision, filename)
		if err != nil {
			return "", fmt.Errorf("%w: %s of %s at revision %s is not in %s (unset HF_HUB_OFFLINE to download it): %w",
				ErrOffline, filename, repoID, revision, cache.Dir, err)
		}
		return p, nil
	}
	meta, err := c.head(ctx, repoID, revision, filename)
	if err != nil && transient(err) && ctx.Err() == nil {
		// Python's order: a cached copy first (fast when the Hub is down), then retries.
		if p, lerr := cache.Lookup(repoID, revision, filename); lerr == nil {
			return p, nil
		}
		for attempt := 1; attempt <= c.ResumeAttempts && err != nil && transient(err); attempt++ {
			if werr := c.wait(ctx, attempt, err); werr != nil {
				return "", fmt.Errorf("hfhub: %s of %s: %w (after %w)", filename, repoID, werr, err)
			}
			meta, err = c.head(ctx, repoID, revision, filename)
		}
	}
	var he *HubError
	if errors.As(err, &he) && errors.Is(err, ErrEntryNotFound) && IsCommit(he.Commit) {
		// Remember the absence as Python does, so its offline loads (and ours) know the
		// file is missing at that commit instead of failing on the network.
		cache.markMissing(repoID, revision, he.Commit, filename)
	}
	if err != nil {
		if errors.Is(err, ErrRevisionNotFound) || errors.Is(err, ErrEntryNotFound) || ctx.Err() != nil {
			return "", err
		}
		// Hub unreachable or refusing: a copy cached earlier for this revision is still right.
		if p, lerr := cache.Lookup(repoID, revision, filename); lerr == nil {
			return p, nil
		}
		return "", err
	}
	ptr := cache.SnapshotPath(repoID, meta.commit, filename)
	if _, err := os.Stat(ptr); err == nil {
		// Best effort: a read-only cache shared with others still serves files.
		_ = cache.writeRef(repoID, revision, meta.commit)
		return ptr, nil
	}
	if err := os.MkdirAll(filepath.Join(cache.RepoDir(repoID), "blobs"), 0o777); err != nil {
		return "", fmt.Errorf("hfhub: cache %s: %w", cache.Dir, err)
	}
	cache.writeCachedirTag()
	if err := cache.writeRef(repoID, revision, meta.commit); err != nil {
		return "", err
	}
	unlock, err := lockFile(filepath.Join(cache.Dir, ".locks", RepoFolderName(repoID), meta.etag+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	blob := cache.BlobPath(repoID, meta.etag)
	newBlob := false
	if _, err := os.Stat(blob); errors.Is(err, fs.ErrNotExist) {
		if err := c.fetchBlob(ctx, repoID, revision, filename, meta, blob); err != nil {
			return "", err
		}
		newBlob = true
	} else if err != nil {
		return "", fmt.Errorf("hfhub: blob %s: %w", blob, err)
	}
	return cache.linkSnapshot(repoID, meta.commit, filename, meta.etag, newBlob, c.Config.DisableSymlinks)
}

// fetchBlob downloads into blobs/<etag>.incomplete (resuming what an interrupted attempt
// left there), checks size and hash, and renames it to the blob. The caller holds the blob's
// lock, which also guards the .incomplete file.
func (c *Client) fetchBlob(ctx context.Context, repoID, revision, filename string, meta fileMeta, blob string) error {
	tmp := blob + ".incomplete"
	// 0666 before umask: blobs are shared with other users of the cache, as Python's are.
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return fmt.Errorf("hfhub: %s: %w", tmp, err)
	}
	// On an interrupted transfer the partial file stays for a later call to resume; closing
	// twice after the explicit Close below is harmless.
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("hfhub: %s: %w", tmp, err)
	}
	off := st.Size()
	if off > meta.size {
		off = 0
		if err := f.Truncate(0); err != nil {
			return fmt.Errorf("hfhub: %s: %w", tmp, err)
		}
	}
	if err := c.transfer(ctx, repoID, revision, filename, meta, f, off); err != nil {
		return err
	}
	if err := verify(f, meta); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("%s of %s at %s: %w", filename, repoID, revision, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("hfhub: %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("hfhub: %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, blob); err != nil {
		return fmt.Errorf("hfhub: %s: %w", blob, err)
	}
	return nil
}

// transfer GETs the content from off to the end into f, re-requesting the rest with a
// Range header when the connection breaks mid-body.
func (c *Client) transfer(ctx context.Context, repoID, revision, filename string, meta fileMeta, f *os.File, off int64) error {
	failures := 0
	c.progress(repoID, filename, off, meta.size)
	for off < meta.size {
		n, err := c.getOnce(ctx, repoID, filename, meta, f, off)
		if n < 0 { // the server ignored Range and sent everything again
			off, n = 0, -n
		}
		off += n
		if err == nil && off < meta.size {
			err = io.ErrUnexpectedEOF
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil || !transient(err) {
			return err
		}
		if n > 0 {
			failures = 0
		}
		failures++
		if failures > c.ResumeAttempts {
			return fmt.Errorf("hfhub: download of %s (%s at %s) interrupted at %d of %d bytes; run again to resume: %w",
				filename, repoID, revision, off, meta.size, err)
		}
		// A broken connection is resumed at once, as data was flowing; an answer saying
		// "later" (or a connection that failed outright) waits before the next try.
		var he *HubError
		if errors.As(err, &he) || n == 0 {
			if werr := c.wait(ctx, failures, err); werr != nil {
				return werr
			}
		}
	}
	if off != meta.size {
		return fmt.Errorf("%w: %s has %d bytes, the Hub announced %d", ErrCorrupt, filename, off, meta.size)
	}
	return nil
}

// getOnce issues one GET (from off) and copies the body into f at off. It returns the bytes
// written, negated when the server answered 200 to a Range request and the file restarted
// from 0.
func (c *Client) getOnce(ctx context.Context, repoID, filename string, meta fileMeta, f *os.File, off int64) (int64, error) {
	hc := c.client()
	origin := mustParse(c.resolveURL(repoID, "x", filename)).Host
	// A connection that delivers nothing for DownloadTimeout is dropped and resumed, as a
	// stalled CDN connection otherwise hangs the job forever.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := orDefault(c.Config.DownloadTimeout)
	timer := time.AfterFunc(idle, func() { cancel(errStalled) })
	defer timer.Stop()
	cur := meta.location
	var resp *http.Response
	for i := 0; ; i++ {
		u, err := url.Parse(cur)
		if err != nil || i == 10 {
			return 0, fmt.Errorf("%w: bad or endless redirects to %s", ErrMetadata, cur)
		}
		// The token goes to the Hub only, never to a CDN behind a signed URL.
		req, err := c.newRequest(ctx, http.MethodGet, cur, u.Host == origin)
		if err != nil {
			return 0, err
		}
		if off > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
		}
		resp, err = hc.Do(req)
		if err != nil {
			if context.Cause(ctx) == errStalled {
				err = fmt.Errorf("%w after %v: %w", errStalled, idle, err)
			}
			return 0, fmt.Errorf("hfhub: GET %s: %w", cur, err)
		}
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			resp.Body.Close()
			cur = u.ResolveReference(mustParse(resp.Header.Get("Location"))).String()
			continue
		}
		break
	}
	defer resp.Body.Close()
	restarted := false
	switch {
	case resp.StatusCode == http.StatusPartialContent && off > 0:
		var start int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-", &start); err != nil || start != off {
			return 0, fmt.Errorf("%w: Content-Range %q for a request from byte %d", ErrHTTP, resp.Header.Get("Content-Range"), off)
		}
	case resp.StatusCode == http.StatusOK:
		if off > 0 {
			restarted, off = true, 0
			if err := f.Truncate(0); err != nil {
				return 0, fmt.Errorf("hfhub: %w", err)
			}
		}
	default:
		return 0, c.hubError(resp, repoID, cur, false)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, fmt.Errorf("hfhub: %w", err)
	}
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, rerr := resp.Body.Read(buf)
		timer.Reset(idle)
		if rerr != nil && context.Cause(ctx) == errStalled {
			rerr = fmt.Errorf("%w after %v: %w", errStalled, idle, rerr)
		}
		if k > 0 {
			if off+n+int64(k) > meta.size {
				return n, fmt.Errorf("%w: %s is longer than the %d bytes announced", ErrCorrupt, filename, meta.size)
			}
			if _, err := f.Write(buf[:k]); err != nil {
				return n, fmt.Errorf("hfhub: writing %s: %w", filename, err)
			}
			n += int64(k)
			c.progress(repoID, filename, off+n, meta.size)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if restarted {
				return -n, rerr
			}
			return n, rerr
		}
	}
	if restarted {
		return -n, nil
	}
	return n, nil
}

func (c *Client) progress(repoID, filename string, done, total int64) {
	if c.OnProgress != nil {
		c.OnProgress(Progress{Repo: repoID, File: filename, Done: done, Total: total})
	}
}

// verify checks the whole file against the etag: an LFS etag (64 hex) is the content's
// sha256, a regular file's (40 hex) its git blob sha1. Other etags are only size-checked.
func verify(f *os.File, meta fileMeta) error {
	var h hash.Hash
	switch {
	case len(meta.etag) == 64 && isHex(meta.etag):
		h = sha256.New()
	case len(meta.etag) == 40 && isHex(meta.etag):
		h = sha1.New()
		fmt.Fprintf(h, "blob %d\x00", meta.size)
	default:
		return nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("hfhub: %w", err)
	}
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("hfhub: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != meta.size || got != strings.ToLower(meta.etag) {
		return fmt.Errorf("%w: got %d bytes hashing to %s, expected %d bytes with etag %s; the partial file was deleted, run again to download it anew",
			ErrCorrupt, n, got, meta.size, meta.etag)
	}
	return nil
}

func isHex(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}
