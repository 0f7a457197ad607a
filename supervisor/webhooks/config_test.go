package webhooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// seedWebhookConfig is the tutorial's --webhook_config value, verbatim ("アドホック実行の監視").
const seedWebhookConfig = `[{"webhook_type":"raw","callback_url":"https://example.com/simpletuner","log_level":"info","ssl_no_verify":false}]`

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Config
	}{
		{"seed example", seedWebhookConfig, []Config{{Type: TypeRaw, URL: "https://example.com/simpletuner", LogLevel: "info"}}},
		{"single object", `{"webhook_type":"raw","callback_url":"http://10.0.0.5:9000/cb"}`,
			[]Config{{Type: TypeRaw, URL: "http://10.0.0.5:9000/cb", LogLevel: "info"}}},
		{"raw via webhook_url", `[{"webhook_type":"raw","webhook_url":"http://h/x","log_level":"DEBUG","auth_token":"st_x","ssl_no_verify":true}]`,
			[]Config{{Type: TypeRaw, URL: "http://h/x", LogLevel: "debug", AuthToken: "st_x", SSLNoVerify: true}}},
		{"discord", `[{"webhook_type":"discord","webhook_url":"https://discord.com/api/webhooks/1/t","message_prefix":"proj","log_level":"warn"}]`,
			[]Config{{Type: TypeDiscord, URL: "https://discord.com/api/webhooks/1/t", LogLevel: "warning", MessagePrefix: "proj"}}},
		{"two", `[{"webhook_type":"raw","callback_url":"http://a/"},{"webhook_type":"discord","webhook_url":"http://b/"}]`,
			[]Config{{Type: TypeRaw, URL: "http://a/", LogLevel: "info"}, {Type: TypeDiscord, URL: "http://b/", LogLevel: "info"}}},
		{"empty", "  ", nil},
		{"empty list", "[]", []Config{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(len(got)) != fmt.Sprint(len(tc.want)) {
				t.Fatalf("got %d configs, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("config %d = %#v, want %#v (fields: %+v)", i, got[i], tc.want[i], []any{got[i].Type, got[i].LogLevel, got[i].SSLNoVerify})
				}
			}
			// The []byte form parses the same.
			if b, err := Parse([]byte(tc.in)); err != nil || len(b) != len(got) {
				t.Errorf("Parse([]byte) = %v, %v", b, err)
			}
		})
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{`not json`, "want inline JSON"},
		{`[1]`, "webhook 1: not a JSON object"},
		{`[{"callback_url":"http://a/"}]`, "webhook 1: webhook_type: is required"},
		{`[{"webhook_type":"slack","callback_url":"http://a/"}]`, `webhook_type: must be "raw" or "discord", not "slack"`},
		{`[{"webhook_type":"raw","callback_url":"http://a/"},{"webhook_type":"raw"}]`, "webhook 2: callback_url: is required"},
		{`[{"webhook_type":"discord","callback_url":"http://a/"}]`, "webhook_url: is required for a discord webhook"},
		{`[{"webhook_type":"raw","callback_url":"ftp://a/SECRETPATH"}]`, "callback_url: must be an http or https URL"},
		{`[{"webhook_type":"raw","callback_url":"http://u:SECRETPASS@a/"}]`, "callback_url: must not carry credentials"},
		{`[{"webhook_type":"raw","callback_url":"http:///SECRETPATH"}]`, "callback_url: has no host"},
		{`[{"webhook_type":"raw","callback_url":42}]`, "callback_url: must be a string"},
		{`[{"webhook_type":"raw","callback_url":"http://a/","log_level":"loud"}]`, "log_level: must be one of"},
		{`[{"webhook_type":"raw","callback_url":"http://a/","ssl_no_verify":"yes"}]`, "ssl_no_verify: must be true or false"},
		{`[{"webhook_type":"raw","callback_url":"http://a/","auth_token":5}]`, "auth_token: must be a string"},
		{`"str"`, "want inline JSON"},
		// Tokens go out as headers: a line break would fail (or split) every request.
		{`[{"webhook_type":"raw","callback_url":"http://a/","auth_token":"SECRET\r\nX-Injected: 1"}]`, "auth_token: must not contain line breaks"},
		{`[{"webhook_type":"raw","callback_url":"http://a/","auth_token":"SECRET\nTOKEN"}]`, "auth_token: must not contain line breaks"},
		{`[{"webhook_type":"raw","callback_url":"http://a/","auth_token":"SECRET\u0000"}]`, "auth_token: must not contain line breaks"},
		{`[{"webhook_type":"raw","callback_url":"http://a/SECRET\r\nPATH"}]`, "callback_url: must not contain line breaks"},
		{`[{"webhook_type":"discord","webhook_url":"https://discord.com/api/webhooks/1/SECRET\nX"}]`, "webhook_url: must not contain line breaks"},
		// The placeholders views show are not values.
		{`[{"webhook_type":"raw","callback_url":"http://a/","auth_token":"<set>"}]`, "auth_token: is the placeholder <set>"},
		{`[{"webhook_type":"raw","callback_url":"https://hooks.example.com/<set>"}]`, "callback_url: ends in the placeholder <set>"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			_, err := Parse(tc.in)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error echoes the URL's secret: %q", err)
			}
		})
	}
}

