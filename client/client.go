// Package client is a small typed client of the simpletuner HTTP API, used by the CLI's
// job commands. It finds the server the way SimpleTuner's CLI does: SIMPLETUNER_HOST and
// SIMPLETUNER_PORT (default localhost:8001; https when SIMPLETUNER_SSL_ENABLED=true), and
// authenticates with SIMPLETUNER_API_KEY sent as X-API-Key.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to one server.
type Client struct {
	Base   string
	APIKey string
	HTTP   *http.Client
}

// FromEnv builds a client from the environment.
func FromEnv(getenv func(string) string) *Client {
	host := getenv("SIMPLETUNER_HOST")
	if host == "" || host == "0.0.0.0" {
		host = "localhost"
	}
	port := getenv("SIMPLETUNER_PORT")
	if port == "" {
		port = "8001"
	}
	scheme := "http"
	tr := &http.Transport{}
	if strings.EqualFold(getenv("SIMPLETUNER_SSL_ENABLED"), "true") {
		scheme = "https"
		if strings.EqualFold(getenv("SIMPLETUNER_SSL_NO_VERIFY"), "true") {
			tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked for it
		}
	}
	return &Client{Base: scheme + "://" + host + ":" + port, APIKey: getenv("SIMPLETUNER_API_KEY"), HTTP: &http.Client{Transport: tr}}
}

// Error is a non-2xx answer.
type Error struct {
	Status int
	Detail string
}

func (e *Error) Error() string { return e.Detail }

// ErrUnreachable means no server answered.
var ErrUnreachable = errors.New("could not connect to server")

// Do sends a JSON request and decodes a JSON answer into out (nil to discard).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.APIKey != "" {
		req.Header.Set("X-API-Key", c.APIKey)
	}
	res, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s: %v", ErrUnreachable, c.Base, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		var d struct {
			Detail any `json:"detail"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &d) == nil && d.Detail != nil {
			if s, ok := d.Detail.(string); ok {
				msg = s
			} else {
				j, _ := json.Marshal(d.Detail)
				msg = string(j)
			}
		}
		if res.StatusCode == http.StatusUnauthorized {
			msg += " (set SIMPLETUNER_API_KEY to a key from POST /api/auth/api-keys)"
		}
		return &Error{Status: res.StatusCode, Detail: msg}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// SubmitResult is the answer of POST /api/queue/submit.
type SubmitResult struct {
	Success           bool     `json:"success"`
	JobID             *string  `json:"job_id"`
	Status            string   `json:"status"`
	AllocatedGPUs     []string `json:"allocated_gpus"`
	AllocatedWorkerID *string  `json:"allocated_worker_id"`
	QueuePosition     *int     `json:"queue_position"`
	RequiresApproval  bool     `json:"requires_approval"`
	Error             *string  `json:"error"`
	Reason            *string  `json:"reason"`
}

// SubmitOptions are the choices of a queue submission besides the environment.
type SubmitOptions struct {
	// NoWait refuses the job instead of queueing it when it cannot start at once.
	NoWait bool
	// AnyGPU takes any free GPUs, ignoring the environment's preferred devices.
	AnyGPU bool
	// Target is where the job may run: auto, local, worker or slurm ("" is auto).
	Target string
	// WorkerLabels select the workers that may run the job: label name → glob.
	WorkerLabels map[string]string
	// Priority is the job's priority (0–50); nil leaves the server's default.
	Priority *int
}

// Submit queues the stored environment name.
func (c *Client) Submit(ctx context.Context, name string, o SubmitOptions) (*SubmitResult, error) {
	body := map[string]any{"config_name": name, "no_wait": o.NoWait, "any_gpu": o.AnyGPU, "target": o.Target}
	if o.Target == "" {
		body["target"] = "auto"
	}
	if len(o.WorkerLabels) > 0 {
		body["worker_labels"] = o.WorkerLabels
	}
	if o.Priority != nil {
		body["priority"] = *o.Priority
	}
	var out SubmitResult
	err := c.Do(ctx, "POST", "/api/queue/submit", body, &out)
	return &out, err
}

// Job is a job as GET /api/jobs shows it.
type Job struct {
	JobID       string          `json:"job_id"`
	Status      string          `json:"status"`
	Owner       string          `json:"owner"`
	Environment string          `json:"environment"`
	CreatedAt   string          `json:"created_at"`
	GPUs        []string        `json:"gpus"`
	Error       string          `json:"error"`
	Progress    json.RawMessage `json:"progress"`
	// Target, Executor, WorkerID and Note say where the job runs (auto|local|worker|slurm,
	// the executor that launched it, the worker running it, the executor's note).
	Target   string  `json:"target"`
	Executor *string `json:"executor"`
	WorkerID *string `json:"worker_id"`
	Note     *string `json:"note"`
}

// Jobs lists jobs, newest first.
func (c *Client) Jobs(ctx context.Context, status string) ([]Job, error) {
	var out struct {
		Jobs []Job `json:"jobs"`
	}
	path := "/api/jobs"
	if status != "" {
		path += "?status=" + url.QueryEscape(status)
	}
	err := c.Do(ctx, "GET", path, nil, &out)
	return out.Jobs, err
}

// Job returns one job.
func (c *Client) Job(ctx context.Context, id string) (*Job, error) {
	var out Job
	err := c.Do(ctx, "GET", "/api/jobs/"+url.PathEscape(id), nil, &out)
	return &out, err
}

// Cancel cancels a job.
func (c *Client) Cancel(ctx context.Context, id string) error {
	return c.Do(ctx, "POST", "/api/queue/"+url.PathEscape(id)+"/cancel", nil, nil)
}

// Event is one event of a job's stream.
type Event struct {
	Seq      int64           `json:"seq"`
	Type     string          `json:"type"`
	Severity string          `json:"severity"`
	Time     string          `json:"timestamp"`
	Title    string          `json:"title"`
	Message  string          `json:"message"`
	Data     json.RawMessage `json:"data"`
}

// Events returns a job's events after sequence number since, and the next one to ask for.
func (c *Client) Events(ctx context.Context, jobID string, since int64) ([]Event, int64, error) {
	var out struct {
		Events  []Event `json:"events"`
		NextSeq int64   `json:"next_seq"`
	}
	err := c.Do(ctx, "GET", "/api/jobs/"+url.PathEscape(jobID)+"/events?since_seq="+strconv.FormatInt(since, 10), nil, &out)
	return out.Events, out.NextSeq, err
}

// Follow calls fn for each event of a job, polling until the job ends or ctx is done.
func (c *Client) Follow(ctx context.Context, jobID string, since int64, every time.Duration, fn func(Event)) error {
	for {
		evs, next, err := c.Events(ctx, jobID, since)
		if err != nil {
			return err
		}
		for _, e := range evs {
			fn(e)
		}
		if next > since {
			since = next
		}
		j, err := c.Job(ctx, jobID)
		if err != nil {
			return err
		}
		if isTerminal(j.Status) && len(evs) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

func isTerminal(s string) bool {
	switch s {
	case "completed", "failed", "cancelled", "stopped", "lost":
		return true
	}
	return false
}
