package hfhub

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Sentinel errors of Hub answers and downloads. Errors returned by Client wrap them.
var (
	// ErrOffline means offline mode (HF_HUB_OFFLINE) is on and the file is not cached.
	ErrOffline = errors.New("hfhub: offline mode is on and the file is not in the cache")
	// ErrGatedRepo means the repo is gated and the request's token (if any) has no access.
	ErrGatedRepo = errors.New("hfhub: gated repository")
	// ErrRepoNotFound means the repo does not exist, or is private and the token cannot see it.
	ErrRepoNotFound = errors.New("hfhub: repository not found")
	// ErrRevisionNotFound means the branch, tag or commit does not exist in the repo.
	ErrRevisionNotFound = errors.New("hfhub: revision not found")
	// ErrEntryNotFound means the file does not exist at that revision.
	ErrEntryNotFound = errors.New("hfhub: file not found in the repository")
	// ErrUnauthorized means the Hub refused the request (401/403) without saying why.
	ErrUnauthorized = errors.New("hfhub: access refused")
	// ErrCorrupt means downloaded content does not match the size or hash the Hub announced;
	// nothing of it was kept.
	ErrCorrupt = errors.New("hfhub: downloaded content does not match its hash")
	// ErrMetadata means the Hub's answer lacked the headers a download needs (commit, etag,
	// size), usually because HF_ENDPOINT is not a Hub.
	ErrMetadata = errors.New("hfhub: incomplete file metadata from the Hub")
	// ErrHTTP is any other unexpected HTTP status.
	ErrHTTP = errors.New("hfhub: unexpected HTTP status")
)

// HubError is an error answer of the Hub, with what the user can do about it.
type HubError struct {
	// Kind is the sentinel this error matches (ErrGatedRepo, ErrRepoNotFound, …).
	Kind error
	// Status is the HTTP status code.
	Status int
	// Code and Message are the Hub's X-Error-Code and X-Error-Message headers.
	Code, Message string
	// URL is the requested URL.
	URL string
	// Repo is the repo id and Endpoint the Hub it was asked of, for the advice.
	Repo, Endpoint string
	// TokenSent says whether an Authorization header was sent.
	TokenSent bool
	// RetryAfter is the wait a 429/503 answer asked for (numeric Retry-After), or 0.
	RetryAfter time.Duration
	// Commit is the X-Repo-Commit of the answer, if any (an EntryNotFound carries the commit
	// the file is missing from).
	Commit string
	// Write marks a request of an upload, whose advice is about write access.
	Write bool
}

// Error explains the failure and what to do, since most of these are fixed by the user
// (a token, a licence to accept, a typo in the repo id).
func (e *HubError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v (HTTP %d", e.Kind, e.Status)
	if e.Code != "" {
		fmt.Fprintf(&b, " %s", e.Code)
	}
	fmt.Fprintf(&b, ") for %s", e.URL)
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	page := e.Endpoint + "/" + e.Repo
	switch {
	case e.Write && !e.TokenSent && (errors.Is(e.Kind, ErrUnauthorized) || errors.Is(e.Kind, ErrRepoNotFound)):
		fmt.Fprintf(&b, ". Uploading needs a token: set HF_TOKEN to an access token with write access to %s (%s/settings/tokens), or log in with `huggingface-cli login` so it is stored under HF_HOME", e.Repo, e.Endpoint)
	case e.Write && errors.Is(e.Kind, ErrUnauthorized):
		fmt.Fprintf(&b, ". The token in HF_TOKEN may not write to %s: use a token with write access to that repo or its organisation (%s/settings/tokens)", e.Repo, e.Endpoint)
	case e.Write && errors.Is(e.Kind, ErrRepoNotFound):
		fmt.Fprintf(&b, ". Check the repo id %q (--hub_model_id) and that the token in HF_TOKEN can write to it", e.Repo)
	case errors.Is(e.Kind, ErrGatedRepo) && !e.TokenSent:
		fmt.Fprintf(&b, ". %s is gated: accept its licence on %s while logged in, then set HF_TOKEN to an access token of that account (%s/settings/tokens)", e.Repo, page, e.Endpoint)
	case errors.Is(e.Kind, ErrGatedRepo):
		fmt.Fprintf(&b, ". %s is gated and the token in HF_TOKEN has no access yet: accept the licence on %s with the account that owns the token (access may need the authors' approval), or use a token with read access to gated repos", e.Repo, page)
	case errors.Is(e.Kind, ErrRepoNotFound) && !e.TokenSent:
		fmt.Fprintf(&b, ". Check the repo id %q; if the repo is private or gated, set HF_TOKEN to an access token that can read it", e.Repo)
	case errors.Is(e.Kind, ErrRepoNotFound):
		fmt.Fprintf(&b, ". Check the repo id %q and that the token in HF_TOKEN can read it", e.Repo)
	case errors.Is(e.Kind, ErrUnauthorized):
		b.WriteString(". Check that HF_TOKEN holds a valid token with read access to this repo")
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrGatedRepo) and friends work.
func (e *HubError) Unwrap() error { return e.Kind }

// hubError classifies an error response, keying on X-Error-Code as the status codes for
// private and gated repos vary.
func (c *Client) hubError(resp *http.Response, repoID, url string, tokenSent bool) error {
	code := resp.Header.Get("X-Error-Code")
	e := &HubError{Status: resp.StatusCode, Code: code, Message: resp.Header.Get("X-Error-Message"),
		URL: url, Repo: repoID, Endpoint: c.Config.Endpoint, TokenSent: tokenSent,
		Commit: resp.Header.Get("X-Repo-Commit"), RetryAfter: seconds(resp.Header.Get("Retry-After"))}
	switch {
	case code == "RevisionNotFound":
		e.Kind = ErrRevisionNotFound
	case code == "EntryNotFound":
		e.Kind = ErrEntryNotFound
	case code == "GatedRepo":
		e.Kind = ErrGatedRepo
	case code == "RepoNotFound":
		e.Kind = ErrRepoNotFound
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		e.Kind = ErrUnauthorized
	case resp.StatusCode == http.StatusNotFound:
		e.Kind = ErrEntryNotFound
	default:
		e.Kind = ErrHTTP
	}
	return e
}
