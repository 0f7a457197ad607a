package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"simpletuner/internal/jsondoc"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/configs"
	"simpletuner/supervisor/datasets"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/workers"
)

// httpError is an error with a status and the detail shown to the client.
type httpError struct {
	status int
	detail string
}

func (e *httpError) Error() string { return e.detail }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, detail: fmt.Sprintf(format, args...)}
}

// writeError maps an error to its status and body. Sentinels of the packages below are
// mapped here and nowhere else; anything unmapped is a 500 whose detail hides internals.
func writeError(w http.ResponseWriter, log *slog.Logger, r *http.Request, err error) {
	var he *httpError
	var rl *auth.RateLimitError
	var mbe *http.MaxBytesError
	var bte *bodyTimeoutError
	var ve *validationError
	var cve *configs.ValidationError
	var behind *workers.BehindError
	switch {
	case errors.As(err, &bte):
		w.Header().Set("Connection", "close")
		writeJSON(w, http.StatusRequestTimeout, detailBody{Detail: bte.Error()})
	case errors.As(err, &ve):
		writeJSON(w, http.StatusUnprocessableEntity, validationBody{Detail: []fieldError{ve.fe}})
	case errors.As(err, &cve):
		writeConfigValidation(w, cve)
	case errors.Is(err, configs.ErrNotFound), errors.Is(err, datasets.ErrNotFound):
		writeJSON(w, http.StatusNotFound, detailBody{Detail: err.Error()})
	case errors.Is(err, configs.ErrExists):
		writeJSON(w, http.StatusConflict, detailBody{Detail: err.Error()})
	case errors.Is(err, configs.ErrInvalid), errors.Is(err, configs.ErrActive),
		errors.Is(err, datasets.ErrInvalid), errors.Is(err, datasets.ErrExists), errors.Is(err, datasets.ErrArchive):
		writeJSON(w, http.StatusBadRequest, detailBody{Detail: err.Error()})
	case errors.Is(err, configs.ErrTooLarge):
		writeJSON(w, http.StatusRequestEntityTooLarge, detailBody{Detail: err.Error()})
	case errors.Is(err, configs.ErrCorrupt):
		writeJSON(w, http.StatusUnprocessableEntity, validationBody{Detail: []fieldError{{Type: "json_invalid", Loc: []string{"file"}, Msg: err.Error()}}})
	case errors.Is(err, jobs.ErrInvalidLabels):
		writeJSON(w, http.StatusUnprocessableEntity, validationBody{Detail: []fieldError{{Type: "value_error", Loc: []string{"body", "worker_labels"}, Msg: err.Error()}}})
	case errors.As(err, &behind):
		writeJSON(w, http.StatusConflict, behindBody{Detail: behind.Error(), LastSeq: behind.LastSeq})
	case errors.Is(err, workers.ErrInvalidToken):
		w.Header().Set("WWW-Authenticate", `X-Worker-Token realm="workers"`)
		writeJSON(w, http.StatusUnauthorized, detailBody{Detail: workers.ErrInvalidToken.Error()})
	case errors.Is(err, workers.ErrClosed):
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, detailBody{Detail: upperFirst(err.Error())})
	case errors.Is(err, workers.ErrNotAssigned):
		writeJSON(w, http.StatusForbidden, detailBody{Detail: err.Error()})
	case errors.Is(err, workers.ErrNotFound), errors.Is(err, workers.ErrJobNotFound):
		writeJSON(w, http.StatusNotFound, detailBody{Detail: upperFirst(err.Error())})
	case errors.Is(err, workers.ErrExists):
		writeJSON(w, http.StatusConflict, detailBody{Detail: upperFirst(err.Error())})
	case errors.Is(err, workers.ErrInvalid), errors.Is(err, workers.ErrBusy), errors.Is(err, workers.ErrMismatch):
		writeJSON(w, http.StatusBadRequest, detailBody{Detail: workerMessage(err)})
	case errors.Is(err, jobs.ErrNoActiveJob):
		writeJSON(w, http.StatusBadRequest, detailBody{Detail: err.Error()})
	case errors.Is(err, jobs.ErrNoExecutor):
		// A target nothing here serves (slurm unconfigured, no worker registered): the
		// executor's message says what to set up; the sentinel's own words are dropped.
		writeJSON(w, http.StatusBadRequest, detailBody{Detail: withoutSentinel(err, jobs.ErrNoExecutor)})
	case errors.Is(err, datasets.ErrOutside):
		writeJSON(w, http.StatusForbidden, detailBody{Detail: err.Error()})
	case errors.As(err, &he):
		writeJSON(w, he.status, detailBody{Detail: he.detail})
	case errors.As(err, &rl):
		secs := int(rl.RetryAfter.Seconds() + 0.999)
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeJSON(w, http.StatusTooManyRequests, detailBody{Detail: rl.Error()})
	case errors.As(err, &mbe):
		writeJSON(w, http.StatusRequestEntityTooLarge, detailBody{Detail: fmt.Sprintf("Request body too large (limit %d bytes)", mbe.Limit)})
	case errors.Is(err, auth.ErrInvalid):
		msg := auth.Message(err)
		if field, m, ok := strings.Cut(msg, ": "); ok && !strings.Contains(field, " ") {
			writeJSON(w, http.StatusUnprocessableEntity, validationBody{Detail: []fieldError{{Type: "value_error", Loc: []string{"body", field}, Msg: m}}})
			return
		}
		writeJSON(w, http.StatusBadRequest, detailBody{Detail: msg})
	case errors.Is(err, auth.ErrExists):
		msg := strings.TrimPrefix(err.Error(), auth.ErrExists.Error()+": ")
		writeJSON(w, http.StatusBadRequest, detailBody{Detail: upperFirst(msg) + " already exists"})
	case errors.Is(err, auth.ErrInvalidCredentials):
		msg := err.Error()
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		writeJSON(w, http.StatusUnauthorized, detailBody{Detail: msg})
	case errors.Is(err, auth.ErrUnauthenticated), errors.Is(err, auth.ErrInvalidAPIKey):
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeJSON(w, http.StatusUnauthorized, detailBody{Detail: err.Error()})
	case errors.Is(err, auth.ErrSetupRequired):
		writeJSON(w, http.StatusUnauthorized, detailBody{Detail: err.Error()})
	case errors.Is(err, auth.ErrSetupDone), errors.Is(err, auth.ErrSetupInProgress):
		writeJSON(w, http.StatusConflict, detailBody{Detail: err.Error()})
	case errors.Is(err, auth.ErrRegistrationDisabled), errors.Is(err, auth.ErrForbidden):
		writeJSON(w, http.StatusForbidden, detailBody{Detail: err.Error()})
	case errors.Is(err, auth.ErrNotFound):
		writeJSON(w, http.StatusNotFound, detailBody{Detail: "Not found"})
	case errors.Is(err, auth.ErrBusy):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, detailBody{Detail: err.Error()})
	default:
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeJSON(w, http.StatusInternalServerError, detailBody{Detail: "Internal server error"})
	}
}

