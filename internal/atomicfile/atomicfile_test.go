package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteReplacesAndLeavesNoTemporary: the new content and mode are in place and no
// temporary file is left behind, on a first write and on a replacement.
func TestWriteReplacesAndLeavesNoTemporary(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.json")
	for i, data := range []string{"one", "two, longer"} {
		if err := Write(p, []byte(data), 0o640); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != data {
			t.Fatalf("write %d: read %q, %v; want %q", i, got, err, data)
		}
		st, _ := os.Stat(p)
		if st.Mode().Perm() != 0o640 {
			t.Fatalf("mode %v, want 0640", st.Mode().Perm())
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 1 {
			t.Fatalf("directory holds %d entries after write %d, want only the file", len(ents), i)
		}
	}
}

// TestWriteIntoAMissingDirectoryFailsCleanly: the error is returned and nothing is created.
func TestWriteIntoAMissingDirectoryFailsCleanly(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing", "f")
	if err := Write(p, []byte("x"), 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("stat after failed write: %v", err)
	}
}
