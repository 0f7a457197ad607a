package webhooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"golang.org/x/net/idna"
)

// Webhook types, as SimpleTuner names them.
const (
	TypeRaw     = "raw"
	TypeDiscord = "discord"
)

// Config is one entry of --webhook_config after Parse. It holds secrets (the URL's path,
// AuthToken), so its String and LogValue forms are redacted.
type Config struct {
	// Type is TypeRaw or TypeDiscord.
	Type string
	// URL is the POST target: callback_url (or webhook_url) for raw, webhook_url for discord.
	URL string
	// LogLevel is critical, error, warning, info (default) or debug: events less severe
	// than it are not sent.
	LogLevel string
	// SSLNoVerify turns TLS certificate verification off for this webhook; setting it
	// needs the job.hooks permission (NeedsHooksPermission).
	SSLNoVerify bool
	// AuthToken, raw only, is sent as "Authorization: Bearer <token>" and, for receivers
	// written against SimpleTuner, as "X-API-Key: <token>".
	AuthToken string
	// MessagePrefix, discord only, is shown as "`(<prefix>)` " before each message.
	MessagePrefix string
}

// String is the redacted form, so %v never prints a secret.
func (c Config) String() string {
	tok := ""
	if c.AuthToken != "" {
		tok = " auth_token=***"
	}
	return fmt.Sprintf("%s webhook %s log_level=%s ssl_no_verify=%t%s", c.Type, RedactURL(c.URL), c.LogLevel, c.SSLNoVerify, tok)
}

// GoString keeps %#v redacted too.
func (c Config) GoString() string { return "webhooks.Config{" + c.String() + "}" }

// MarshalJSON is the redacted form too: slog's JSON handler marshals a []Config element
// by element without LogValue, and a status view may serialise configs. Nothing reads a
// Config back from JSON; --webhook_config itself is the persistent form.
func (c Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Type          string `json:"webhook_type"`
		Target        string `json:"target"`
		LogLevel      string `json:"log_level"`
		SSLNoVerify   bool   `json:"ssl_no_verify"`
		AuthTokenSet  bool   `json:"auth_token_set"`
		MessagePrefix string `json:"message_prefix,omitempty"`
	}{c.Type, RedactURL(c.URL), c.LogLevel, c.SSLNoVerify, c.AuthToken != "", c.MessagePrefix})
}

// LogValue makes slog print the redacted form.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("type", c.Type),
		slog.String("target", RedactURL(c.URL)),
		slog.String("log_level", c.LogLevel),
		slog.Bool("ssl_no_verify", c.SSLNoVerify),
		slog.Bool("auth_token_set", c.AuthToken != ""),
	)
}

// logLevels orders severities as SimpleTuner does: an event is sent iff its level is ≤
// the webhook's (critical=0 … debug=4). "success" is SimpleTuner's info-level severity.
var logLevels = map[string]int{
	"critical": 0, "fatal": 0,
	"error":   1,
	"warning": 2, "warn": 2,
	"info": 3, "success": 3,
	"debug": 4,
}

// canonicalLevel maps accepted spellings onto the five names SimpleTuner uses.
var canonicalLevel = map[string]string{
	"critical": "critical", "error": "error", "warning": "warning", "warn": "warning",
	"info": "info", "debug": "debug",
}