// workerMessage is the detail of a refused worker request: the sentence after the
// sentinel's prefix ("invalid worker request: name is required" → "Name is required").
func workerMessage(err error) string {
	for _, sent := range []error{workers.ErrInvalid, workers.ErrBusy} {
		if errors.Is(err, sent) {
			return upperFirst(withoutSentinel(err, sent))
		}
	}
	return upperFirst(err.Error())
}

// withoutSentinel is err's message without the words of the sentinel it wraps: what
// follows "<sentinel>: ", or the message less a trailing ": <sentinel>".
func withoutSentinel(err, sentinel error) string {
	msg, words := err.Error(), sentinel.Error()
	if _, after, ok := strings.Cut(msg, words+": "); ok {
		return after
	}
	return strings.TrimSuffix(msg, ": "+words)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// writeJSON writes v as the JSON body with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

// decodeJSON reads the request body into v: the one place every JSON body is decoded.
// Unknown fields are ignored, as SimpleTuner's pydantic models do; malformed JSON, a
// body nested deeper than jsondoc.MaxDepth and anything but whitespace after the JSON
// value are 422s that say what is wrong. Nesting is checked before decoding, so a
// thousands-deep body costs one pass over its bytes.
func decodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return errorf(http.StatusUnsupportedMediaType, "Send the body as JSON with Content-Type: application/json (got %q)", ct)
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		if te := transportError(err); te != nil {
			return te
		}
		return errorf(http.StatusBadRequest, "Cannot read the request body: %v", err)
	}
	return jsonBodyError(jsondoc.Decode(data, v), "body")
}

// jsonBodyError maps a jsondoc decoding error of the body part at loc to its 422.
func jsonBodyError(err error, loc ...string) error {
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF):
		return &validationError{fieldError{Type: "missing", Loc: loc, Msg: "Field required: send a JSON object"}}
	case errors.Is(err, jsondoc.ErrTooDeep):
		return &validationError{fieldError{Type: "json_too_deep", Loc: loc, Msg: err.Error() + "; flatten the value"}}
	case errors.As(err, &te):
		return &validationError{fieldError{Type: "type_error", Loc: append(loc, te.Field), Msg: fmt.Sprintf("expected %s", te.Type)}}
	}
	return &validationError{fieldError{Type: "json_invalid", Loc: loc, Msg: "JSON decode error: " + err.Error()}}
}

// validationError is a 422 with a FastAPI-shaped body.
type validationError struct{ fe fieldError }

func (e *validationError) Error() string { return e.fe.Msg }

// writeConfigValidation answers a rejected configuration with every message (SimpleTuner
// only says "Configuration validation failed"): 403 when the only problem is a missing
// permission (hook scripts need job.hooks), else 422 with one entry per problem.
func writeConfigValidation(w http.ResponseWriter, ve *configs.ValidationError) {
	errs := ve.Issues.Errors()
	if ve.Forbidden() {
		writeJSON(w, http.StatusForbidden, detailBody{Detail: "Permission denied: " + strings.Join(errs.Messages(), "; ")})
		return
	}
	out := make([]fieldError, 0, len(errs))
	for _, i := range errs {
		loc := []string{"body", ve.Subject}
		if i.Option != "" {
			loc = append(loc, i.Option)
		}
		out = append(out, fieldError{Type: "value_error", Loc: loc, Msg: i.Message})
	}
	writeJSON(w, http.StatusUnprocessableEntity, validationBody{Detail: out})
}
