package webhooks

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"strings"

	"simpletuner/internal/jsondoc"
	"simpletuner/options"
)

// Hidden is what a view shows in place of a stored secret: a value is set, and it is not
// shown. Job views have always shown a --webhook_config this way; the webhook reader
// refuses it as a URL's path or a token.
const Hidden = options.WebhookSecretShown

// shownKeys are the webhook keys that hold no secret: views show them as stored.
var shownKeys = map[string]bool{"webhook_type": true, "log_level": true, "ssl_no_verify": true, "message_prefix": true}

// urlKeys are the keys that hold a webhook's target URL.
var urlKeys = map[string]bool{"callback_url": true, "webhook_url": true}

// Shown returns the form of a --webhook_config value that may be shown to anyone who may
// read the environment or job that holds it (docs/security.md, webhook secrets). Inline
// webhooks (a JSON string, or the list or object a stored environment may hold) keep
// their structure: a URL keeps its scheme and host, and a path, query or fragment
// becomes "/<set>" (Discord and Slack put the token in the path); auth_token and every
// key SimpleTuner's webhook format does not list become Hidden. A path to a webhook file
// is shown as it is (the file is not), and an inline value that does not parse is
// Hidden as a whole.
// The result has v's representation; v is not modified.
func Shown(v any) any {
	d, err := parseInline(v)
	if errors.Is(err, errNotInline) {
		return v
	}
	if err != nil {
		return Hidden
	}
	out := make([]any, len(d.entries))
	for i, e := range d.entries {
		m, ok := e.(map[string]any)
		if !ok {
			out[i] = Hidden
			continue
		}
		shown := make(map[string]any, len(m))
		for k, val := range m {
			switch {
			case shownKeys[k], val == nil, val == "":
				shown[k] = val
			case urlKeys[k]:
				s, _ := val.(string)
				shown[k] = shownURL(s)
			default:
				shown[k] = Hidden
			}
		}
		out[i] = shown
	}
	return d.render(out)
}

// shownURL is a URL as views show it: unchanged when it has nothing beyond scheme and
// host, else scheme://host/<set>; Hidden when it does not parse as an absolute URL.
func shownURL(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return Hidden
	}
	if u.User == nil && (u.Path == "" || u.Path == "/") && u.RawQuery == "" && !u.ForceQuery && u.Fragment == "" {
		return raw
	}
	return u.Scheme + "://" + u.Host + "/" + Hidden
}

// KeepSecrets returns submitted with each placeholder that Shown puts in place of a
// secret replaced by the secret it stands for in stored (the value being replaced), so a
// client that loads a configuration, edits it and saves it back keeps its webhook
// secrets. Webhooks are matched by position, and a URL placeholder is taken only from a
// stored URL with the same scheme and host. A submitted value that is the bare Hidden
// keeps stored as a whole. A placeholder with nothing stored to keep is an error
// (wrapping ErrInvalidConfig and naming the webhook and key): storing the literal would
// break every delivery. A value without placeholders comes back unchanged.
func KeepSecrets(submitted, stored any) (any, error) {
	if s, ok := submitted.(string); ok && strings.TrimSpace(s) == Hidden {
		if stored == nil || stored == "" {
			return nil, fmt.Errorf("%w: the value is the placeholder %s that views show in place of a stored webhook config, and none is stored; send the webhooks", ErrInvalidConfig, Hidden)
		}
		return stored, nil
	}
	d, err := parseInline(submitted)
	if err != nil {
		return submitted, nil // a path, or not JSON: validation judges it
	}
	var old inlineDoc
	if o, err := parseInline(stored); err == nil {
		old = o
	}
	out := make([]any, len(d.entries))
	changed := false
	for i, e := range d.entries {
		out[i] = e
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		var prev map[string]any
		if i < len(old.entries) {
			prev, _ = old.entries[i].(map[string]any)
		}
		var kept map[string]any
		for k, v := range m {
			if !isPlaceholder(k, v) {
				continue
			}
			pv, has := prev[k]
			if !has || (urlKeys[k] && !sameShownURL(pv, v)) {
				return nil, fmt.Errorf("%w: webhook %d: %s is the placeholder %s that views show in place of a secret, and the stored webhook %d has no matching value to keep; send the real value",
					ErrInvalidConfig, i+1, clip(k), Hidden, i+1)
			}
			if kept == nil {
				kept = maps.Clone(m)
			}
			kept[k] = pv
		}
		if kept != nil {
			out[i], changed = kept, true
		}
	}
	if !changed {
		return submitted, nil
	}
	return d.render(out), nil
}

// isPlaceholder reports whether v, under key k, is a placeholder Shown writes.
func isPlaceholder(k string, v any) bool {
	s, ok := v.(string)
	if !ok || shownKeys[k] {
		return false
	}
	if urlKeys[k] {
		return s == Hidden || strings.HasSuffix(s, "/"+Hidden)
	}
	return s == Hidden
}

func sameShownURL(stored, shown any) bool {
	s, ok := stored.(string)
	return ok && shownURL(s) == shown
}

// errNotInline: the value is a path (or empty, or not a webhook value at all).
var errNotInline = errors.New("not inline webhooks")

// inlineDoc is an inline webhook value taken apart: its entries, and how to put them
// back in the value's representation.
type inlineDoc struct {
	entries []any
	list    bool // a list of webhooks, not one object
	str     bool // the value was JSON text
}

func parseInline(v any) (inlineDoc, error) {
	var doc any
	str := false
	switch x := v.(type) {
	case string:
		s := strings.TrimSpace(x)
		if !strings.HasPrefix(s, "[") && !strings.HasPrefix(s, "{") {
			return inlineDoc{}, errNotInline
		}
		if err := jsondoc.DecodeNumbers([]byte(s), &doc); err != nil {
			return inlineDoc{}, err
		}
		str = true
	case []any, map[string]any:
		doc = x
	default:
		return inlineDoc{}, errNotInline
	}
	switch d := doc.(type) {
	case []any:
		return inlineDoc{entries: d, list: true, str: str}, nil
	case map[string]any:
		return inlineDoc{entries: []any{d}, str: str}, nil
	}
	return inlineDoc{}, errors.New("not a list or object")
}

// render puts entries back in the document's representation.
func (d inlineDoc) render(entries []any) any {
	var v any = entries
	if !d.list && len(entries) == 1 {
		v = entries[0]
	}
	if !d.str {
		return v
	}
	b, err := jsondoc.Compact(v) // "<set>" stays readable
	if err != nil {
		return Hidden
	}
	return string(b)
}
