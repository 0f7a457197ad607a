package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/gorilla/mux"

	"simpletuner/internal/buildinfo"
	"simpletuner/store"
	"simpletuner/supervisor/api/apidocs"
	"simpletuner/supervisor/api/ui"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/configs"
	"simpletuner/supervisor/datasets"
	"simpletuner/supervisor/events"
	"simpletuner/supervisor/gpu"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/schedule"
	"simpletuner/supervisor/training"
	"simpletuner/supervisor/workers"
	"time"
)

// Config configures the API server.
type Config struct {
	// TrustedProxies are the addresses whose X-Forwarded-For and X-Forwarded-Proto headers
	// are believed. Empty: nobody's.
	TrustedProxies []netip.Prefix
	// MaxBodyBytes caps JSON request bodies (default 1 MiB).
	MaxBodyBytes int64
	// SetupToken, when non-empty, lets a remote client create the first administrator by
	// presenting it; without it only the server machine itself can.
	SetupToken string
	// OnSetupDone runs once after the first administrator is created, by any route (the
	// daemon deletes the bootstrap token file there).
	OnSetupDone func()
	// AllowedHosts are names, besides localhost and loopback addresses, by which a caller
	// on this machine may address the server and act as the administrator before setup
	// (see loopbackHost).
	AllowedHosts []string
	// BodyTimeout bounds reading a request body (default 30 s); bodies that keep arriving
	// at MinBodyRate bytes a second or more (default 32 KiB/s) get longer, in proportion
	// to what they sent. Event streams have none (see bodyDeadline).
	BodyTimeout time.Duration
	MinBodyRate int64
	// Configs serves /api/configs; nil answers 503 there.
	Configs *configs.Service
	// Datasets serves /api/datasets; nil answers 503 there.
	Datasets *datasets.Service
	// MaxUploadBytes caps one dataset upload request (default 10 GiB); larger bodies get
	// 413. Reverse proxies need a matching limit (client_max_body_size).
	MaxUploadBytes int64
	// Training, Jobs and GPUs serve training control, jobs, the queue and the system
	// status; nil answers 503 there.
	Training *training.Service
	Jobs     *jobs.Manager
	GPUs     *gpu.Allocator
	// Store is read for job events.
	Store *store.DB
	// Events is the event hub behind /api/training/events and the event streams; nil
	// answers 503 there.
	Events *events.Hub
	// OutputRoot resolves relative output_dir values of the checkpoint listing.
	OutputRoot string
	// SaveLimits persists concurrency limits changed through the API.
	SaveLimits func(gpu.Limits) error
	// Workers is the registry of remote workers behind /api/admin/workers and the worker
	// protocol /api/workers; nil answers 503 there.
	Workers *workers.Registry
	// Shutdown stops the daemon gracefully, as SIGTERM does (trainers keep running and
	// the next start reattaches them). POST /api/system/shutdown calls it once, after
	// answering; nil answers 503 there.
	Shutdown func()
	// Schedules serves /api/schedules (part "schedule", issue 17); nil answers 503 there.
	Schedules *schedule.Scheduler

	// --- part "metrics" (issue 17) ---
	// Metrics serves GET /metrics (Prometheus's text format); nil answers 503 there.
	Metrics http.Handler
	// MetricsToken, when set, lets a caller from anywhere scrape GET /metrics with
	// "Authorization: Bearer <token>"; without it only callers on this machine may.
	MetricsToken string
	// Requests, when set, hears every request's duration by route template.
	Requests RequestObserver
}

// Server is the HTTP API. Its handler is safe for concurrent use.
type Server struct {
	cfg     Config
	auth    *auth.Service
	log     *slog.Logger
	docs    *apidocs.Docs
	ui      *ui.UI // the status page at / (part "ui", issue 17)
	csrf    *http.CrossOriginProtection
	routes  []route
	router  *mux.Router
	spec    []byte // the OpenAPI document, rendered once
	version buildinfo.Info
	started time.Time
	// setupOnce runs cfg.OnSetupDone once (afterSetup).
	setupOnce sync.Once
	// shuttingDown is set by the first POST /api/system/shutdown.
	shuttingDown atomic.Bool
}

// New builds the API server over the auth service.
func New(cfg Config, as *auth.Service, log *slog.Logger) (*Server, error) {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.MaxUploadBytes == 0 {
		cfg.MaxUploadBytes = 10 << 30
	}
	if cfg.BodyTimeout == 0 {
		cfg.BodyTimeout = 30 * time.Second
	}
	if cfg.MinBodyRate == 0 {
		cfg.MinBodyRate = 32 << 10
	}
	s := &Server{cfg: cfg, auth: as, log: log, docs: apidocs.New(apidocs.DefaultSpecURL),
		csrf: http.NewCrossOriginProtection(), version: buildinfo.Get(), started: time.Now()}
	var err error
	if s.ui, err = ui.New(); err != nil {
		return nil, err
	}
	s.routes = s.routeTable()
	doc, err := s.openAPI()
	if err != nil {
		return nil, fmt.Errorf("build OpenAPI document: %w", err)
	}
	if s.spec, err = json.Marshal(doc); err != nil {
		return nil, fmt.Errorf("encode OpenAPI document: %w", err)
	}
	s.router = s.buildRouter()
	return s, nil
}

// Handler returns the root handler: common headers, panic recovery, then the router.
func (s *Server) Handler() http.Handler { return s.common(s.router) }

// Router exposes the router so tests can walk every registered route.
func (s *Server) Router() *mux.Router { return s.router }

// OpenAPIJSON returns the OpenAPI document served at /openapi.json.
func (s *Server) OpenAPIJSON() []byte { return s.spec }

func (s *Server) buildRouter() *mux.Router {
	r := mux.NewRouter()
	r.NotFoundHandler = s.observe(unmatchedRoute, nil, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, detailBody{Detail: "Not Found"})
	}))
	r.MethodNotAllowedHandler = s.observe(unmatchedRoute, nil, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, detailBody{Detail: "Method Not Allowed"})
	}))
	for i := range s.routes {
		rt := &s.routes[i]
		h := s.wrap(rt)
		for _, p := range rt.paths() {
			r.Handle(p, s.observe(routeLabel(p), rt, h)).Methods(rt.methods()...).Name(rt.method + " " + p)
		}
	}
	return r
}
