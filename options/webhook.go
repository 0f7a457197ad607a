package options

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// isInlineJSON reports whether a JSON option's value is the document itself rather
// than a path to it.
func isInlineJSON(s string) bool {
	s = strings.TrimSpace(s)
	return strings.HasPrefix(s, "[") || strings.HasPrefix(s, "{")
}

// webhookEntries decodes an inline --webhook_config: a list of objects or one object.
func webhookEntries(s string) ([]map[string]any, error) {
	var doc any
	if err := json.Unmarshal([]byte(s), &doc); err != nil {
		return nil, fmt.Errorf("not valid JSON: %v", err)
	}
	var list []any
	switch d := doc.(type) {
	case []any:
		list = d
	case map[string]any:
		list = []any{d}
	default:
		return nil, fmt.Errorf("want a JSON list of webhook objects")
	}
	out := make([]map[string]any, 0, len(list))
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("webhook %d is not a JSON object", i+1)
		}
		out = append(out, m)
	}
	return out, nil
}

var webhookLogLevels = map[string]bool{"critical": true, "error": true, "warning": true, "info": true, "debug": true}

// checkWebhookConfig checks an inline webhook list against SimpleTuner's webhook format; a value that
// is not inline JSON must name a .json file.
func checkWebhookConfig(v any) string {
	s, _ := v.(string)
	if !isInlineJSON(s) {
		if !strings.HasSuffix(strings.ToLower(s), ".json") {
			return "want inline JSON ([{\"webhook_type\":\"raw\",\"callback_url\":\"https://…\"}]) or a path to a .json file"
		}
		return ""
	}
	entries, err := webhookEntries(s)
	if err != nil {
		return err.Error()
	}
	for i, e := range entries {
		n := i + 1
		typ, _ := e["webhook_type"].(string)
		var field, target string
		switch typ {
		case "raw":
			field, target = firstString(e, "callback_url", "webhook_url")
			if target == "" {
				return fmt.Sprintf("webhook %d: a raw webhook needs callback_url", n)
			}
		case "discord":
			field, target = firstString(e, "webhook_url")
			if target == "" {
				return fmt.Sprintf("webhook %d: a discord webhook needs webhook_url", n)
			}
		default:
			return fmt.Sprintf("webhook %d: webhook_type must be \"raw\" or \"discord\"", n)
		}
		// Both values go out in HTTP requests: a line break cannot be sent (and must never
		// start a header). Messages do not quote URLs, whose paths may hold secrets.
		tok, _ := e["auth_token"].(string)
		for _, f := range [][2]string{{field, target}, {"auth_token", tok}} {
			if hasControl(f[1]) {
				return fmt.Sprintf("webhook %d: %s: must not contain line breaks or other control characters (it is sent in HTTP requests)", n, f[0])
			}
		}
		if u, err := url.Parse(target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Sprintf("webhook %d: %s must be an absolute http(s) URL", n, field)
		}
		if lvl, ok := e["log_level"]; ok {
			if s, _ := lvl.(string); !webhookLogLevels[s] {
				return fmt.Sprintf("webhook %d: log_level must be one of critical, error, warning, info, debug", n)
			}
		}
		if x, ok := e["ssl_no_verify"]; ok {
			if _, isBool := x.(bool); !isBool {
				return fmt.Sprintf("webhook %d: ssl_no_verify must be true or false", n)
			}
		}
	}
	return ""
}

// webhookSkipsTLS reports whether any inline webhook turns TLS verification off.
func webhookSkipsTLS(s string) bool {
	entries, err := webhookEntries(s)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if b, _ := e["ssl_no_verify"].(bool); b {
			return true
		}
	}
	return false
}

// firstString returns the first of keys that holds a non-empty string, and its value.
func firstString(m map[string]any, keys ...string) (string, string) {
	for _, k := range keys {
		if s, _ := m[k].(string); s != "" {
			return k, s
		}
	}
	return keys[0], ""
}

// hasControl reports whether s holds an ASCII control character (CR and LF among them).
func hasControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0
}
