package api

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRedactConfigShowsWebhookStructureNotSecrets(t *testing.T) {
	in := map[string]any{
		"--webhook_config": `[{"webhook_type":"raw","callback_url":"https://h.example/SECRET","auth_token":"SECRET"}]`,
		"webhook_config":   []any{map[string]any{"webhook_type": "discord", "webhook_url": "https://discord.com/api/webhooks/1/SECRET"}},
		"--learning_rate":  0.0001,
	}
	out := redactConfig(in)
	b, _ := json.Marshal(out)
	if strings.Contains(string(b), "SECRET") || !strings.Contains(string(b), "h.example") || out["--learning_rate"] != 0.0001 {
		t.Errorf("redacted = %s", b)
	}
	if !strings.Contains(in["--webhook_config"].(string), "SECRET") {
		t.Error("redactConfig modified the config it was given")
	}
}
