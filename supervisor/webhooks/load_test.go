package webhooks

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"simpletuner/internal/safefile"
)

func TestLoadInlineAndFile(t *testing.T) {
	dir := t.TempDir()
	read := func(p string) ([]byte, error) { return safefile.New(dir).ReadFile(p, safefile.DefaultLimit) }
	inline := `[{"webhook_type":"raw","callback_url":"https://example.com/hook","log_level":"info"}]`
	if c, err := Load("  "+inline, read); err != nil || len(c) != 1 {
		t.Fatalf("inline: %v %v", c, err)
	}
	p := filepath.Join(dir, "webhooks.json")
	os.WriteFile(p, []byte(inline), 0o600)
	if c, err := Load(p, read); err != nil || len(c) != 1 || c[0].URL != "https://example.com/hook" {
		t.Fatalf("file: %v %v", c, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.json"), read); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("missing file: %v", err)
	}
	// The reader's refusal comes back as an invalid config, wrapping the reader's error.
	if _, err := Load("/dev/zero", read); !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, safefile.ErrOutside) {
		t.Fatalf("/dev/zero: %v", err)
	}
}
