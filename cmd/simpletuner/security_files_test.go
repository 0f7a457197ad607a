package main

// Black-box tests of docs/security.md, rows H2 (files an option names: special files, unbounded
// reads, paths outside the roots) and H6 (dataloader folders outside the roots).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rssLimit is the most a daemon may grow to in these tests; reading /dev/zero without a
// cap passes it within a second.
const rssLimit = 500 << 20

// rssGuard watches the daemon's resident memory while a test runs and kills it when it
// passes rssLimit, so a daemon that reads without bound fails the test instead of the
// machine. Stop returns the highest value seen and whether it killed the daemon.
type rssGuard struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	max  int64
	hit  bool
}

func guardRSS(t *testing.T, d *proc) *rssGuard {
	t.Helper()
	g := &rssGuard{stop: make(chan struct{}), done: make(chan struct{})}
	pid := d.cmd.Process.Pid
	go func() {
		defer close(g.done)
		for {
			rss := vmRSS(pid)
			g.mu.Lock()
			g.max = max(g.max, rss)
			over := rss > rssLimit && !g.hit
			g.hit = g.hit || over
			g.mu.Unlock()
			if over {
				d.cmd.Process.Kill()
			}
			select {
			case <-g.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { g.Stop() })
	return g
}

// Seen returns the highest RSS seen so far and whether the guard killed the daemon.
func (g *rssGuard) Seen() (maxRSS int64, killed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.max, g.hit
}

// Stop ends the watch; it may be called more than once.
func (g *rssGuard) Stop() (maxRSS int64, killed bool) {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.max, g.hit
}

// vmRSS reads VmRSS of /proc/<pid>/status in bytes (0 when the process is gone).
func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// with returns fields with one more (a later field wins in the form).
func with(fields [][2]string, k, v string) [][2]string {
	return append(append([][2]string{}, fields...), [2]string{k, v})
}

// validationErrors decodes a JSON validation report and returns its error messages for
// one option.
func validationErrors(t *testing.T, body, option string) (valid bool, msgs []string) {
	t.Helper()
	var rep struct {
		Valid  bool `json:"valid"`
		Errors []struct {
			Option  string `json:"option"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatalf("validation report: %v: %s", err, body)
	}
	for _, e := range rep.Errors {
		if e.Option == option {
			msgs = append(msgs, e.Message)
		}
	}
	return rep.Valid, msgs
}

// aboutTheFile drops the messages about the spelling of a --webhook_config value.
func aboutTheFile(msgs []string) []string {
	var out []string
	for _, m := range msgs {
		if !strings.Contains(m, "or a path to a .json file") {
			out = append(out, m)
		}
	}
	return out
}

// foreignFiles makes, outside every root, a JSON file with a secret in it and the name of
// a sibling that does not exist.
func foreignFiles(t *testing.T) (existing, missing string) {
	dir := t.TempDir()
	existing = filepath.Join(dir, "secret.json")
	if err := os.WriteFile(existing, []byte(`[{"id":"s3cr3t-field","webhook_type":"s3cr3t-type","callback_url":"https://s3cr3t.example"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	return existing, filepath.Join(dir, "missing.json")
}

// Row H2: a file an option names is opened without blocking, must be a regular file of at
// most 1 MiB inside the configs dir (or an allowed root), and a path outside gets one
// message whether or not it exists, never a word of the file.
func TestSecurityFilesNamedByOptionsAreConfinedAndBounded(t *testing.T) {
	home := t.TempDir()
	d := start(t, home)
	tm := newTeam(t, d)
	guard := guardRSS(t, d)
	c := &http.Client{Timeout: 20 * time.Second}
	fields := fastPathFields(t, home)
	cfgDir := filepath.Join(home, "config")

	fifo := filepath.Join(cfgDir, "fifo.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// 2 MiB of otherwise valid JSON: a webhook list and a dataloader padded with spaces.
	pad := strings.Repeat(" ", 2<<20)
	bigHooks, bigDL := filepath.Join(cfgDir, "big-hooks.json"), filepath.Join(cfgDir, "big-dl.json")
	os.WriteFile(bigHooks, []byte(`[{"webhook_type":"raw","callback_url":"https://example.com/hook"}`+pad+`]`), 0o600)
	dl, _ := os.ReadFile(filepath.Join(cfgDir, "multidatabackend-once.json"))
	os.WriteFile(bigDL, append(dl, pad...), 0o600)
	secret, missing := foreignFiles(t)

	// validate answers the error messages about option, or ok=false after reporting why
	// the answer is wrong. A daemon the RSS guard had to kill ends the test.
	validate := func(option, value string) (msgs []string, ok bool) {
		t.Helper()
		code, body, err := postFields(c, d.base+"/api/training/validate", with(fields, option, value), tm.r1.keyed())
		if err != nil {
			if maxRSS, killed := guard.Seen(); killed {
				t.Fatalf("validate with %s=%s: no answer (%v); the daemon's RSS passed %d MiB (peak seen %d MiB) and it was killed", option, value, err, rssLimit>>20, maxRSS>>20)
			}
			t.Errorf("validate with %s=%s: no answer within the client timeout (%v)", option, value, err)
			return nil, false
		}
		valid, msgs := validationErrors(t, body, option)
		switch {
		case code != 200 && (code < 400 || code > 499):
			t.Errorf("validate with %s=%s: %d %s", option, value, code, body)
			return nil, false
		case valid || len(msgs) == 0:
			t.Errorf("validate with %s=%s: accepted (valid=%v, errors for the option: %q): %s", option, value, valid, msgs, body)
			return nil, false
		}
		for _, leak := range []string{"root:", "s3cr3t", "invalid character", "looking for beginning"} {
			if strings.Contains(body, leak) {
				t.Errorf("validate with %s=%s: the answer quotes the file (%q): %s", option, value, leak, body)
				return nil, false
			}
		}
		return msgs, true
	}
	expect := func(option, value, want string) {
		t.Helper()
		if msgs, ok := validate(option, value); ok && !strings.Contains(strings.Join(msgs, " | "), want) {
			t.Errorf("validate with %s=%s: errors %q lack %q", option, value, msgs, want)
		}
	}
	for _, option := range []string{"--webhook_config", "--data_backend_config"} {
		expect(option, "/etc/passwd", "outside the configs directory")
		// Outside the roots, an existing file and a missing one get the same answer (the
		// webhook option's own "a path to a .json file" rule is about the name alone).
		for _, pair := range [][2]string{{secret, missing}, {"/etc/passwd", "/etc/nope.json"}} {
			a, okA := validate(option, pair[0])
			b, okB := validate(option, pair[1])
			if okA && okB && fmt.Sprint(aboutTheFile(a)) != fmt.Sprint(aboutTheFile(b)) {
				t.Errorf("%s: %s answers %q but %s answers %q: that tells which exists", option, pair[0], a, pair[1], b)
			}
		}
		expect(option, map[string]string{"--webhook_config": bigHooks, "--data_backend_config": bigDL}[option], "larger than 1 MiB")
		expect(option, fifo, "not a regular file")
	}

	// The same files saved into an environment (PUT /api/configs/<env>) are refused with
	// 422 and the same care.
	if code, body, err := doJSON(c, "POST", d.base+"/api/configs/environments", map[string]any{"name": "env1", "model_family": "dit"}, tm.r1.keyed()); err != nil || code != 200 {
		t.Fatalf("create environment: %d %s %v", code, body, err)
	}
	put := func(option, value string) string {
		t.Helper()
		cfg := map[string]any{"--model_family": "dit", "--model_flavour": "tiny", "--model_type": "full", "--output_dir": "env1",
			"--max_train_steps": 10, "--num_train_epochs": 0, "--data_backend_config": "config/multidatabackend-once.json"}
		cfg[option] = value
		code, body, err := doJSON(c, "PUT", d.base+"/api/configs/env1", map[string]any{"config": cfg}, tm.r1.keyed())
		switch {
		case err != nil:
			t.Errorf("PUT with %s=%s: no answer within the client timeout (%v)", option, value, err)
		case code != 422 || !strings.Contains(body, option):
			t.Errorf("PUT with %s=%s: %d %s", option, value, code, body)
		case strings.Contains(body, "root:") || strings.Contains(body, "s3cr3t") || strings.Contains(body, "invalid character"):
			t.Errorf("PUT with %s=%s: the answer quotes the file: %s", option, value, body)
		}
		return body
	}
	for _, option := range []string{"--data_backend_config", "--webhook_config", "--user_prompt_library"} {
		for _, v := range []string{"/dev/zero", fifo, bigDL} {
			put(option, v)
		}
		if a, b := put(option, secret), put(option, missing); a != b {
			t.Errorf("PUT %s: %s answers %s but %s answers %s", option, secret, a, missing, b)
		}
	}

	// Last, as on unfixed code it grows the daemon until the guard kills it.
	for _, option := range []string{"--data_backend_config", "--webhook_config"} {
		expect(option, "/dev/zero", "outside the configs directory")
	}
	if maxRSS, killed := guard.Stop(); killed || maxRSS > rssLimit {
		t.Fatalf("daemon RSS reached %d MiB (limit %d MiB)", maxRSS>>20, rssLimit>>20)
	}
	if rss := vmRSS(d.cmd.Process.Pid); rss == 0 || rss > rssLimit {
		t.Fatalf("daemon RSS after the requests: %d MiB", rss>>20)
	}
}

// Row H2, the admin's side: --allow-file-root lets files outside the configs dir be
// named; the FIFO and size checks still hold there.
func TestSecurityAllowFileRootWidensWhereFilesMayLie(t *testing.T) {
	home, shared := t.TempDir(), t.TempDir()
	d := start(t, home, "--allow-file-root", shared)
	c := adminClient(t, d)
	fields := fastPathFields(t, home)
	hooks := filepath.Join(shared, "hooks.json")
	os.WriteFile(hooks, []byte(`[{"webhook_type":"raw","callback_url":"https://example.com/hook"}]`), 0o600)
	if err := syscall.Mkfifo(filepath.Join(shared, "fifo.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body := form(t, c, d.base+"/api/training/validate", with(fields, "--webhook_config", hooks), "application/json")
	if valid, msgs := validationErrors(t, body, "--webhook_config"); code != 200 || !valid || len(msgs) > 0 {
		t.Fatalf("webhook list in an allowed root: %d %s", code, body)
	}
	code, body = form(t, c, d.base+"/api/training/validate", with(fields, "--webhook_config", filepath.Join(shared, "fifo.json")), "application/json")
	if _, msgs := validationErrors(t, body, "--webhook_config"); code != 200 || !strings.Contains(fmt.Sprint(msgs), "not a regular file") {
		t.Fatalf("FIFO in an allowed root: %d %s", code, body)
	}
}

// Row H6: a dataloader's instance_data_dir must lie under the datasets root and its
// cache_dir* under the cache or output root (or an --allow-data-root); otherwise validate
// and start refuse it naming the dataset and the key, no job is made, and nothing is
// created where it pointed.
func TestSecurityDataloaderFoldersStayInsideTheRoots(t *testing.T) {
	home := t.TempDir()
	d := start(t, home, fakeTrainerArgs(1000, 20)...)
	tm := newTeam(t, d)
	c := &http.Client{Timeout: 20 * time.Second}
	fields := fastPathFields(t, home)
	cfgDir := filepath.Join(home, "config")
	data := filepath.Join(home, "datasets", "demo")
	os.MkdirAll(data, 0o755)
	os.WriteFile(filepath.Join(data, "a.txt"), []byte("a caption"), 0o644)
	elsewhere := t.TempDir()
	made := filepath.Join(elsewhere, "anywhere", "made", "by", "api")

	// The README's layout is accepted.
	if code, body, err := postFields(c, d.base+"/api/training/validate", fields, tm.r1.keyed()); err != nil || code != 200 || !strings.Contains(body, `"valid":true`) {
		t.Fatalf("dataloader under the roots: %d %s %v", code, body, err)
	}

	writeDL := func(name, instanceDir, cacheKey, cacheDir string) string {
		dl := fmt.Sprintf(`[{"id":"demo-images","type":"local","dataset_type":"image","instance_data_dir":%q,"caption_strategy":"textfile","resolution":32,"resolution_type":"pixel"},
{"id":"demo-text-embeds","type":"local","dataset_type":"text_embeds","default":true,%q:%q}]`, instanceDir, cacheKey, cacheDir)
		p := filepath.Join(cfgDir, name)
		if err := os.WriteFile(p, []byte(dl), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, instanceDir, key, cacheDir string
		wantOption, wantID               string
	}{
		{"cache_dir outside", data, "cache_dir", made, "datasets[1].cache_dir", "demo-text-embeds"},
		{"cache_dir_vae outside", data, "cache_dir_vae", made, "datasets[1].cache_dir_vae", "demo-text-embeds"},
		{"cache_dir climbing out", data, "cache_dir", "../../../../" + strings.TrimPrefix(made, "/"), "datasets[1].cache_dir", "demo-text-embeds"},
		{"instance_data_dir outside", elsewhere, "cache_dir", filepath.Join(home, "cache", "text"), "datasets[0].instance_data_dir", "demo-images"},
	} {
		p := writeDL("outside.json", tc.instanceDir, tc.key, tc.cacheDir)
		f := with(fields, "--data_backend_config", p)
		code, body, err := postFields(c, d.base+"/api/training/validate", f, tm.r1.keyed())
		if err != nil {
			t.Fatalf("%s: validate: %v", tc.name, err)
		}
		if valid, msgs := validationErrors(t, body, tc.wantOption); code != 200 || valid || len(msgs) == 0 || !strings.Contains(msgs[0], tc.wantID) {
			t.Errorf("%s: validate: %d %s", tc.name, code, body)
		}
		code, body, err = postFields(c, d.base+"/api/training/start", f, tm.r1.keyed())
		if err != nil {
			t.Fatalf("%s: start: %v", tc.name, err)
		}
		if code != 422 || !strings.Contains(body, `"status":"invalid"`) || !strings.Contains(body, tc.wantOption) || !strings.Contains(body, tc.wantID) {
			t.Errorf("%s: start: %d %s", tc.name, code, body)
		}
	}
	// Through the environment API too: a dataloader saved with a cache outside is refused.
	if code, body, err := doJSON(c, "POST", d.base+"/api/configs/environments", map[string]any{"name": "env1", "model_family": "dit"}, tm.r1.keyed()); err != nil || code != 200 {
		t.Fatalf("create environment: %d %s %v", code, body, err)
	}
	dl := []map[string]any{
		{"id": "demo-images", "type": "local", "dataset_type": "image", "instance_data_dir": data, "caption_strategy": "textfile"},
		{"id": "demo-text-embeds", "type": "local", "dataset_type": "text_embeds", "default": true, "cache_dir": made},
	}
	if code, body, err := doJSON(c, "PUT", d.base+"/api/configs/env1?config_type=dataloader", map[string]any{"config": dl}, tm.r1.keyed()); err != nil || code != 422 ||
		!strings.Contains(body, "datasets[1].cache_dir") || !strings.Contains(body, "demo-text-embeds") {
		t.Errorf("PUT dataloader with an outside cache_dir: %d %s %v", code, body, err)
	}

	// instance_data_dir outside: the answer does not tell whether the folder exists.
	msgFor := func(dir string) string {
		p := writeDL("outside.json", dir, "cache_dir", filepath.Join(home, "cache", "text"))
		_, body, err := postFields(c, d.base+"/api/training/validate", with(fields, "--data_backend_config", p), tm.r1.keyed())
		if err != nil {
			t.Fatal(err)
		}
		_, msgs := validationErrors(t, body, "datasets[0].instance_data_dir")
		return strings.ReplaceAll(strings.Join(msgs, " | "), dir, "DIR")
	}
	if a, b := msgFor(elsewhere), msgFor(filepath.Join(elsewhere, "nope")); a != b || a == "" {
		t.Errorf("instance_data_dir outside: %q vs %q", a, b)
	}

	if code, jobs := call(t, tm.admin.cookie, "GET", d.base+"/api/jobs", nil, nil); code != 200 || jobs["total"] != float64(0) {
		t.Errorf("refused starts left jobs: %d %v", code, jobs)
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "anywhere")); err == nil {
		t.Errorf("%s was created", filepath.Join(elsewhere, "anywhere"))
	}
}

// Row H6, the admin's side: --allow-data-root lets a dataloader use folders elsewhere.
func TestSecurityAllowDataRootWidensWhereDataMayLie(t *testing.T) {
	home, shared := t.TempDir(), t.TempDir()
	d := start(t, home, "--allow-data-root", shared)
	c := adminClient(t, d)
	fields := fastPathFields(t, home)
	data := filepath.Join(shared, "images")
	os.MkdirAll(data, 0o755)
	os.WriteFile(filepath.Join(data, "a.txt"), []byte("a caption"), 0o644)
	dl := fmt.Sprintf(`[{"id":"img","type":"local","dataset_type":"image","instance_data_dir":%q,"caption_strategy":"textfile","resolution":32,"resolution_type":"pixel"},
{"id":"txt","type":"local","dataset_type":"text_embeds","default":true,"cache_dir":%q}]`, data, filepath.Join(shared, "cache", "text"))
	p := filepath.Join(home, "config", "shared.json")
	os.WriteFile(p, []byte(dl), 0o600)
	code, body := form(t, c, d.base+"/api/training/validate", with(fields, "--data_backend_config", p), "application/json")
	if code != 200 || !strings.Contains(body, `"valid":true`) {
		t.Fatalf("dataloader under an allowed data root: %d %s", code, body)
	}
}
