package hooks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSplit(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  error
	}{
		{"a b  c", []string{"a", "b", "c"}, nil},
		{"  ", nil, nil},
		{`'a b' "c d" e\ f`, []string{"a b", "c d", "e f"}, nil},
		{`x'' ''`, []string{"x", ""}, nil},
		{`"a \"q\" \$HOME \n"`, []string{`a "q" $HOME \n`}, nil},
		{`$HOME ~/x *.sh`, []string{"$HOME", "~/x", "*.sh"}, nil},
		{"a\\\nb", []string{"ab"}, nil},
		{`'open`, nil, ErrSyntax},
		{`"open`, nil, ErrSyntax},
		{`trailing\`, nil, ErrSyntax},
	}
	for _, tc := range tests {
		got, err := Split(tc.in)
		if !errors.Is(err, tc.err) || (tc.err == nil && !slices.Equal(got, tc.want)) {
			t.Errorf("Split(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestExpand(t *testing.T) {
	vals := map[string]string{
		"local_checkpoint_path":  "/out/my run/checkpoint-10",
		"global_step":            "10",
		"remote_checkpoint_path": "",
		"tracker_run_name":       "x; rm -rf / $(id) `id` $HOME",
		"validation_prompt":      "a 'quoted' \"prompt\"",
	}
	tests := []struct {
		name, tmpl string
		want       []string
		err        error
	}{
		{"value with space stays one element", "run.sh {local_checkpoint_path}", []string{"run.sh", "/out/my run/checkpoint-10"}, nil},
		{"inside a word", "run.sh --step={global_step} ck={local_checkpoint_path}/x",
			[]string{"run.sh", "--step=10", "ck=/out/my run/checkpoint-10/x"}, nil},
		{"empty value is one empty element", "run.sh {remote_checkpoint_path} end", []string{"run.sh", "", "end"}, nil},
		{"metacharacters are inert", "run.sh {tracker_run_name}", []string{"run.sh", "x; rm -rf / $(id) `id` $HOME"}, nil},
		{"quotes in values", "run.sh {validation_prompt}", []string{"run.sh", "a 'quoted' \"prompt\""}, nil},
		{"quoted template word", `run.sh "--name={global_step} steps"`, []string{"run.sh", "--name=10 steps"}, nil},
		{"no env or tilde expansion", "run.sh $HOME ~/x", []string{"run.sh", "$HOME", "~/x"}, nil},
		{"escaped braces", "run.sh {{literal}} {{{global_step}}}", []string{"run.sh", "{literal}", "{10}"}, nil},
		{"two placeholders in one word", "{global_step}-{global_step}", []string{"10-10"}, nil},
		{"unknown placeholder", "run.sh {nope}", nil, ErrUnknownPlaceholder},
		{"format spec refused", "run.sh {global_step:05d}", nil, ErrSyntax},
		{"empty placeholder", "run.sh {}", nil, ErrSyntax},
		{"unbalanced open", "run.sh {global_step", nil, ErrSyntax},
		{"unbalanced close", "run.sh global_step}", nil, ErrSyntax},
		{"empty template", "  ", nil, ErrEmptyTemplate},
		{"None template", "None", nil, ErrEmptyTemplate},
		{"empty command", "{remote_checkpoint_path} x", nil, ErrSyntax},
		{"bad quoting", "run.sh 'x", nil, ErrSyntax},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Expand(tc.tmpl, vals)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if tc.err == nil && !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPlaceholders(t *testing.T) {
	got, err := Placeholders("x {b} --a={a}{b} {{c}}")
	if err != nil || !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("got %q %v", got, err)
	}
}

func TestEnvIsMinimal(t *testing.T) {
	t.Setenv("SECRET_TOKEN", "hunter2")
	env := Env(map[string]string{"global_step": "7", "local_checkpoint_path": "/x"})
	for _, kv := range env {
		if strings.HasPrefix(kv, "SECRET_TOKEN") {
			t.Fatal("parent secret leaked into the hook environment")
		}
		k, _, _ := strings.Cut(kv, "=")
		if k != "PATH" && k != "HOME" && k != "LANG" && !strings.HasPrefix(k, "ST_") {
			t.Fatalf("unexpected variable %s", kv)
		}
	}
	if !slices.Contains(env, "ST_GLOBAL_STEP=7") || !slices.Contains(env, "ST_LOCAL_CHECKPOINT_PATH=/x") {
		t.Fatalf("env %q", env)
	}
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunArgvEnvAndOutput(t *testing.T) {
	s := writeScript(t, `for a in "$@"; do echo "[$a]"; done; echo "step=$ST_GLOBAL_STEP"; echo err >&2`)
	argv, err := Expand(s+" {local_checkpoint_path} x", map[string]string{"local_checkpoint_path": "a b; echo pwned", "global_step": "3"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), argv, RunOptions{Values: map[string]string{"global_step": "3"}})
	if err != nil {
		t.Fatalf("%v: %s", err, res.Output)
	}
	want := "[a b; echo pwned]\n[x]\nstep=3\nerr\n"
	if string(res.Output) != want || res.ExitCode != 0 {
		t.Fatalf("output %q (exit %d), want %q", res.Output, res.ExitCode, want)
	}
}

func TestRunFailureAndCap(t *testing.T) {
	s := writeScript(t, "yes | head -c 100000; exit 3")
	res, err := Run(context.Background(), []string{s}, RunOptions{MaxOutput: 1000})
	if !errors.Is(err, ErrFailed) || res.ExitCode != 3 || len(res.Output) != 1000 || !res.Truncated {
		t.Fatalf("err %v exit %d output %d truncated %v", err, res.ExitCode, len(res.Output), res.Truncated)
	}
	if _, err := Run(context.Background(), []string{"/nonexistent/hook"}, RunOptions{}); !errors.Is(err, ErrFailed) {
		t.Fatalf("missing binary: %v", err)
	}
}

func TestRunTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "survived")
	pidFile := filepath.Join(dir, "grandchild.pid")
	// The script backgrounds a grandchild that would write the marker later; killing only
	// the script would let it survive. The script records the grandchild's pid, and the
	// grandchild waits far longer than the test does, so a survivor is seen alive
	// whatever the machine's load.
	s := writeScript(t, "(sleep 60; touch "+marker+") & echo $! > "+pidFile+".tmp; mv "+pidFile+".tmp "+pidFile+"; sleep 60")
	_, err := Run(context.Background(), []string{s}, RunOptions{Timeout: time.Second})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		// Killed before it got to write its pid: it cannot have survived either.
		t.Logf("the grandchild was killed before it wrote its pid: %v", err)
		return
	}
	pid := strings.TrimSpace(string(b))
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil || strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %s survived the process-group kill", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("grandchild survived the process-group kill")
	}
}

// A script changed after submission is checked again at run time and refused, not run.
func TestRunRechecksTheScript(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	s := writeScript(t, "touch "+marker)
	os.Chmod(s, 0o777) // made writable by others after the check
	res, err := Run(context.Background(), []string{s}, RunOptions{})
	if !errors.Is(err, ErrFailed) || !errors.Is(err, ErrUnsafeExecutable) || res.ExitCode != -1 {
		t.Fatalf("err %v exit %d", err, res.ExitCode)
	}
	if !strings.Contains(err.Error(), "is writable by group or others") {
		t.Errorf("message %q does not say why", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the unsafe script ran")
	}
}

// What runs is the file that was opened and checked, even when the path names another
// file by the time the process starts.
func TestRunExecutesTheOpenedFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "hook.sh")
	os.WriteFile(good, []byte("#!/bin/sh\necho checked \"$1\"\n"), 0o755)
	prog, err := openProgram(good)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	evil := filepath.Join(dir, "evil.sh")
	os.WriteFile(evil, []byte("#!/bin/sh\necho swapped\n"), 0o755)
	if err := os.Rename(evil, good); err != nil {
		t.Fatal(err)
	}
	res, err := runProgram(context.Background(), prog, []string{good, "arg"}, RunOptions{})
	if err != nil || string(res.Output) != "checked arg\n" {
		t.Fatalf("ran %q (%v), want the checked script", res.Output, err)
	}
}

// A binary (no #!) runs by descriptor too.
func TestRunBinary(t *testing.T) {
	bin := "/usr/bin/env"
	if err := CheckExecutable(bin, ""); err != nil {
		t.Skipf("%s is not usable here: %v", bin, err)
	}
	res, err := Run(context.Background(), []string{bin}, RunOptions{Values: map[string]string{"global_step": "5"}})
	if err != nil || !strings.Contains(string(res.Output), "ST_GLOBAL_STEP=5") {
		t.Fatalf("%v: %q", err, res.Output)
	}
}
