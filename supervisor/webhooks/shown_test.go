package webhooks

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

const storedHooks = `[{"webhook_type":"raw","callback_url":"https://hooks.example.com/cb/SECRETPATH?k=SECRETQUERY","auth_token":"st_SECRET","log_level":"info","ssl_no_verify":false,"custom":"SECRETX"},` +
	`{"webhook_type":"discord","webhook_url":"https://discord.com/api/webhooks/1/SECRETD","message_prefix":"team"}]`

const shownHooks = `[{"auth_token":"<set>","callback_url":"https://hooks.example.com/<set>","custom":"<set>","log_level":"info","ssl_no_verify":false,"webhook_type":"raw"},` +
	`{"message_prefix":"team","webhook_type":"discord","webhook_url":"https://discord.com/<set>"}]`

func decoded(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestShown(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want any
	}{
		{"inline text", storedHooks, shownHooks},
		{"stored as a list", decoded(t, storedHooks), decoded(t, shownHooks)},
		{"one object", `{"webhook_type":"raw","callback_url":"http://10.0.0.5:9000/SECRET","auth_token":"st_SECRET"}`,
			`{"auth_token":"<set>","callback_url":"http://10.0.0.5:9000/<set>","webhook_type":"raw"}`},
		{"URL without a path stays", `[{"webhook_type":"raw","callback_url":"https://hooks.example.com/"}]`,
			`[{"callback_url":"https://hooks.example.com/","webhook_type":"raw"}]`},
		{"credentials before the host", `[{"webhook_type":"raw","callback_url":"https://u:SECRET@a.example"}]`,
			`[{"callback_url":"https://a.example/<set>","webhook_type":"raw"}]`},
		{"unparsable URL", `[{"webhook_type":"raw","callback_url":"SECRET"}]`, `[{"callback_url":"<set>","webhook_type":"raw"}]`},
		{"empty token shown as empty", `[{"webhook_type":"raw","callback_url":"https://a.example","auth_token":""}]`,
			`[{"auth_token":"","callback_url":"https://a.example","webhook_type":"raw"}]`},
		{"a path is shown, not its file", "config/webhooks/team.json", "config/webhooks/team.json"},
		{"empty", "", ""},
		{"broken inline JSON is hidden whole", `[{"auth_token":"SECRET"`, Hidden},
		{"a non-object entry is hidden", `["SECRET"]`, `["<set>"]`},
		{"not a webhook value", 42, 42},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Shown(tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Shown = %#v\nwant    %#v", got, tc.want)
			}
			if b, _ := json.Marshal(got); strings.Contains(string(b), "SECRET") {
				t.Errorf("shown form carries a secret: %s", b)
			}
		})
	}
	// The stored value is not modified.
	in := decoded(t, storedHooks)
	Shown(in)
	if !reflect.DeepEqual(in, decoded(t, storedHooks)) {
		t.Error("Shown modified its argument")
	}
}

func TestKeepSecrets(t *testing.T) {
	tests := []struct {
		name              string
		submitted, stored any
		want              any
		err               string
	}{
		{"shown form sent back", shownHooks, storedHooks, normalised(t, storedHooks), ""},
		{"list sent back", decoded(t, shownHooks), storedHooks, decoded(t, storedHooks), ""},
		{"bare placeholder keeps the whole value", Hidden, storedHooks, storedHooks, ""},
		{"a new token replaces the stored one",
			`[{"webhook_type":"raw","callback_url":"https://hooks.example.com/<set>","auth_token":"st_NEW"}]`, storedHooks,
			`[{"auth_token":"st_NEW","callback_url":"https://hooks.example.com/cb/SECRETPATH?k=SECRETQUERY","webhook_type":"raw"}]`, ""},
		{"no placeholders: unchanged, byte for byte", ` [{"webhook_type":"raw", "callback_url":"https://x.example/a"}]`, storedHooks,
			` [{"webhook_type":"raw", "callback_url":"https://x.example/a"}]`, ""},
		{"a path: unchanged", "webhooks/team.json", storedHooks, "webhooks/team.json", ""},
		{"URL placeholder for another host", `[{"webhook_type":"raw","callback_url":"https://evil.example/<set>"}]`, storedHooks,
			nil, "webhook 1: callback_url is the placeholder <set>"},
		{"nothing stored", `[{"webhook_type":"raw","callback_url":"https://a.example/","auth_token":"<set>"}]`, nil,
			nil, "webhook 1: auth_token is the placeholder <set>"},
		{"more webhooks than stored", `[{"webhook_type":"raw","callback_url":"https://a.example/"},{"webhook_type":"raw","callback_url":"https://a.example/","auth_token":"<set>"}]`,
			`[{"webhook_type":"raw","callback_url":"https://a.example/","auth_token":"x"}]`, nil, "webhook 2: auth_token is the placeholder"},
		{"stored is a path", `[{"webhook_type":"raw","callback_url":"https://a.example/","auth_token":"<set>"}]`, "webhooks/team.json",
			nil, "the stored webhook 1 has no matching value"},
		{"bare placeholder, nothing stored", Hidden, nil, nil, "none is stored"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := KeepSecrets(tc.submitted, tc.stored)
			if tc.err != "" {
				if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want ErrInvalidConfig with %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "SECRET") {
					t.Errorf("error shows a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("KeepSecrets = %#v\nwant          %#v", got, tc.want)
			}
		})
	}
}

// normalised is s as KeepSecrets writes JSON text: compact, keys sorted, HTML unescaped.
func normalised(t *testing.T, s string) string {
	t.Helper()
	return inlineDoc{list: true, str: true}.render(decoded(t, s).([]any)).(string)
}

// TestShownThenKeptRoundTrips holds the contract the API relies on: whatever Shown
// shows, KeepSecrets turns back into the stored value.
func TestShownThenKeptRoundTrips(t *testing.T) {
	for _, stored := range []any{storedHooks, decoded(t, storedHooks), `{"webhook_type":"raw","callback_url":"https://a.example/x","auth_token":"t"}`, "webhooks/a.json"} {
		got, err := KeepSecrets(Shown(stored), stored)
		if err != nil {
			t.Fatalf("%v: %v", stored, err)
		}
		a, _ := json.Marshal(Shown(got))
		b, _ := json.Marshal(Shown(stored))
		if string(a) != string(b) {
			t.Errorf("round trip of %v: %s, want %s", stored, a, b)
		}
		if s, ok := stored.(string); ok {
			if p, err := parseInline(s); err == nil {
				if !reflect.DeepEqual(must(parseInline(got)).entries, p.entries) {
					t.Errorf("round trip of %v gave %v", stored, got)
				}
			}
		}
	}
}

func must(d inlineDoc, err error) inlineDoc {
	if err != nil {
		panic(err)
	}
	return d
}
