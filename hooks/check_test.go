package hooks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

func TestCheckDirAndFile(t *testing.T) {
	const me, other = 1000, 65534
	dirs := []struct {
		name      string
		mode, uid uint32
		ok        bool
	}{
		{"root 0755", syscall.S_IFDIR | 0o755, 0, true},
		{"daemon user 0700", syscall.S_IFDIR | 0o700, me, true},
		{"another user", syscall.S_IFDIR | 0o755, other, false},
		{"group-writable", syscall.S_IFDIR | 0o775, 0, false},
		{"world-writable", syscall.S_IFDIR | 0o777, me, false},
		{"sticky and root-owned (/tmp)", syscall.S_IFDIR | syscall.S_ISVTX | 0o777, 0, true},
		{"sticky but the daemon user's", syscall.S_IFDIR | syscall.S_ISVTX | 0o777, me, false},
		{"sticky but another user's", syscall.S_IFDIR | syscall.S_ISVTX | 0o777, other, false},
		{"symlink", syscall.S_IFLNK | 0o777, 0, false},
		{"regular file", syscall.S_IFREG | 0o755, 0, false},
	}
	for _, d := range dirs {
		err := checkDir("/d", d.mode, d.uid, me)
		if (err == nil) != d.ok || err != nil && !errors.Is(err, ErrUnsafeExecutable) {
			t.Errorf("dir %s: %v, want ok=%v", d.name, err, d.ok)
		}
	}
	files := []struct {
		name      string
		mode, uid uint32
		ok        bool
	}{
		{"root 0755", syscall.S_IFREG | 0o755, 0, true},
		{"daemon user 0700", syscall.S_IFREG | 0o700, me, true},
		{"execute only", syscall.S_IFREG | 0o711, 0, true},
		{"another user", syscall.S_IFREG | 0o755, other, false},
		{"group-writable", syscall.S_IFREG | 0o775, me, false},
		{"not executable", syscall.S_IFREG | 0o644, 0, false},
		{"symlink", syscall.S_IFLNK | 0o777, 0, false},
		{"directory", syscall.S_IFDIR | 0o755, 0, false},
		{"fifo", 0o010000 | 0o755, 0, false},
	}
	for _, f := range files {
		err := checkFile("/f", f.mode, f.uid, me)
		if (err == nil) != f.ok || err != nil && !errors.Is(err, ErrUnsafeExecutable) {
			t.Errorf("file %s: %v, want ok=%v", f.name, err, f.ok)
		}
	}
}

// Every component of the path is checked, not only the script and its parent.
func TestCheckExecutableWalksEveryAncestor(t *testing.T) {
	base := t.TempDir()
	mk := func(p string, mode os.FileMode) string {
		t.Helper()
		p = filepath.Join(base, p)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	script := func(dir string) string {
		t.Helper()
		p := filepath.Join(dir, "h.sh")
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The layout: D is 0777, the script is two levels below it.
	mk("open", 0o777)
	deep := script(mk("open/sub", 0o755))
	// A symlinked folder in the middle of the path.
	real := mk("real/sub", 0o755)
	safe := script(real)
	if err := os.Symlink(filepath.Join(base, "real"), filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	viaLink := filepath.Join(base, "link", "sub", "h.sh")
	mk("group", 0o775)
	inGroup := script(mk("group/sub", 0o755))
	cases := []struct {
		path string
		ok   bool
		want string
	}{
		{safe, true, ""},
		{deep, false, "directory " + filepath.Join(base, "open") + " is writable by group or others"},
		{viaLink, false, filepath.Join(base, "link") + " is a symlink"},
		{inGroup, false, "is writable by group or others"},
		{filepath.Join(real, "missing.sh"), false, "does not exist"},
		{filepath.Join(safe, "x"), false, "is not a directory"},
	}
	for _, c := range cases {
		err := CheckExecutable(c.path, "")
		if (err == nil) != c.ok || err != nil && (!errors.Is(err, ErrUnsafeExecutable) || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want ok=%v %q", c.path, err, c.ok, c.want)
		}
	}
	// A hooks directory reached through a symlink does not make the path safe.
	if err := CheckExecutable(viaLink, filepath.Join(base, "link")); err == nil {
		t.Error("a script under a symlinked hooks directory passed")
	}
}

// Ownership by another user, anywhere on the path, needs root to set up.
func TestCheckExecutableOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	const nobody = 65534
	base := t.TempDir()
	theirs := filepath.Join(base, "theirs")
	os.MkdirAll(filepath.Join(theirs, "sub"), 0o755)
	os.Chown(theirs, nobody, nobody)
	inTheirs := filepath.Join(theirs, "sub", "h.sh")
	os.WriteFile(inTheirs, []byte("#!/bin/sh\n"), 0o755)
	mine := filepath.Join(base, "mine")
	os.MkdirAll(mine, 0o755)
	theirScript := filepath.Join(mine, "h.sh")
	os.WriteFile(theirScript, []byte("#!/bin/sh\n"), 0o755)
	os.Chown(theirScript, nobody, nobody)
	// /tmp-like: sticky and world-writable, fine when root owns it, not when someone else does.
	tmpLike := filepath.Join(base, "tmp")
	os.MkdirAll(filepath.Join(tmpLike, "sub"), 0o755)
	os.Chmod(tmpLike, 0o777|os.ModeSticky)
	inTmp := filepath.Join(tmpLike, "sub", "h.sh")
	os.WriteFile(inTmp, []byte("#!/bin/sh\n"), 0o755)
	for _, c := range []struct {
		path string
		ok   bool
	}{{inTheirs, false}, {theirScript, false}, {inTmp, true}} {
		if err := CheckExecutable(c.path, ""); (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.path, err, c.ok)
		}
	}
	os.Chown(tmpLike, nobody, nobody)
	if err := CheckExecutable(inTmp, ""); err == nil {
		t.Error("a sticky directory owned by another user passed")
	}
}
