package options

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"simpletuner/internal/errmsg"
)

// isInlineJSON reports whether a JSON option's value is the document itself rather
// than a path to it.
func isInlineJSON(s string) bool {
	s = strings.TrimSpace(s)
	return strings.HasPrefix(s, "[") || strings.HasPrefix(s, "{")
}

// Webhook kinds, as SimpleTuner names them.
const (
	WebhookRaw     = "raw"
	WebhookDiscord = "discord"
)

// WebhookSecretShown is what a view shows in place of a stored webhook secret (a URL's
// path, an auth_token): a value is set, and it is not shown. A webhook that still holds
// it was copied from a view, and is refused.
const WebhookSecretShown = "<set>"

// Webhook is one entry of --webhook_config, read by ParseWebhooks. The registry checks
// the option with it and the daemon's dispatcher (supervisor/webhooks) sends to it, so
// a webhook list that validates is one that is delivered.
type Webhook struct {
	// Type is WebhookRaw or WebhookDiscord.
	Type string
	// URL is the POST target: callback_url (or webhook_url) for raw, webhook_url for
	// discord. It may hold a secret in its path.
	URL string
	// LogLevel is critical, error, warning, info (default) or debug: events less severe
	// than it are not sent.
	LogLevel string
	// SSLNoVerify turns TLS certificate verification off for this webhook; setting it
	// needs the job.hooks permission.
	SSLNoVerify bool
	// AuthToken, raw only, is sent as "Authorization: Bearer <token>" and, for receivers
	// written against SimpleTuner, as "X-API-Key: <token>".
	AuthToken string
	// MessagePrefix, discord only, is shown as "`(<prefix>)` " before each message.
	MessagePrefix string
}

// webhookLevels maps the accepted log_level spellings onto the five SimpleTuner uses.
var webhookLevels = map[string]string{
	"critical": "critical", "error": "error", "warning": "warning", "warn": "warning",
	"info": "info", "debug": "debug",
}

// ParseWebhooks reads an inline --webhook_config: a JSON list of webhook objects or a
// single object (SimpleTuner's format); a path must be resolved to the file's bytes
// first. An empty value means no webhooks. Keys the format does not list are ignored, as
// SimpleTuner ignores them. Errors wrap ErrInvalidValue and name the webhook (1-based)
// and the field: "webhook 2: callback_url: is required for a raw webhook". They never
// quote a URL, whose path may hold a secret.
func ParseWebhooks[T ~string | ~[]byte](raw T) ([]Webhook, error) {
	b := bytes.TrimSpace([]byte(raw))
	if len(b) == 0 {
		return nil, nil
	}
	var entries []json.RawMessage
	switch b[0] {
	case '[':
		if err := json.Unmarshal(b, &entries); err != nil {
			return nil, errmsg.New(ErrInvalidValue, "not a JSON list of webhook objects: %v", err)
		}
	case '{':
		entries = []json.RawMessage{b}
	default:
		return nil, errmsg.New(ErrInvalidValue, "want inline JSON ([{\"webhook_type\":\"raw\",\"callback_url\":\"https://…\"}]); resolve a file path before parsing")
	}
	out := make([]Webhook, 0, len(entries))
	for i, e := range entries {
		w, err := parseWebhook(e)
		if err != nil {
			return nil, errmsg.New(ErrInvalidValue, "webhook %d: %s", i+1, err)
		}
		out = append(out, w)
	}
	return out, nil
}

// webhookFieldError names the offending key; ParseWebhooks adds the webhook number.
type webhookFieldError struct{ field, msg string }

func (e *webhookFieldError) Error() string { return e.field + ": " + e.msg }

