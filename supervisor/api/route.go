package api

import (
	"net/http"

	"simpletuner/supervisor/auth"
)

// access says who may call a route.
type access int

const (
	// authenticated routes need a user (or, before setup, a local caller); the default.
	authenticated access = iota
	// public routes answer anyone; credentials, if any, are still resolved.
	public
	// workerAuth routes are the worker protocol: the caller is a remote worker that
	// presents its X-Worker-Token, not a user (docs/architecture.md §4).
	workerAuth
)

// handlerFunc is the signature of every API handler: the principal is already resolved
// (nil on public routes for anonymous callers), and a returned error is written by
// writeError, so handlers only write on success.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p *auth.Principal) error

// requires wraps a handler that needs an optional service: while present reports false it
// answers 503 "<what> not available on this server". present is asked per request, not
// when the route table is built, because tests attach services after New.
func requires(present func() bool, what string, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
		if !present() {
			return errorf(http.StatusServiceUnavailable, "%s not available on this server", what)
		}
		return h(w, r, p)
	}
}

// queryParam documents a query-string parameter.
type queryParam struct {
	name, typ, help string
}

// route is one row of the route table.
type route struct {
	method  string
	path    string   // gorilla/mux template, e.g. /api/users/{id:[0-9]+}
	aliases []string // the same operation under other paths (SimpleTuner's old prefixes)
	tag     string
	summary string
	access  access
	perm    string // permission required beyond authentication ("" = none)
	status  int    // success status (default 200)
	req     any    // request body type, for the document (nil = no body)
	resp    any    // response body type, for the document
	query   []queryParam
	// contentType of a non-JSON success response (text/html for pages).
	contentType string
	// forbidden describes a 403 the handler itself answers (besides perm and
	// cross-origin refusals), for the document.
	forbidden string
	// maxBody overrides Config.MaxBodyBytes for this route.
	maxBody int64
	// form describes a multipart/form-data (or urlencoded) request body, for routes
	// that take a form instead of JSON (uploads).
	form []formField
	h    handlerFunc
	// raw handlers (docs pages, assets) bypass JSON error mapping.
	raw http.Handler
}

// formField is one field of a form request body.
type formField struct {
	name, help string
	file       bool // a file part (format binary)
	many       bool // repeatable
	required   bool
}

// streams reports whether the route answers with a long-lived stream (Server-Sent Events,
// or a WebSocket on the same path): such routes get no body read deadline, which would end
// the stream.
func (rt *route) streams() bool { return rt.contentType == "text/event-stream" }

func (rt *route) paths() []string { return append([]string{rt.path}, rt.aliases...) }

func (rt *route) methods() []string {
	if rt.method == http.MethodGet {
		return []string{http.MethodGet, http.MethodHead}
	}
	return []string{rt.method}
}

func (rt *route) successStatus() int {
	if rt.status == 0 {
		return http.StatusOK
	}
	return rt.status
}
