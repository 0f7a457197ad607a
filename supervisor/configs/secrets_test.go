package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const hooksWithSecrets = `[{"webhook_type":"raw","callback_url":"https://hooks.example.com/cb/SECRETPATH","auth_token":"st_SECRET"}]`

func TestPutKeepsWebhookSecretsBehindPlaceholders(t *testing.T) {
	s := newService(t)
	seedEnv(t, s)
	if _, err := putSeed(t, s, func(c map[string]any) { c["--webhook_config"] = hooksWithSecrets }); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(s.Dir(), "pixart-api-demo", "config.json")
	tests := []struct {
		name, sent, want string
	}{
		{"shown form", `[{"webhook_type":"raw","callback_url":"https://hooks.example.com/<set>","auth_token":"<set>"}]`, "st_SECRET"},
		{"bare placeholder", "<set>", "SECRETPATH"},
		{"new token, kept URL", `[{"webhook_type":"raw","callback_url":"https://hooks.example.com/<set>","auth_token":"st_NEW"}]`, "st_NEW"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := putSeed(t, s, func(c map[string]any) { c["--webhook_config"] = tc.sent }); err != nil {
				t.Fatal(err)
			}
			raw, _ := os.ReadFile(cfgPath)
			if !strings.Contains(string(raw), tc.want) || !strings.Contains(string(raw), "SECRETPATH") || strings.Contains(string(raw), "<set>") {
				t.Errorf("stored after sending %s:\n%s", tc.sent, raw)
			}
		})
	}
	_, err := putSeed(t, s, func(c map[string]any) {
		c["--webhook_config"] = `[{"webhook_type":"raw","callback_url":"https://other.example/<set>"}]`
	})
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(ve.Error(), "webhook 1: callback_url is the placeholder <set>") {
		t.Errorf("placeholder for another host: %v", err)
	}
}

func TestPutWebhookKindKeepsSecrets(t *testing.T) {
	s := newService(t)
	p := filepath.Join(s.Dir(), "webhooks", "team.json")
	if err := writeFileAtomic(p, []byte(hooksWithSecrets)); err != nil {
		t.Fatal(err)
	}
	v, _ := decodeJSON([]byte(`[{"webhook_type":"raw","callback_url":"https://hooks.example.com/<set>","auth_token":"<set>","log_level":"error"}]`))
	if _, err := s.Put(KindWebhook, "team", PutRequest{Config: v}, nil); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(p)
	for _, want := range []string{"SECRETPATH", "st_SECRET", `"log_level": "error"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("webhooks/team.json lacks %s:\n%s", want, raw)
		}
	}
}

func TestImportOfShownFormNeedsTheSecrets(t *testing.T) {
	s := newService(t)
	_, err := s.Import(ImportRequest{Name: sp("imported"), Data: map[string]any{"--model_family": "dit",
		"--webhook_config": `[{"webhook_type":"raw","callback_url":"https://hooks.example.com/<set>","auth_token":"<set>"}]`}}, nil)
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(ve.Error(), "placeholder <set>") {
		t.Errorf("import of placeholders into a new environment: %v", err)
	}
}
