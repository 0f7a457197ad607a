package events

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"simpletuner/plugins"
)

// Field caps. A trainer can put anything in an event; clients get bounded fields.
const (
	maxTitle   = 1 << 10
	maxMessage = 16 << 10
	// maxData caps an event's data; validation images make it the largest field.
	maxData = 8 << 20
	// maxName caps an event type (it becomes the SSE event name).
	maxName         = 64
	truncatedMarker = "…[truncated]"
)

// ansiRE matches ANSI escape sequences (CSI and OSC).
var ansiRE = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])`)

// secret patterns (docs/security.md row E6). Each keeps JSON intact when applied
// to encoded JSON: no replacement introduces or removes a quote or backslash.
var (
	apiKeyRE = regexp.MustCompile(`\b(st|hf)_[A-Za-z0-9_]{8,}`)
	urlRE    = regexp.MustCompile(`\b(https?|wss?)://([^\s"\\/?#]+)[^\s"\\]*`)
	envRE    = regexp.MustCompile(`\b([A-Za-z0-9_]*(?i:_TOKEN|_KEY|_SECRET|_PASSWORD))(["\\]*\s*[=:]\s*["\\]*)[^\s"\\,}]+`)
	headerRE = regexp.MustCompile(`(?i)\b(authorization|x-api-key|cookie)(["\\]*\s*[=:]\s*["\\]*)[^"\\\n]+`)
)

// Redact hides secrets in s: API keys, tokens, URL paths (kept as scheme://host/***),
// NAME_TOKEN=… style assignments and credential headers.
func Redact(s string) string {
	if !mayHoldSecret(s) {
		return s
	}
	s = apiKeyRE.ReplaceAllString(s, "${1}_***")
	s = urlRE.ReplaceAllString(s, "${1}://${2}/***")
	s = envRE.ReplaceAllString(s, "${1}${2}***")
	return headerRE.ReplaceAllString(s, "${1}${2}***")
}

// redactJSON applies Redact to encoded JSON (valid in, valid out).
func redactJSON(b []byte) []byte {
	if !mayHoldSecret(string(b)) {
		return b
	}
	out := []byte(Redact(string(b)))
	if !json.Valid(out) {
		// Should not happen; never trade a secret for a broken payload.
		out, _ = json.Marshal(map[string]any{"redacted": true})
	}
	return out
}

// mayHoldSecret is a cheap pre-check so the regular expressions run only on candidates.
func mayHoldSecret(s string) bool {
	for _, m := range secretHints {
		if strings.Contains(s, m) {
			return true
		}
	}
	l := strings.ToLower(s)
	for _, m := range secretHintsFold {
		if strings.Contains(l, m) {
			return true
		}
	}
	return false
}

// secretHints and secretHintsFold are substrings every secret pattern needs.
var (
	secretHints     = []string{"st_", "hf_", "://"}
	secretHintsFold = []string{"_token", "_key", "_secret", "_password", "authorization", "x-api-key", "cookie"}
)

// CleanText strips ANSI escapes and control characters (newlines become spaces when
// oneLine), repairs invalid UTF-8 and truncates to limit bytes with a marker.
func CleanText(s string, limit int, oneLine bool) string {
	if strings.IndexByte(s, 0x1b) >= 0 {
		s = ansiRE.ReplaceAllString(s, "")
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	clean := true
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			clean = false
			break
		}
	}
	if !clean {
		var b strings.Builder
		b.Grow(len(s))
		for _, r := range s {
			switch {
			case r == '\n' && !oneLine, r == '\t':
				b.WriteRune(r)
			case r == '\n' || r == '\r' || r == '\u2028' || r == '\u2029':
				b.WriteByte(' ')
			case unicode.IsControl(r):
			default:
				b.WriteRune(r)
			}
		}
		s = b.String()
	}
	if len(s) > limit {
		cut := limit - len(truncatedMarker)
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:max(cut, 0)] + truncatedMarker
	}
	return s
}

// safeName restricts an event type (it becomes the SSE "event:" line) to
// [A-Za-z0-9._:-], at most maxName bytes; anything else becomes "_".
func safeName(s string) string {
	if s == "" {
		return plugins.EventNotification
	}
	ok := len(s) <= maxName
	for i := 0; ok && i < len(s); i++ {
		ok = nameByte(s[i])
	}
	if ok {
		return s
	}
	b := make([]byte, 0, min(len(s), maxName))
	for i := 0; i < len(s) && len(b) < maxName; i++ {
		if nameByte(s[i]) {
			b = append(b, s[i])
		} else {
			b = append(b, '_')
		}
	}
	return string(b)
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-'
}

// sanitizeData compacts, redacts and caps an event's JSON data; nil stays nil.
func sanitizeData(d json.RawMessage) json.RawMessage {
	if len(d) == 0 {
		return nil
	}
	if !json.Valid(d) {
		b, _ := json.Marshal(map[string]any{"invalid_data": true})
		return b
	}
	if bytes.ContainsAny(d, "\n\r\t ") {
		var buf bytes.Buffer
		if json.Compact(&buf, d) == nil {
			d = buf.Bytes()
		}
	}
	if len(d) > maxData {
		b, _ := json.Marshal(map[string]any{"truncated": true, "bytes": len(d)})
		return b
	}
	return redactJSON(d)
}
