package webhooks

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadInlineAndFile(t *testing.T) {
	inline := `[{"webhook_type":"raw","callback_url":"https://example.com/hook","log_level":"info"}]`
	if c, err := Load("  " + inline); err != nil || len(c) != 1 {
		t.Fatalf("inline: %v %v", c, err)
	}
	p := filepath.Join(t.TempDir(), "webhooks.json")
	os.WriteFile(p, []byte(inline), 0o600)
	if c, err := Load(p); err != nil || len(c) != 1 || c[0].URL != "https://example.com/hook" {
		t.Fatalf("file: %v %v", c, err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("missing file: %v", err)
	}
}
