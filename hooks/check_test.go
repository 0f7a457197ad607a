package hooks

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCheckExecutable(t *testing.T) {
	dir := t.TempDir()
	hooksDir := filepath.Join(dir, "hooks")
	os.MkdirAll(hooksDir, 0o755)
	good := filepath.Join(hooksDir, "ok.sh")
	os.WriteFile(good, []byte("#!/bin/sh\n"), 0o755)
	worldW := filepath.Join(hooksDir, "ww.sh")
	os.WriteFile(worldW, []byte("#!/bin/sh\n"), 0o755)
	os.Chmod(worldW, 0o777)
	noExec := filepath.Join(hooksDir, "noexec.sh")
	os.WriteFile(noExec, []byte("#!/bin/sh\n"), 0o644)
	link := filepath.Join(hooksDir, "link.sh")
	os.Symlink(good, link)
	outside := filepath.Join(dir, "outside.sh")
	os.WriteFile(outside, []byte("#!/bin/sh\n"), 0o755)
	openDir := filepath.Join(dir, "open")
	os.MkdirAll(openDir, 0o755)
	os.Chmod(openDir, 0o777)
	inOpen := filepath.Join(openDir, "x.sh")
	os.WriteFile(inOpen, []byte("#!/bin/sh\n"), 0o755)

	cases := []struct {
		tmpl, hooksDir string
		ok             bool
	}{
		{good + " {local_checkpoint_path}", hooksDir, true},
		{good, "", true},
		{"run_eval.sh {global_step}", "", false},
		{"./run_eval.sh", "", false},
		{"{local_checkpoint_path}/x", "", false},
		{outside, hooksDir, false},
		{outside, "", true},
		{worldW, "", false},
		{noExec, "", false},
		{link, "", false},
		{filepath.Join(hooksDir, "missing.sh"), "", false},
		{inOpen, "", false},
		{"", "", false},
	}
	for _, c := range cases {
		err := CheckExecutable(c.tmpl, c.hooksDir)
		if (err == nil) != c.ok {
			t.Errorf("%q (hooks dir %q): got %v, want ok=%v", c.tmpl, c.hooksDir, err, c.ok)
		}
		if err != nil && c.tmpl != "" && !errors.Is(err, ErrUnsafeExecutable) {
			t.Errorf("%q: %v does not wrap ErrUnsafeExecutable", c.tmpl, err)
		}
	}
}
