package webhooks

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"golang.org/x/net/idna"

	"simpletuner/options"
)

// Webhook types, as SimpleTuner names them.
const (
	TypeRaw     = options.WebhookRaw
	TypeDiscord = options.WebhookDiscord
)

// Config is one entry of --webhook_config after Parse: the registry's options.Webhook
// (its fields are documented there), as the dispatcher sends to it. It holds secrets (the
// URL's path, AuthToken), so its String and LogValue forms are redacted.
type Config options.Webhook

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

// Parse decodes --webhook_config with the options registry's reader
// (options.ParseWebhooks), the one that validates the option: a JSON list of webhook
// objects or a single object; the caller resolves a path value to the file's bytes first.
// An empty value means no webhooks. SimpleTuner's SIMPLETUNER_SSL_NO_VERIFY environment
// override is not honoured: turning verification off is per webhook and needs job.hooks.
// Errors wrap ErrInvalidConfig and name the webhook (1-based) and the field.
func Parse[T ~string | ~[]byte](raw T) ([]Config, error) {
	ws, err := options.ParseWebhooks(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if len(ws) == 0 {
		return nil, nil
	}
	out := make([]Config, len(ws))
	for i, w := range ws {
		out[i] = Config(w)
	}
	return out, nil
}

// Validate applies the destination policy to each webhook's URL: literal addresses (in
// every numeric and IPv4-mapped spelling) and known metadata names are checked here;
// names are checked again after resolution, at dial time. Errors wrap both
// ErrInvalidConfig and ErrBlocked.
func Validate(cfgs []Config, p Policy) error {
	for i, c := range cfgs {
		if err := options.CheckWebhookURL(c.URL); err != nil {
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
