package main

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Black-box tests of the data rows of docs/security.md (H4, H5, H13, H14) against the real daemon: dataset writes by
// viewers (4), hook scripts swapped after the check (5), zip bombs of many small entries
// (13) and a state directory with truncated tables (14).

// zipOf builds an archive of the named entries.
func zipOf(t *testing.T, entries map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		w, err := zw.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(entries[n])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// dirState lists every path under dir with its type, mode and a digest of its content,
// so any write (a new folder, a new file, a file overwritten in place) shows.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %v", strings.TrimPrefix(p, dir), info.Mode())
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// Row H4: a viewer may browse the datasets directory but not create folders, upload or
// upload archives; nothing reaches the disk. A researcher may write, but may not replace
// a file someone else uploaded (files record no uploader); a lead may.
func TestSecurityViewerCannotWriteDatasets(t *testing.T) {
	home := t.TempDir()
	d := start(t, home)
	tm := newTeam(t, d)
	b := d.base + "/api/datasets"
	datasets := filepath.Join(home, "datasets")
	admin := tm.admin.cookie
	if code, body := postParts(t, admin, b+"/folders", nil, mpart{field: "folder_name", value: "shared"}); code != 200 {
		t.Fatalf("admin folder: %d %s", code, body)
	}
	if code, body := postParts(t, admin, b+"/upload", nil, mpart{field: "target_path", value: "shared"},
		mpart{field: "files", filename: "a.txt", data: []byte("the admin's caption")}); code != 200 {
		t.Fatalf("admin upload: %d %s", code, body)
	}
	zipped := zipOf(t, map[string][]byte{"z.txt": []byte("zipped caption")})
	writes := []struct {
		name, path string
		parts      []mpart
	}{
		{"folder", "/folders", []mpart{{field: "parent_path", value: "shared"}, {field: "folder_name", value: "new"}}},
		{"upload", "/upload", []mpart{{field: "target_path", value: "shared"}, {field: "files", filename: "b.txt", data: []byte("b")}}},
		{"overwrite", "/upload", []mpart{{field: "target_path", value: "shared"}, {field: "overwrite", value: "true"}, {field: "files", filename: "a.txt", data: []byte("the viewer's")}}},
		{"zip", "/upload/zip", []mpart{{field: "target_path", value: "shared"}, {field: "file", filename: "z.zip", data: zipped}}},
	}
	before := dirState(t, datasets)
	for _, w := range writes {
		code, body := postParts(t, tm.view.cookie, b+w.path, nil, w.parts...)
		if code != 403 || !strings.Contains(body, "dataset.write") {
			t.Errorf("viewer %s: %d %s, want 403 naming dataset.write", w.name, code, body)
		}
	}
	if after := dirState(t, datasets); after != before {
		t.Fatalf("a viewer changed the datasets dir:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if code, body := call(t, tm.view.cookie, "GET", b+"/browse?path=shared", nil, nil); code != 200 {
		t.Errorf("viewer browse: %d %v", code, body)
	}

	r1 := tm.r1.keyed()
	for _, w := range writes {
		if w.name == "overwrite" {
			continue
		}
		if code, body := postParts(t, tm.anon, b+w.path, r1, w.parts...); code != 200 {
			t.Errorf("researcher %s: %d %s", w.name, code, body)
		}
	}
	for _, f := range []string{"shared/new", "shared/b.txt", "shared/z.txt"} {
		if _, err := os.Stat(filepath.Join(datasets, f)); err != nil {
			t.Errorf("researcher's write missing: %v", err)
		}
	}
	overwrite := writes[2].parts
	if code, body := postParts(t, tm.anon, b+"/upload", r1, overwrite...); code != 403 || !strings.Contains(body, "dataset.overwrite") {
		t.Errorf("researcher overwrite: %d %s, want 403 naming dataset.overwrite", code, body)
	}
	if got, _ := os.ReadFile(filepath.Join(datasets, "shared", "a.txt")); string(got) != "the admin's caption" {
		t.Fatalf("another user's file was replaced: %q", got)
	}
	if code, body := postParts(t, tm.anon, b+"/upload", tm.lead.keyed(), overwrite...); code != 200 {
		t.Errorf("lead overwrite: %d %s", code, body)
	}
	if got, _ := os.ReadFile(filepath.Join(datasets, "shared", "a.txt")); string(got) != "the viewer's" {
		t.Errorf("lead overwrite left %q", got)
	}
}

// zipUpload posts archive as a zip upload into folder t of the datasets directory.
func zipUpload(t *testing.T, c *http.Client, base string, archive []byte) (int, string) {
	t.Helper()
	return postParts(t, c, base+"/api/datasets/upload/zip", nil, mpart{field: "target_path", value: "t"}, mpart{field: "file", filename: "x.zip", data: archive})
}

// refusedWhole checks that an archive upload is refused with 4xx naming want and that
// the datasets directory is unchanged.
func refusedWhole(t *testing.T, c *http.Client, d *proc, datasets string, archive []byte, want string) {
	t.Helper()
	before := dirState(t, datasets)
	code, body := zipUpload(t, c, d.base, archive)
	if code < 400 || code > 499 || !strings.Contains(body, want) {
		t.Errorf("archive of %d bytes: %d %s, want 4xx %q", len(archive), code, body, want)
	}
	if after := dirState(t, datasets); after != before {
		t.Errorf("the datasets dir changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// Row H13: an archive of sixty 1 MiB entries of zeros (each under the per-entry ratio
// floor, about 70 KB in all) is refused as a whole and nothing is extracted. An ordinary
// archive still extracts.
func TestSecurityZipOfManySmallZeroEntriesRefused(t *testing.T) {
	home := t.TempDir()
	d := start(t, home)
	c := adminClient(t, d)
	datasets := filepath.Join(home, "datasets")
	if code, body := postParts(t, c, d.base+"/api/datasets/folders", nil, mpart{field: "folder_name", value: "t"}); code != 200 {
		t.Fatalf("folder: %d %s", code, body)
	}
	zeros := map[string][]byte{}
	for i := range 60 {
		zeros[fmt.Sprintf("zeros%02d.txt", i)] = make([]byte, 1<<20)
	}
	refusedWhole(t, c, d, datasets, zipOf(t, zeros), "expand more than 200:1")
	normal := zipOf(t, map[string][]byte{"img/a.txt": []byte("a caption"), "img/b.txt": []byte("another caption")})
	if code, body := zipUpload(t, c, d.base, normal); code != 200 {
		t.Fatalf("normal zip: %d %s", code, body)
	}
	if got, err := os.ReadFile(filepath.Join(datasets, "t", "img", "b.txt")); err != nil || string(got) != "another caption" {
		t.Fatalf("normal zip not extracted: %q %v", got, err)
	}
}

// Row H13: --max-extract-bytes caps what one zip upload may extract, whatever its ratio.
func TestSecurityZipOverExtractCapRefused(t *testing.T) {
	home := t.TempDir()
	d := start(t, home, "--max-extract-bytes", fmt.Sprint(1<<20))
	c := adminClient(t, d)
	datasets := filepath.Join(home, "datasets")
	if code, body := postParts(t, c, d.base+"/api/datasets/folders", nil, mpart{field: "folder_name", value: "t"}); code != 200 {
		t.Fatalf("folder: %d %s", code, body)
	}
	random := make([]byte, 3<<19) // incompressible: 1:1, over the 1 MiB cap
	rand.Read(random)
	refusedWhole(t, c, d, datasets, zipOf(t, map[string][]byte{"a.txt": random[:1<<19], "b.txt": random[1<<19:]}), "more than 1048576 bytes uncompressed")
	if code, body := zipUpload(t, c, d.base, zipOf(t, map[string][]byte{"a.txt": random[:1<<19]})); code != 200 {
		t.Fatalf("an archive under the cap: %d %s", code, body)
	}
}

// hookScript writes an executable script at path.
func hookScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// Row H5, at submission: the reported layout (a hook at D/sub/h.sh where D is 0777) and a
// symlinked folder in the path are refused with 422, and no job is created.
func TestSecurityHookScriptUnsafeFolderRefusedAtSubmit(t *testing.T) {
	home := t.TempDir()
	d := start(t, home, fakeTrainerArgs(10, 10)...)
	c := adminClient(t, d)
	open := filepath.Join(home, "D")
	hookScript(t, filepath.Join(open, "sub", "h.sh"), "exit 0\n")
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	hookScript(t, filepath.Join(home, "real", "sub", "h.sh"), "exit 0\n")
	if err := os.Symlink(filepath.Join(home, "real"), filepath.Join(home, "link")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ script, want string }{
		{filepath.Join(open, "sub", "h.sh"), "directory " + open + " is writable by group or others"},
		{filepath.Join(home, "link", "sub", "h.sh"), filepath.Join(home, "link") + " is a symlink"},
	} {
		fields := append(fastPathFields(t, home), [2]string{"--post_checkpoint_script", tc.script + " {local_checkpoint_path}"})
		code, body := form(t, c, d.base+"/api/training/start", fields, "application/json")
		if code != 422 || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want 422 %q", tc.script, code, body, tc.want)
		}
	}
	code, jobs := call(t, c, "GET", d.base+"/api/jobs", nil, nil)
	if list, _ := jobs["jobs"].([]any); code != 200 || len(list) != 0 {
		t.Errorf("jobs after refused starts: %d %v", code, jobs)
	}
}

// jobEvent returns the first stored event of a job with this type (nil when none yet).
func jobEvent(t *testing.T, c *http.Client, base, id, typ string) map[string]any {
	t.Helper()
	code, body := call(t, c, "GET", base+"/api/training/events?"+url.Values{"job_id": {id}, "types": {typ}}.Encode(), nil, nil)
	if code != 200 {
		t.Fatalf("events of %s: %d %v", id, code, body)
	}
	evs, _ := body["events"].([]any)
	if len(evs) == 0 {
		return nil
	}
	m, _ := evs[0].(map[string]any)
	return m
}

// Row H5, at run time (the reported reproduction): the hook passes the check at
// submission; before the checkpoint, its folder is swapped for one holding a script owned
// by nobody. The daemon checks again when the hook runs, refuses it, records the run
// failed with the reason, and the swapped-in script never runs.
func TestSecurityHookScriptSwappedAfterSubmitIsNotRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the swap plants a script owned by another user: needs root")
	}
	home := t.TempDir()
	d := start(t, home, fakeTrainerArgs(100000, 100)...)
	c := adminClient(t, d)
	hooks := filepath.Join(home, "hooks") // root-owned 0755: safe, and only root can swap in it
	goodMarker, evilMarker := filepath.Join(home, "good-ran"), filepath.Join(home, "evil-ran")
	hookScript(t, filepath.Join(hooks, "sub", "h.sh"), "touch "+goodMarker+"\n")
	fields := append(fastPathFields(t, home), [2]string{"--post_checkpoint_script", filepath.Join(hooks, "sub", "h.sh") + " {local_checkpoint_path}"})
	jobID := startRunning(t, d, c, fields)

	evil := filepath.Join(home, "evil")
	hookScript(t, filepath.Join(evil, "h.sh"), "touch "+evilMarker+"\n")
	if err := os.Chown(filepath.Join(evil, "h.sh"), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(hooks, "sub"), filepath.Join(hooks, "old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(evil, filepath.Join(hooks, "sub")); err != nil {
		t.Fatal(err)
	}
	if code, body := call(t, c, "POST", d.base+"/api/training/checkpoint/run?job_id="+url.QueryEscape(jobID), nil, nil); code != 200 {
		t.Fatalf("checkpoint/run: %d %v", code, body)
	}
	var fin map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for fin == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no hook.finished event within 30 s\n%s", d.stderr)
		}
		time.Sleep(100 * time.Millisecond)
		fin = jobEvent(t, c, d.base, jobID, "hook.finished")
	}
	data, _ := fin["data"].(map[string]any)
	reason, _ := data["error"].(string)
	if data["exit_code"] != float64(-1) || !strings.Contains(reason, "owned by uid 65534") {
		t.Errorf("hook run not recorded as refused: %v", fin)
	}
	call(t, c, "POST", d.base+"/api/queue/"+jobID+"/cancel", nil, nil)
	for _, m := range []string{evilMarker, goodMarker} {
		if _, err := os.Stat(m); err == nil {
			t.Errorf("%s: a script ran after the swap", filepath.Base(m))
		}
	}
}

// Row H14: truncated table files make the daemon exit at once with the clear "state
// directory is damaged" message, not a badger panic with a stack trace.
func TestSecurityTruncatedStateTablesRefuseToStart(t *testing.T) {
	home := t.TempDir()
	a := start(t, home)
	c := adminClient(t, a)
	if code, body := call(t, c, "POST", a.base+"/api/users", map[string]any{"email": "r@example.com", "username": "researcher",
		"password": "their-password", "level_names": []string{"researcher"}}, nil); code != 201 {
		t.Fatalf("create user: %d %v", code, body)
	}
	if code, body := call(t, c, "PUT", a.base+"/api/cloud/settings/registration", map[string]any{"enabled": false}, nil); code != 200 {
		t.Fatalf("registration settings: %d %v", code, body)
	}
	if err, _ := a.stop(); err != nil {
		t.Fatal(err)
	}
	tables, _ := filepath.Glob(filepath.Join(home, "state", "badger", "*.sst"))
	if len(tables) == 0 {
		t.Fatal("no .sst files after a clean stop")
	}
	for _, p := range tables {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, st.Size()/2); err != nil {
			t.Fatal(err)
		}
	}
	b := start(t, home)
	select {
	case err := <-b.done:
		out := b.stderr.String()
		if err == nil || !strings.Contains(out, "damaged") {
			t.Fatalf("exit %v, want non-zero with 'damaged':\n%s", err, out)
		}
		if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
			t.Fatalf("a panic instead of the damaged-state message:\n%.2000s", out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon still running 30 s after start over truncated tables\n%s", b.stderr)
	}
}
