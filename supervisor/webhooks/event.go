package webhooks

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/textproto"
	"strings"
	"time"

	"simpletuner/plugins"
)

// Event is one job event as the daemon's hub hands it over. Fields SimpleTuner puts at
// the top level of a webhook body (stage, progress, checkpoint, images, …) may travel
// inside Data; the raw body lifts them out (docs/compatibility.md §8).
type Event struct {
	// ID is the event's stable identifier (the hub's index); it is the idempotency key.
	// When empty, JobID and Seq make one.
	ID string
	// Seq is the per-job sequence number.
	Seq uint64
	// JobID defaults to the job the event is published for.
	JobID string
	// Type is the catalogue type: lifecycle.stage, training.status, training.progress,
	// training.checkpoint, training.validation, validation.image, notification, error,
	// job.status, debug, …
	Type string
	// Severity is critical, error, warning, info, success or debug.
	Severity string
	// Timestamp defaults to the time of Publish.
	Timestamp time.Time
	Title     string
	Message   string
	// Data is the event's JSON object payload.
	Data json.RawMessage
	// Images, Videos and Audios are data-URI assets: {"src":"data:image/png;base64,…",
	// "mime_type":"image/png"}.
	Images []Media
	Videos []Media
	Audios []Media
}

// Media is one attached asset.
type Media struct {
	Src      string `json:"src"`
	MimeType string `json:"mime_type"`
}

// level is the event's numeric severity for log_level filtering (lower is more severe).
func (ev *Event) level() int {
	if l, ok := logLevels[strings.ToLower(ev.Severity)]; ok {
		return l
	}
	if strings.HasPrefix(ev.Type, "debug") {
		return logLevels["debug"]
	}
	return logLevels["info"]
}

// dataStatus is data.status, which tells a per-step training.status from a final one.
func (ev *Event) dataStatus() string {
	var d struct {
		Status string `json:"status"`
	}
	if len(ev.Data) > 0 {
		_ = json.Unmarshal(ev.Data, &d)
	}
	return d.Status
}

// legacyTrainingProgress is an older SimpleTuner spelling of training.progress that its
// trainers may still send; it is throttled the same way.
const legacyTrainingProgress = "training_progress"

// isProgress reports the events --webhook_reporting_interval throttles: training.progress
// and the per-step training.status ("running" with progress). A failed or otherwise final
// status, and anything at error severity, is not progress.
func (ev *Event) isProgress() bool {
	if ev.level() <= logLevels["error"] {
		return false
	}
	switch ev.Type {
	case plugins.EventTrainingProgress, legacyTrainingProgress:
		return true
	case plugins.EventTrainingStatus:
		s := ev.dataStatus()
		return s == "" || s == "running"
	}
	return false
}

// isEssential reports events a full queue never drops to make room for others:
// lifecycle, job status, checkpoint, validation and error events.
func (ev *Event) isEssential() bool {
	if ev.level() <= logLevels["error"] {
		return true
	}
	switch ev.Type {
	case plugins.EventJobStatus, plugins.EventLifecycleStage, plugins.EventTrainingCheckpoint, plugins.EventTrainingValidation,
		plugins.EventValidationImage, plugins.EventError, plugins.EventTrainingSummary, plugins.EventGPUFault:
		return true
	case plugins.EventTrainingStatus:
		return !ev.isProgress()
	}
	return false
}

// liftedKeys are copied from data to the top level of a raw body, where SimpleTuner's
// structured events carry them (docs/compatibility.md §7).
var liftedKeys = []string{"stage", "progress", "checkpoint", "validation", "fault", "body",
	"images", "videos", "audios"}

// rawBody is the JSON body of a raw webhook (docs/compatibility.md §8): the structured event with
// type, job_id, severity and timestamp filled in.
func rawBody(ev *Event) ([]byte, error) {
	m := map[string]any{}
	if len(ev.Data) > 0 && json.Valid(ev.Data) {
		var data map[string]json.RawMessage
		if json.Unmarshal(ev.Data, &data) == nil {
			for _, k := range liftedKeys {
				if v, ok := data[k]; ok {
					m[k] = v
				}
			}
		}
		m["data"] = ev.Data
	}
	if ev.ID != "" {
		m["id"] = ev.ID
	}
	m["type"] = ev.Type
	m["severity"] = ev.Severity
	m["job_id"] = ev.JobID
	m["timestamp"] = ev.Timestamp.UTC().Format(time.RFC3339Nano)
	if ev.Title != "" {
		m["title"] = ev.Title
	}
	if ev.Message != "" {
		m["message"] = ev.Message
	}
	if len(ev.Images) > 0 {
		m["images"] = ev.Images
	}
	if len(ev.Videos) > 0 {
		m["videos"] = ev.Videos
	}
	if len(ev.Audios) > 0 {
		m["audios"] = ev.Audios
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode raw webhook body: %w", err)
	}
	return b, nil
}

// Discord limits.
const (
	discordMaxContent = 2000
	discordMaxFiles   = 10
	discordMaxFile    = 8 << 20
)

// discordContent is the message text: "`(<prefix>)` <title>: <message>", at most 2000
// characters.
func discordContent(prefix string, ev *Event) string {
	title, msg := strings.TrimSpace(ev.Title), strings.TrimSpace(ev.Message)
	var text string
	switch {
	case title != "" && msg != "" && !strings.HasPrefix(msg, title):
		text = title + ": " + msg
	case msg != "":
		text = msg
	case title != "":
		text = title
	default:
		text = progressSummary(ev)
	}
	if prefix != "" {
		text = "`(" + prefix + ")` " + text
	}
	if r := []rune(text); len(r) > discordMaxContent {
		text = string(r[:discordMaxContent-1]) + "…"
	}
	return text
}

