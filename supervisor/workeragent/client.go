package workeragent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"simpletuner/plugins/workerproto"
)

// Sentinel errors of the agent.
var (
	// ErrUnauthorized means the orchestrator refused the worker token (401): it was
	// revoked, replaced or never valid. The agent exits; retrying cannot help.
	ErrUnauthorized = errors.New("the orchestrator refused the worker token (401): create a new one with POST /api/admin/workers/{id}/token and restart the worker with it")
	// ErrConflict is a 409: an event batch with a gap, or a terminal status before all
	// of the job's events arrived. The answer's last_seq says where to resume.
	ErrConflict = errors.New("the orchestrator wants events from an earlier seq (409)")
	// ErrNotAssigned is a 403 or 404 on a job route: the orchestrator no longer has the
	// job on this worker (it ended, went elsewhere, or was deleted).
	ErrNotAssigned = errors.New("the orchestrator no longer assigns this job to this worker")
	// ErrRegisterRefused is a registration the orchestrator refused as invalid (400,
	// 422: bad labels or name, say); retrying the same registration cannot help.
	ErrRegisterRefused = errors.New("the orchestrator refused the registration")
	// ErrStateInUse means another agent (or daemon) holds the state directory.
	ErrStateInUse = errors.New("the worker state directory is in use by another process")
)

// statusError is an unexpected HTTP answer; its text carries the orchestrator's message.
type statusError struct {
	Code int
	Msg  string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("orchestrator answered %d: %s", e.Code, e.Msg)
}

// client talks to the orchestrator's /api/workers routes. The token goes in a header
// only; it never appears in an error, a log line or a URL.
type client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// maxAnswer bounds what the agent reads of an answer (they are small JSON objects).
const maxAnswer = 1 << 20

// url resolves a path (with an optional query) against the orchestrator's base URL.
func (c *client) url(path string) string {
	ref, err := url.Parse(path)
	if err != nil {
		return c.base.String() + path
	}
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + ref.Path
	u.RawQuery = ref.RawQuery
	return u.String()
}

// post sends body (JSON, or raw bytes when it is a []byte) and decodes the answer into
// out (nil: discard). Status errors map to the sentinels above; for a 409 out still gets
// the body (the EventAck naming the seq to resume from).
func (c *client) post(ctx context.Context, path string, body, out any) error {
	var raw []byte
	switch b := body.(type) {
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(path), bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(workerproto.HeaderToken, c.token)
	res, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	if err != nil {
		return err
	}
	if err := answerError(res.StatusCode, data); err != nil {
		if errors.Is(err, ErrConflict) && out != nil {
			_ = json.Unmarshal(data, out)
		}
		return err
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("orchestrator answer to %s: %w", path, err)
		}
	}
	return nil
}

// answerError maps an HTTP status to the agent's errors (nil for 2xx).
func answerError(code int, body []byte) error {
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusUnauthorized:
		return ErrUnauthorized
	case code == http.StatusConflict:
		return ErrConflict
	case code == http.StatusForbidden || code == http.StatusNotFound:
		return fmt.Errorf("%w: %s", ErrNotAssigned, detail(body))
	}
	return &statusError{Code: code, Msg: detail(body)}
}

// detail is the message of an API error body ({"detail": …}), or its first bytes.
func detail(body []byte) string {
	var e struct {
		Detail any `json:"detail"`
	}
	if json.Unmarshal(body, &e) == nil && e.Detail != nil {
		return fmt.Sprint(e.Detail)
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// stream opens the dispatch stream. The caller reads it with readSSE and closes it.
func (c *client) stream(ctx context.Context, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(path), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set(workerproto.HeaderToken, c.token)
	res, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
		res.Body.Close()
		if err := answerError(res.StatusCode, data); err != nil {
			return nil, err
		}
		return nil, &statusError{Code: res.StatusCode, Msg: detail(data)}
	}
	return res.Body, nil
}

// sseEvent is one event of a text/event-stream.
type sseEvent struct {
	Name string
	Data []byte
}

// readSSE calls fn for every event of r until r ends or fn returns an error. Comments
// (":" lines) and fields other than event and data are ignored; an event without a name
// is a "message", as the SSE specification has it.
func readSSE(r io.Reader, fn func(sseEvent) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var ev sseEvent
	var data [][]byte
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			if len(data) > 0 || ev.Name != "" {
				ev.Data = bytes.Join(data, []byte("\n"))
				if ev.Name == "" {
					ev.Name = "message"
				}
				if err := fn(ev); err != nil {
					return err
				}
			}
			ev, data = sseEvent{}, nil
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			ev.Name = string(value)
		case "data":
			data = append(data, append([]byte(nil), value...))
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}