// Parse decodes --webhook_config: a JSON list of webhook objects or a single object
// (SimpleTuner's format). The caller resolves a path value to the file's bytes first. An empty
// value means no webhooks. Keys SimpleTuner does not define are ignored, as SimpleTuner
// ignores them. SimpleTuner's SIMPLETUNER_SSL_NO_VERIFY environment override is not
// honoured: turning verification off is per webhook and needs job.hooks. Errors wrap
// ErrInvalidConfig and name the webhook (1-based) and the field.
func Parse[T ~string | ~[]byte](raw T) ([]Config, error) {
	b := bytes.TrimSpace([]byte(raw))
	if len(b) == 0 {
		return nil, nil
	}
	var entries []json.RawMessage
	switch b[0] {
	case '[':
		if err := json.Unmarshal(b, &entries); err != nil {
			return nil, fmt.Errorf("%w: not a JSON list of webhook objects: %v", ErrInvalidConfig, err)
		}
	case '{':
		entries = []json.RawMessage{b}
	default:
		return nil, fmt.Errorf("%w: want inline JSON ([{\"webhook_type\":\"raw\",\"callback_url\":\"https://…\"}]); resolve a file path before parsing", ErrInvalidConfig)
	}
	out := make([]Config, 0, len(entries))
	for i, e := range entries {
		c, err := parseEntry(e)
		if err != nil {
			return nil, fmt.Errorf("%w: webhook %d: %s", ErrInvalidConfig, i+1, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// fieldError names the offending key; parseEntry's caller adds the webhook number.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

func parseEntry(raw json.RawMessage) (Config, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return Config{}, fmt.Errorf("not a JSON object")
	}
	str := func(key string) (string, error) {
		v, ok := m[key]
		if !ok || string(v) == "null" {
			return "", nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", &fieldError{key, "must be a string"}
		}
		return strings.TrimSpace(s), nil
	}
	var c Config
	typ, err := str("webhook_type")
	if err != nil {
		return c, err
	}
	c.Type = strings.ToLower(typ)
	switch c.Type {
	case "":
		return c, &fieldError{"webhook_type", "is required (\"raw\" or \"discord\")"}
	case TypeRaw:
		cb, err := str("callback_url")
		if err != nil {
			return c, err
		}
		wu, err := str("webhook_url")
		if err != nil {
			return c, err
		}
		field := "callback_url"
		c.URL = cb
		if c.URL == "" {
			field, c.URL = "webhook_url", wu
		}
		if c.URL == "" {
			return c, &fieldError{"callback_url", "is required for a raw webhook"}
		}
		if err := checkURLSyntax(c.URL); err != nil {
			return c, &fieldError{field, err.Error()}
		}
	case TypeDiscord:
		if c.URL, err = str("webhook_url"); err != nil {
			return c, err
		}
		if c.URL == "" {
			return c, &fieldError{"webhook_url", "is required for a discord webhook"}
		}
		if err := checkURLSyntax(c.URL); err != nil {
			return c, &fieldError{"webhook_url", err.Error()}
		}
	default:
		return c, &fieldError{"webhook_type", fmt.Sprintf("must be \"raw\" or \"discord\", not %q", clip(typ))}
	}
	lvl, err := str("log_level")
	if err != nil {
		return c, err
	}
	c.LogLevel = "info"
	if lvl != "" {
		canon, ok := canonicalLevel[strings.ToLower(lvl)]
		if !ok {
			return c, &fieldError{"log_level", fmt.Sprintf("must be one of critical, error, warning, info, debug, not %q", clip(lvl))}
		}
		c.LogLevel = canon
	}
	if v, ok := m["ssl_no_verify"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &c.SSLNoVerify); err != nil {
			return c, &fieldError{"ssl_no_verify", "must be true or false"}
		}
	}
	if c.AuthToken, err = str("auth_token"); err != nil {
		return c, err
	}
	if err := checkToken(c.AuthToken); err != nil {
		return c, &fieldError{"auth_token", err.Error()}
	}
	if c.MessagePrefix, err = str("message_prefix"); err != nil {
		return c, err
	}
	return c, nil
}

// checkToken refuses an auth_token no delivery could send: it goes out in the
// Authorization and X-API-Key headers, where a line break or other control character
// makes every request fail (or, in a client that allowed it, would start a new header);
// and the placeholder views show in place of a stored token is not a token.
func checkToken(tok string) error {
	if hasControl(tok) {
		return errors.New("must not contain line breaks or other control characters (it is sent as an HTTP header)")
	}
	if tok == Hidden {
		return fmt.Errorf("is the placeholder %s that views show in place of the stored token; send the real token", Hidden)
	}
	return nil
}

// hasControl reports whether s holds an ASCII control character (CR and LF among them).
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// checkURLSyntax accepts absolute http(s) URLs without userinfo, control characters or
// the placeholder views show in place of a URL's secret path. Its messages never include
// the URL, which may hold a secret.
func checkURLSyntax(raw string) error {
	if hasControl(raw) {
		return fmt.Errorf("must not contain line breaks or other control characters")
	}
	if raw == Hidden || strings.HasSuffix(raw, "/"+Hidden) {
		return fmt.Errorf("ends in the placeholder %s that views show in place of the URL's path; send the whole URL", Hidden)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("must be an http or https URL")
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("has no host")
	}
	if u.User != nil {
		return fmt.Errorf("must not carry credentials before the host; use auth_token")
	}
	return nil
}

// Validate applies the destination policy to each webhook's URL: literal addresses (in
// every numeric and IPv4-mapped spelling) and known metadata names are checked here;
// names are checked again after resolution, at dial time. Errors wrap both
// ErrInvalidConfig and ErrBlocked.
func Validate(cfgs []Config, p Policy) error {
	for i, c := range cfgs {
		if err := checkURLSyntax(c.URL); err != nil {
			return fmt.Errorf("%w: webhook %d: %s", ErrInvalidConfig, i+1, err)
		}
		if err := p.CheckURL(c.URL); err != nil {
			return fmt.Errorf("%w: webhook %d: %w", ErrInvalidConfig, i+1, err)
		}
	}
	return nil
}

// CheckURL applies the policy to a URL's host as the HTTP transport will see it (IDNA
// mapped, so full-width digits become an address literal). The error, wrapping
// ErrBlocked, names the host's class but not the URL.
func (p Policy) CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: unparsable URL", ErrBlocked)
	}
	host := u.Hostname()
	if !isASCII(host) {
		a, err := idna.Lookup.ToASCII(host)
		if err != nil {
			return fmt.Errorf("%w: host is not a valid domain name", ErrBlocked)
		}
		host = a
	}
	if ip, ok := hostIP(host); ok {
		return p.CheckAddr(ip)
	}
	return p.checkHostName(host)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// NeedsHooksPermission reports whether any webhook turns TLS verification off, which only
// holders of job.hooks may do (docs/security.md, row W5).
func NeedsHooksPermission(cfgs []Config) bool {
	for _, c := range cfgs {
		if c.SSLNoVerify {
			return true
		}
	}
	return false
}

// clip shortens user input echoed in an error message.
func clip(s string) string {
	const n = 40
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// Load reads a --webhook_config value: inline JSON (an object or a list), or the path of
// a JSON file (already resolved by the options registry), read with read. read must be
// the daemon's confined reader (configs.Service.ReadFile: inside the allowed roots, a
// regular file, size-capped), never os.ReadFile: the path comes from a request. Its error
// comes back wrapped with ErrInvalidConfig; its text must not quote the file.
func Load(value string, read func(path string) ([]byte, error)) ([]Config, error) {
	v := strings.TrimSpace(value)
	if strings.HasPrefix(v, "[") || strings.HasPrefix(v, "{") {
		return Parse(v)
	}
	b, err := read(v)
	if err != nil {
		return nil, fmt.Errorf("%w: webhook config: %w", ErrInvalidConfig, err)
	}
	return Parse(b)
}