func parseWebhook(raw json.RawMessage) (Webhook, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return Webhook{}, errors.New("not a JSON object")
	}
	str := func(key string) (string, error) {
		v, ok := m[key]
		if !ok || string(v) == "null" {
			return "", nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", &webhookFieldError{key, "must be a string"}
		}
		return strings.TrimSpace(s), nil
	}
	var w Webhook
	typ, err := str("webhook_type")
	if err != nil {
		return w, err
	}
	w.Type = strings.ToLower(typ)
	switch w.Type {
	case "":
		return w, &webhookFieldError{"webhook_type", "is required (\"raw\" or \"discord\")"}
	case WebhookRaw:
		cb, err := str("callback_url")
		if err != nil {
			return w, err
		}
		wu, err := str("webhook_url")
		if err != nil {
			return w, err
		}
		field := "callback_url"
		w.URL = cb
		if w.URL == "" {
			field, w.URL = "webhook_url", wu
		}
		if w.URL == "" {
			return w, &webhookFieldError{"callback_url", "is required for a raw webhook"}
		}
		if err := CheckWebhookURL(w.URL); err != nil {
			return w, &webhookFieldError{field, err.Error()}
		}
	case WebhookDiscord:
		if w.URL, err = str("webhook_url"); err != nil {
			return w, err
		}
		if w.URL == "" {
			return w, &webhookFieldError{"webhook_url", "is required for a discord webhook"}
		}
		if err := CheckWebhookURL(w.URL); err != nil {
			return w, &webhookFieldError{"webhook_url", err.Error()}
		}
	default:
		return w, &webhookFieldError{"webhook_type", fmt.Sprintf("must be \"raw\" or \"discord\", not %q", clip(typ))}
	}
	lvl, err := str("log_level")
	if err != nil {
		return w, err
	}
	w.LogLevel = "info"
	if lvl != "" {
		canon, ok := webhookLevels[strings.ToLower(lvl)]
		if !ok {
			return w, &webhookFieldError{"log_level", fmt.Sprintf("must be one of critical, error, warning, info, debug, not %q", clip(lvl))}
		}
		w.LogLevel = canon
	}
	if v, ok := m["ssl_no_verify"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &w.SSLNoVerify); err != nil {
			return w, &webhookFieldError{"ssl_no_verify", "must be true or false"}
		}
	}
	if w.AuthToken, err = str("auth_token"); err != nil {
		return w, err
	}
	if err := checkWebhookToken(w.AuthToken); err != nil {
		return w, &webhookFieldError{"auth_token", err.Error()}
	}
	if w.MessagePrefix, err = str("message_prefix"); err != nil {
		return w, err
	}
	return w, nil
}

// checkWebhookToken refuses an auth_token no delivery could send: it goes out in the
// Authorization and X-API-Key headers, where a line break or other control character
// makes every request fail (or, in a client that allowed it, would start a new header);
// and the placeholder views show in place of a stored token is not a token.
func checkWebhookToken(tok string) error {
	if hasControl(tok) {
		return errors.New("must not contain line breaks or other control characters (it is sent as an HTTP header)")
	}
	if tok == WebhookSecretShown {
		return fmt.Errorf("is the placeholder %s that views show in place of the stored token; send the real token", WebhookSecretShown)
	}
	return nil
}

// CheckWebhookURL accepts absolute http(s) URLs without userinfo, control characters or
// the placeholder views show in place of a URL's secret path. Its messages never include
// the URL, which may hold a secret. Where the URL may point is the dispatcher's policy.
func CheckWebhookURL(raw string) error {
	if hasControl(raw) {
		return errors.New("must not contain line breaks or other control characters")
	}
	if raw == WebhookSecretShown || strings.HasSuffix(raw, "/"+WebhookSecretShown) {
		return fmt.Errorf("ends in the placeholder %s that views show in place of the URL's path; send the whole URL", WebhookSecretShown)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("must be an http or https URL")
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("has no host")
	}
	if u.User != nil {
		return errors.New("must not carry credentials before the host; use auth_token")
	}
	return nil
}

// checkWebhookConfig checks --webhook_config: inline JSON with ParseWebhooks; a value
// that is not inline JSON must name a .json file.
func checkWebhookConfig(v any) string {
	s, _ := v.(string)
	if !isInlineJSON(s) {
		if !strings.HasSuffix(strings.ToLower(s), ".json") {
			return "want inline JSON ([{\"webhook_type\":\"raw\",\"callback_url\":\"https://…\"}]) or a path to a .json file"
		}
		return ""
	}
	if _, err := ParseWebhooks(s); err != nil {
		return err.Error()
	}
	return ""
}

// webhookSkipsTLS reports whether any inline webhook turns TLS verification off.
func webhookSkipsTLS(s string) bool {
	ws, err := ParseWebhooks(s)
	if err != nil {
		return false
	}
	for _, w := range ws {
		if w.SSLNoVerify {
			return true
		}
	}
	return false
}

// hasControl reports whether s holds an ASCII control character (CR and LF among them).
func hasControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0
}