// progressSummary describes an event that has neither title nor message (per-step
// progress) from its data.
func progressSummary(ev *Event) string {
	var d struct {
		Step       *int64   `json:"step"`
		TotalSteps *int64   `json:"total_steps"`
		Percent    *float64 `json:"percent"`
		Loss       *float64 `json:"loss"`
		Progress   *struct {
			Current int64   `json:"current"`
			Total   int64   `json:"total"`
			Percent float64 `json:"percent"`
		} `json:"progress"`
	}
	if len(ev.Data) > 0 {
		_ = json.Unmarshal(ev.Data, &d)
	}
	switch {
	case d.Progress != nil:
		return fmt.Sprintf("%s: step %d/%d (%.1f%%)", ev.Type, d.Progress.Current, d.Progress.Total, d.Progress.Percent)
	case d.Step != nil && d.TotalSteps != nil:
		s := fmt.Sprintf("%s: step %d/%d", ev.Type, *d.Step, *d.TotalSteps)
		if d.Loss != nil {
			s += fmt.Sprintf(", loss %.4g", *d.Loss)
		}
		return s
	}
	return ev.Type
}

// attachment is a decoded image for a Discord message.
type attachment struct {
	name, mime string
	data       []byte
}

// eventImages collects the event's images: Images, or else data.images as SimpleTuner
// sends them (objects with src, or bare base64 PNG strings). Only data URIs and bare
// base64 are used; a URL src is never fetched (that would be another SSRF path).
func eventImages(ev *Event) []attachment {
	media := ev.Images
	if len(media) == 0 && len(ev.Data) > 0 {
		var d struct {
			Images []json.RawMessage `json:"images"`
		}
		if json.Unmarshal(ev.Data, &d) == nil {
			for _, raw := range d.Images {
				var m Media
				var s string
				if json.Unmarshal(raw, &m) == nil && m.Src != "" {
					media = append(media, m)
				} else if json.Unmarshal(raw, &s) == nil && s != "" {
					media = append(media, Media{Src: s, MimeType: "image/png"})
				}
			}
		}
	}
	var out []attachment
	for _, m := range media {
		if len(out) == discordMaxFiles {
			break
		}
		data, mime, ok := decodeAsset(m)
		if !ok || len(data) > discordMaxFile {
			continue
		}
		ext := "png"
		switch mime {
		case "image/jpeg":
			ext = "jpg"
		case "image/gif":
			ext = "gif"
		case "image/webp":
			ext = "webp"
		}
		out = append(out, attachment{name: fmt.Sprintf("image%d.%s", len(out), ext), mime: mime, data: data})
	}
	return out
}

// decodeAsset decodes a data URI ("data:image/png;base64,…") or bare base64.
func decodeAsset(m Media) ([]byte, string, bool) {
	src, mime := m.Src, m.MimeType
	if rest, ok := strings.CutPrefix(src, "data:"); ok {
		meta, payload, found := strings.Cut(rest, ",")
		if !found || !strings.HasSuffix(meta, ";base64") {
			return nil, "", false
		}
		if t := strings.TrimSuffix(meta, ";base64"); t != "" {
			mime = t
		}
		src = payload
	} else if strings.Contains(src, "://") {
		return nil, "", false
	}
	if mime == "" {
		mime = "image/png"
	}
	if !strings.HasPrefix(mime, "image/") {
		return nil, "", false
	}
	data, err := base64.StdEncoding.DecodeString(src)
	if err != nil {
		return nil, "", false
	}
	return data, mime, true
}

// discordBody is the request body for a Discord webhook: JSON {"content": …}, or a
// multipart form with payload_json and files[i] when the event has images. Mentions are
// disabled so a trainer message cannot ping @everyone.
func discordBody(prefix string, ev *Event) (body []byte, contentType string, err error) {
	type att struct {
		ID       int    `json:"id"`
		Filename string `json:"filename"`
	}
	payload := struct {
		Content         string         `json:"content"`
		AllowedMentions map[string]any `json:"allowed_mentions"`
		Attachments     []att          `json:"attachments,omitempty"`
	}{Content: discordContent(prefix, ev), AllowedMentions: map[string]any{"parse": []string{}}}
	files := eventImages(ev)
	for i, f := range files {
		payload.Attachments = append(payload.Attachments, att{ID: i, Filename: f.name})
	}
	pj, err := json.Marshal(payload)
	if err != nil {
		return nil, "", fmt.Errorf("encode discord payload: %w", err)
	}
	if len(files) == 0 {
		return pj, "application/json", nil
	}
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if err := w.WriteField("payload_json", string(pj)); err != nil {
		return nil, "", fmt.Errorf("encode discord form: %w", err)
	}
	for i, f := range files {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="files[%d]"; filename="%s"`, i, f.name))
		h.Set("Content-Type", f.mime)
		part, err := w.CreatePart(h)
		if err != nil {
			return nil, "", fmt.Errorf("encode discord form: %w", err)
		}
		if _, err := part.Write(f.data); err != nil {
			return nil, "", fmt.Errorf("encode discord form: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, "", fmt.Errorf("encode discord form: %w", err)
	}
	return buf.Bytes(), w.FormDataContentType(), nil
}
