package configs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"simpletuner/internal/errmsg"
	"simpletuner/internal/safefile"
	"simpletuner/options"
	"simpletuner/supervisor/configs/configstest"
)

// TestReadFileMessages: the service's reader answers in sentences, the same one for every
// path outside the roots.
func TestReadFileMessages(t *testing.T) {
	base := t.TempDir()
	s, err := New(Options{Dir: filepath.Join(base, "config"), Registry: options.Default(), Settings: &configstest.MemSettings{},
		FileRoots: []string{filepath.Join(base, "shared")}})
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(base, "shared"), 0o755)
	os.MkdirAll(filepath.Join(base, "outside"), 0o755)
	os.WriteFile(filepath.Join(s.Dir(), "ok.json"), []byte(`[]`), 0o600)
	os.WriteFile(filepath.Join(base, "shared", "ok.json"), []byte(`[]`), 0o600)
	os.WriteFile(filepath.Join(s.Dir(), "big.json"), make([]byte, safefile.DefaultLimit+1), 0o600)
	os.WriteFile(filepath.Join(base, "outside", "secret.json"), []byte(`{"secret": 1}`), 0o600)
	syscall.Mkfifo(filepath.Join(s.Dir(), "fifo.json"), 0o600)
	for _, tc := range []struct {
		path     string
		sentinel error
		msg      string
	}{
		{path: filepath.Join(s.Dir(), "ok.json")},
		{path: filepath.Join(base, "shared", "ok.json")},
		{path: filepath.Join(s.Dir(), "nope.json"), sentinel: fs.ErrNotExist, msg: "'B/config/nope.json' does not exist"},
		{path: filepath.Join(s.Dir(), "fifo.json"), sentinel: ErrInvalid, msg: "'B/config/fifo.json' is not a regular file"},
		{path: filepath.Join(s.Dir(), "big.json"), sentinel: ErrInvalid, msg: "'B/config/big.json' is larger than 1 MiB"},
		{path: filepath.Join(base, "outside", "secret.json"), sentinel: ErrInvalid, msg: errOutsideFiles.Error()},
		{path: filepath.Join(base, "outside", "nope.json"), sentinel: ErrInvalid, msg: errOutsideFiles.Error()},
		{path: "/dev/zero", sentinel: ErrInvalid, msg: errOutsideFiles.Error()},
	} {
		_, err := s.ReadFile(tc.path)
		if tc.sentinel == nil {
			if err != nil || s.CheckFile(tc.path) != nil {
				t.Errorf("%s: %v", tc.path, err)
			}
			continue
		}
		var em *errmsg.Error
		if !errors.Is(err, tc.sentinel) || !errors.As(err, &em) || strings.ReplaceAll(err.Error(), base, "B") != tc.msg {
			t.Errorf("%s: %v; want %q wrapping %v", tc.path, err, tc.msg, tc.sentinel)
		}
		if cerr := s.CheckFile(tc.path); cerr == nil || cerr.Error() != err.Error() {
			t.Errorf("%s: CheckFile %v, ReadFile %v", tc.path, cerr, err)
		}
	}
}
