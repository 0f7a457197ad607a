package webhooks

import (
	"errors"
	"net/url"
	"strings"
)

// RedactURL returns the form of a webhook URL that may be logged or shown: scheme and host
// (with port) followed by "/***". Paths and queries of webhook URLs routinely carry the
// secret (Discord and Slack put the token in the path), and userinfo is dropped. A value
// that does not parse as an absolute URL becomes "***".
func RedactURL(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "***"
	}
	return u.Scheme + "://" + u.Host + "/***"
}

// safeError renders a delivery error for logs and stats without the webhook's secrets.
// *url.Error embeds the whole request URL, so it is unwrapped first; any remaining
// occurrence of the URL, its path, query or the auth token is masked as a backstop.
func safeError(err error, c Config) string {
	if err == nil {
		return ""
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	secrets := []string{c.URL, c.AuthToken}
	if u, perr := url.Parse(c.URL); perr == nil {
		secrets = append(secrets, u.RawQuery, u.EscapedPath(), u.Path)
		if u.User != nil {
			secrets = append(secrets, u.User.String())
		}
		for _, seg := range strings.Split(u.Path, "/") {
			secrets = append(secrets, seg)
		}
	}
	for _, s := range secrets {
		// Short fragments ("api", "v1") are not secrets and masking them would garble
		// the message.
		if len(s) >= 8 {
			msg = strings.ReplaceAll(msg, s, "***")
		}
	}
	if r := []rune(msg); len(r) > 300 {
		msg = string(r[:300]) + "…"
	}
	return msg
}
