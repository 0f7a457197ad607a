package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/gorilla/mux"

	"simpletuner/store"
	"simpletuner/supervisor/auth"
)

// harness is an in-process API server over an in-memory store. Requests go straight to
// the handler, so the test controls RemoteAddr (loopback or not) exactly.
type harness struct {
	t    *testing.T
	db   *store.DB
	auth *auth.Service
	srv  *Server
	h    http.Handler
	doc  *openapi3.T
	// validated counts responses checked against the OpenAPI document.
	validated atomic.Int64
}

const (
	remoteAddr   = "203.0.113.7:40000"
	loopbackAddr = "127.0.0.1:40000"
)

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	db, err := store.OpenInMemory(log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	as, err := auth.NewService(db, log, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, as, log)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(srv.OpenAPIJSON())
	if err != nil {
		t.Fatalf("OpenAPI document does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("OpenAPI document is invalid: %v", err)
	}
	admitNullWhereUntyped(doc)
	return &harness{t: t, db: db, auth: as, srv: srv, h: srv.Handler(), doc: doc}
}

// admitNullWhereUntyped marks every schema without a type nullable, in the harness's copy
// only. Such a schema (an interface, json.RawMessage) admits any JSON value, null included,
// as OpenAPI 3.0.3 reads it (nullable only adds null to a type that is given), so the
// document leaves nullable off where linters refuse it without a type; kin-openapi's
// response validator alone reads a bare schema as refusing null.
func admitNullWhereUntyped(doc *openapi3.T) {
	eachSchema(doc, func(_ string, s *openapi3.Schema) {
		if s.Type.IsEmpty() {
			s.Nullable = true
		}
	})
}

// req describes one request.
type req struct {
	method, path string
	body         any // marshalled as JSON unless io.Reader or string
	remote       string
	key          string
	cookie       string
	header       map[string]string
}

type resp struct {
	code   int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r resp) detail() string {
	var d struct {
		Detail any `json:"detail"`
	}
	_ = json.Unmarshal(r.body, &d)
	if s, ok := d.Detail.(string); ok {
		return s
	}
	b, _ := json.Marshal(d.Detail)
	return string(b)
}

func (h *harness) do(q req) resp {
	h.t.Helper()
	var body io.Reader
	switch b := q.body.(type) {
	case nil:
	case io.Reader:
		body = b
	case string:
		body = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		body = bytes.NewReader(buf)
	}
	r := httptest.NewRequest(q.method, q.path, body)
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	r.RemoteAddr = q.remote
	if r.RemoteAddr == "" {
		r.RemoteAddr = remoteAddr
	}
	if r.RemoteAddr == loopbackAddr {
		// A client on the machine addresses it as such (httptest's default is example.com).
		r.Host = "127.0.0.1:8001"
	}
	if h, ok := q.header["Host"]; ok {
		r.Host = h
	}
	if q.key != "" {
		r.Header.Set("X-API-Key", q.key)
	}
	if q.cookie != "" {
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: q.cookie})
	}
	for k, v := range q.header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.h.ServeHTTP(w, r)
	res := resp{code: w.Code, header: w.Header(), body: w.Body.Bytes()}
	h.validate(r, res)
	return res
}

// validate checks a JSON response against the operation the request matched in the
// OpenAPI document: every response the tests see is a check of the document.
func (h *harness) validate(r *http.Request, res resp) {
	h.t.Helper()
	var match mux.RouteMatch
	if !h.srv.router.Match(r, &match) || match.Route == nil {
		return
	}
	tmpl, _ := match.Route.GetPathTemplate()
	path, _, _ := openAPIPath(tmpl)
	item := h.doc.Paths.Value(path)
	if item == nil {
		h.t.Errorf("%s is routed but not documented", tmpl)
		return
	}
	op := item.GetOperation(r.Method)
	if r.Method == http.MethodHead {
		return
	}
	if op == nil {
		h.t.Errorf("%s %s is routed but not documented", r.Method, tmpl)
		return
	}
	if !strings.HasPrefix(res.header.Get("Content-Type"), "application/json") {
		return
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request:    r,
			PathParams: match.Vars,
			Route:      &routers.Route{Spec: h.doc, Path: path, PathItem: item, Method: r.Method, Operation: op},
		},
		Status:  res.code,
		Header:  res.header,
		Body:    io.NopCloser(bytes.NewReader(res.body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), input); err != nil {
		h.t.Errorf("%s %s → %d does not match the OpenAPI document: %v\nbody: %s", r.Method, r.URL.Path, res.code, err, res.body)
		return
	}
	h.validated.Add(1)
}

// setup creates the first admin from loopback and returns a session token and an API key.
func (h *harness) setup() (cookie, key string) {
	h.t.Helper()
	res := h.do(req{method: "POST", path: "/api/cloud/auth/setup/first-admin", remote: loopbackAddr,
		body: map[string]any{"email": "admin@example.com", "username": "admin", "password": "your-secure-password"}})
	if res.code != 200 {
		h.t.Fatalf("first-admin: %d %s", res.code, res.body)
	}
	cookie = h.login("admin", "your-secure-password")
	res = h.do(req{method: "POST", path: "/api/cloud/auth/api-keys", cookie: cookie, body: map[string]any{"name": "automation-key"}})
	if res.code != 200 {
		h.t.Fatalf("api key: %d %s", res.code, res.body)
	}
	var k apiKeyCreated
	res.json(h.t, &k)
	return cookie, k.Key
}

func (h *harness) login(user, pw string) string {
	h.t.Helper()
	res := h.do(req{method: "POST", path: "/api/cloud/auth/login", body: map[string]any{"username": user, "password": pw}})
	if res.code != 200 {
		h.t.Fatalf("login %s: %d %s", user, res.code, res.body)
	}
	for _, c := range (&http.Response{Header: res.header}).Cookies() {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	h.t.Fatal("login set no session cookie")
	return ""
}

// createUser makes a user with the given level and returns its session.
func (h *harness) createUser(adminKey, name, level string) string {
	h.t.Helper()
	res := h.do(req{method: "POST", path: "/api/users", key: adminKey, body: map[string]any{
		"email": name + "@example.com", "username": name, "password": "password-of-" + name, "level_names": []string{level}}})
	if res.code != 201 {
		h.t.Fatalf("create %s: %d %s", name, res.code, res.body)
	}
	return h.login(name, "password-of-"+name)
}