func TestNeedsHooksPermission(t *testing.T) {
	plain, _ := Parse(seedWebhookConfig)
	if NeedsHooksPermission(plain) {
		t.Error("seed config (ssl_no_verify false) needs job.hooks")
	}
	insecure, err := Parse(`[{"webhook_type":"raw","callback_url":"https://a/"},{"webhook_type":"raw","callback_url":"https://b/","ssl_no_verify":true}]`)
	if err != nil {
		t.Fatal(err)
	}
	if !NeedsHooksPermission(insecure) {
		t.Error("ssl_no_verify=true does not need job.hooks")
	}
	if NeedsHooksPermission(nil) {
		t.Error("no webhooks need job.hooks")
	}
}

// TestValidate covers W1's URL forms at validation time, for both policies.
func TestValidate(t *testing.T) {
	open := Policy{}
	strict := Policy{DenyPrivate: true}
	allowAll := Policy{DenyPrivate: true, Allow: []netip.Prefix{
		netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("fe80::/10")}}
	tests := []struct {
		url    string
		policy Policy
		class  string // "" = allowed
	}{
		{"http://169.254.169.254/latest/meta-data/", open, "cloud metadata"},
		{"http://169.254.169.254/latest/meta-data/", allowAll, "cloud metadata"},
		{"http://169.254.1.2/", allowAll, "link-local"},
		{"http://[::ffff:169.254.169.254]/", open, "cloud metadata"},
		{"http://[::ffff:a9fe:a9fe]/", open, "cloud metadata"},
		{"http://[fe80::1%25lo]/", open, "link-local"},
		{"http://[fe80::1%25lo]/", allowAll, "link-local"},
		{"http://0.0.0.0:8080/", open, "unspecified"},
		{"http://0:8080/", open, "unspecified"},
		{"http://[::]/", open, "unspecified"},
		{"http://2852039166/", open, "cloud metadata"},
		{"http://0xa9fea9fe/", open, "cloud metadata"},
		{"http://0251.0376.0251.0376/", open, "cloud metadata"},
		{"http://169.254.43518/", open, "cloud metadata"},
		{"http://169.254.169.254./", open, "cloud metadata"},
		{"http://１６９.２５４.１６９.２５４/", open, "cloud metadata"},
		{"http://metadata.google.internal/computeMetadata/v1/", open, "cloud metadata"},
		{"http://METADATA.google.internal./", open, "cloud metadata"},
		{"http://100.100.100.200/", open, "cloud metadata"},
		{"http://[fd00:ec2::254]/", open, "cloud metadata"},
		{"http://[64:ff9b::a9fe:a9fe]/", open, "cloud metadata"},
		{"http://224.0.0.1/", open, "multicast"},
		{"http://255.255.255.255/", open, "reserved"},
		{"http://localhost:8080/", open, ""},
		{"http://127.0.0.1:8080/", open, ""},
		{"http://10.1.2.3/", open, ""},
		{"https://example.com/simpletuner", open, ""},
		{"http://localhost:8080/", strict, "loopback"},
		{"http://app.localhost/", strict, "loopback"},
		{"http://127.0.0.1/", strict, "loopback"},
		{"http://2130706433/", strict, "loopback"},
		{"http://[::1]/", strict, "loopback"},
		{"http://[::ffff:127.0.0.1]/", strict, "loopback"},
		{"http://10.1.2.3/", strict, "private"},
		{"http://192.168.1.1/", strict, "private"},
		{"http://172.20.0.1/", strict, "private"},
		{"http://100.64.0.1/", strict, "carrier-grade NAT"},
		{"http://[fd12::1]/", strict, "unique-local"},
		{"http://[64:ff9b::a00:1]/", strict, "private"},
		{"http://127.0.0.1/", allowAll, ""},
		{"https://example.com/x", strict, ""},
		{"http://203.0.113.9/", strict, ""},
	}
	for _, tc := range tests {
		name := fmt.Sprintf("%s deny_private=%t allow=%d", tc.url, tc.policy.DenyPrivate, len(tc.policy.Allow))
		t.Run(name, func(t *testing.T) {
			err := Validate([]Config{rawCfg(tc.url)}, tc.policy)
			if tc.class == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrBlocked) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrBlocked and ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tc.class) {
				t.Errorf("err = %q, want class %q", err, tc.class)
			}
			if !strings.Contains(err.Error(), "webhook 1") {
				t.Errorf("err = %q does not name the webhook", err)
			}
		})
	}
}

func TestConfigFormattingIsRedacted(t *testing.T) {
	c := Config{Type: TypeDiscord, URL: "https://discord.com/api/webhooks/123/TOKENinPATH", AuthToken: "st_SECRETtoken", LogLevel: "info"}
	js, err := json.Marshal([]Config{c})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), fmt.Sprint([]Config{c}), string(js)} {
		if strings.Contains(s, "TOKENinPATH") || strings.Contains(s, "SECRETtoken") {
			t.Errorf("formatted config leaks a secret: %s", s)
		}
		if !strings.Contains(s, "https://discord.com/***") {
			t.Errorf("formatted config lost the redacted target: %s", s)
		}
	}
}
