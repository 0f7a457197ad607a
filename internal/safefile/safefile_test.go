package safefile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tree makes root/ with a small file, a FIFO, a big file and links in and out, plus a
// sibling folder outside the root.
func tree(t *testing.T) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, d := range []string{root, outside, filepath.Join(root, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, data []byte) {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "ok.json"), []byte(`{"a": 1}`))
	write(filepath.Join(root, "sub", "deep.json"), []byte(`[]`))
	write(filepath.Join(root, "big.json"), make([]byte, DefaultLimit+1))
	write(filepath.Join(outside, "secret.json"), []byte(`{"secret": true}`))
	if err := syscall.Mkfifo(filepath.Join(root, "fifo.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"out.json":    filepath.Join(outside, "secret.json"), // absolute, out
		"up.json":     "../outside/secret.json",              // relative, out
		"outdir":      outside,                               // a folder link out
		"in.json":     "sub/deep.json",                       // stays inside
		"dangling":    filepath.Join(outside, "nope"),        // out, to nothing
		"zero.json":   "/dev/zero",
		"loop-a.json": "loop-b.json",
		"loop-b.json": "loop-a.json",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	return root, outside
}

func TestReadFile(t *testing.T) {
	root, outside := tree(t)
	r := New(root)
	for _, tc := range []struct {
		name, path string
		want       error // nil: readable
	}{
		{"regular file inside", filepath.Join(root, "ok.json"), nil},
		{"nested file", filepath.Join(root, "sub", "deep.json"), nil},
		{"link that stays inside", filepath.Join(root, "in.json"), nil},
		{"dot-dot that stays inside", filepath.Join(root, "sub", "..", "ok.json"), nil},
		{"FIFO", filepath.Join(root, "fifo.json"), ErrNotRegular},
		{"directory", filepath.Join(root, "sub"), ErrNotRegular},
		{"over the cap", filepath.Join(root, "big.json"), ErrTooLarge},
		{"missing inside", filepath.Join(root, "nope.json"), fs.ErrNotExist},
		{"missing folder inside", filepath.Join(root, "ok.json", "x"), fs.ErrNotExist},
		{"existing file outside", filepath.Join(outside, "secret.json"), ErrOutside},
		{"missing file outside", filepath.Join(outside, "nope.json"), ErrOutside},
		{"/dev/zero", "/dev/zero", ErrOutside},
		{"/etc/passwd", "/etc/passwd", ErrOutside},
		{"dot-dot out", root + "/../outside/secret.json", ErrOutside},
		{"absolute link out", filepath.Join(root, "out.json"), ErrOutside},
		{"relative link out", filepath.Join(root, "up.json"), ErrOutside},
		{"through a folder link out", filepath.Join(root, "outdir", "secret.json"), ErrOutside},
		{"dangling link out", filepath.Join(root, "dangling"), ErrOutside},
		{"link to /dev/zero", filepath.Join(root, "zero.json"), ErrOutside},
		{"relative path", "ok.json", ErrOutside},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := r.ReadFile(tc.path, DefaultLimit)
			if tc.want == nil {
				if err != nil || len(data) == 0 {
					t.Fatalf("ReadFile = %q, %v", data, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("ReadFile = %q, %v; want %v", data, err, tc.want)
			}
			if err := r.Check(tc.path, DefaultLimit); !errors.Is(err, tc.want) {
				t.Fatalf("Check = %v; want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), root) || strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q names the path or the content", err)
			}
		})
	}
	if _, err := r.ReadFile(filepath.Join(root, "loop-a.json"), DefaultLimit); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("symlink loop: %v", err)
	}
	// Outside every root, the answer is the same whether or not the file exists.
	_, e1 := r.ReadFile(filepath.Join(outside, "secret.json"), DefaultLimit)
	_, e2 := r.ReadFile(filepath.Join(outside, "nope.json"), DefaultLimit)
	if e1.Error() != e2.Error() {
		t.Errorf("outside: %q vs %q", e1, e2)
	}
	if _, err := (Roots{}).ReadFile(filepath.Join(root, "ok.json"), DefaultLimit); !errors.Is(err, ErrOutside) {
		t.Errorf("no roots: %v", err)
	}
	if _, err := r.ReadFile(filepath.Join(root, "ok.json"), 3); !errors.Is(err, ErrTooLarge) {
		t.Errorf("small cap: %v", err)
	}
}

// A relative link out of a narrow root that lands in a wider one is read through the
// wider one (os.Root never follows an absolute link).
func TestReadFileNestedRoots(t *testing.T) {
	root, outside := tree(t)
	r := New(root, filepath.Dir(outside))
	if _, err := r.ReadFile(filepath.Join(root, "up.json"), DefaultLimit); err != nil {
		t.Fatal(err)
	}
}

// A root spelled through a symlink accepts paths spelled with its real location too.
func TestReadFileRootBehindALink(t *testing.T) {
	root, _ := tree(t)
	alias := filepath.Join(t.TempDir(), "alias")
	if err := os.Symlink(root, alias); err != nil {
		t.Fatal(err)
	}
	r := New(alias)
	for _, p := range []string{filepath.Join(alias, "ok.json"), filepath.Join(root, "ok.json")} {
		if _, err := r.ReadFile(p, DefaultLimit); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestWithin(t *testing.T) {
	root, outside := tree(t)
	r := New(root)
	for _, tc := range []struct {
		name, path string
		ok         bool
	}{
		{"the root itself", root, true},
		{"existing folder", filepath.Join(root, "sub"), true},
		{"folder to be made", filepath.Join(root, "cache", "text"), true},
		{"outside", outside, false},
		{"outside, missing", filepath.Join(outside, "made", "by", "api"), false},
		{"dot-dot out", root + "/../outside", false},
		{"prefix sibling", root + "-other", false},
		{"through a link out", filepath.Join(root, "outdir", "cache"), false},
		{"through a dangling link", filepath.Join(root, "dangling", "cache"), false},
		{"relative", "cache/text", false},
		{"filesystem root", "/", false},
	} {
		if err := r.Within(tc.path); (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrOutside)) {
			t.Errorf("%s: Within(%s) = %v, want ok=%v", tc.name, tc.path, err, tc.ok)
		}
	}
}

// openErr recognises os.Root's escape by its text; a Go release that changes the text
// must fail here rather than turn escapes into another message.
func TestEscapeTextIsOsRoots(t *testing.T) {
	root, _ := tree(t)
	rt, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	_, err = rt.Open("out.json")
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Err.Error() != errEscapes {
		t.Fatalf("os.Root escape error = %#v", err)
	}
}

// A FIFO without a writer must not hang the read (a blocking open would wait forever).
func TestFIFODoesNotBlock(t *testing.T) {
	root, _ := tree(t)
	done := make(chan error, 1)
	go func() {
		_, err := New(root).ReadFile(filepath.Join(root, "fifo.json"), DefaultLimit)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotRegular) {
			t.Fatalf("FIFO: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("reading a FIFO blocked")
	}
}
