package webhooks

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://discord.com/api/webhooks/123/abcTOKEN", "https://discord.com/***"},
		{"https://hooks.slack.com/services/T0/B0/XYZ", "https://hooks.slack.com/***"},
		{"http://127.0.0.1:8080/cb?token=abc", "http://127.0.0.1:8080/***"},
		{"http://user:pass@host.example:9/x", "http://host.example:9/***"},
		{"https://example.com", "https://example.com/***"},
		{"http://[::1]:80/p#frag", "http://[::1]:80/***"},
		{"  https://example.com/simpletuner ", "https://example.com/***"},
		{"not a url", "***"},
		{"/relative/path", "***"},
		{"", "***"},
		{"http://%zz/", "***"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := RedactURL(tc.in); got != tc.want {
				t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestSafeError(t *testing.T) {
	c := Config{URL: "http://127.0.0.1:9/api/webhooks/42/PATHSECRET99?k=QUERYSECRET", AuthToken: "st_AUTHSECRET1"}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"url.Error unwrapped", &url.Error{Op: "Post", URL: c.URL, Err: errors.New("connection refused")}, "connection refused"},
		{"URL inside message", fmt.Errorf("dial %s failed", c.URL), "dial *** failed"},
		{"path segment", errors.New("bad path PATHSECRET99"), "bad path ***"},
		{"token", errors.New("sent st_AUTHSECRET1"), "sent ***"},
		{"query", errors.New("q=k=QUERYSECRET"), "q=***"},
		{"nil", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := safeError(tc.err, c)
			if got != tc.want {
				t.Errorf("safeError = %q, want %q", got, tc.want)
			}
		})
	}
	long := safeError(errors.New(strings.Repeat("x", 1000)), c)
	if len([]rune(long)) > 301 {
		t.Errorf("not capped: %d runes", len([]rune(long)))
	}
}
