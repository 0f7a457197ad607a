package main

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newEnv creates environment name (dit tiny, full) with the admin's client and returns
// its folder.
func newEnv(t *testing.T, c *http.Client, d *proc, home, name string) string {
	t.Helper()
	code, body := call(t, c, "POST", d.base+"/api/configs/environments", map[string]any{
		"name": name, "model_family": "dit", "model_flavour": "tiny", "model_type": "full"}, nil)
	if code != 200 {
		t.Fatalf("create %s: %d %v", name, code, body)
	}
	return filepath.Join(home, "config", name)
}

// storedConfig is an environment's config as GET answers it.
func storedConfig(t *testing.T, c *http.Client, d *proc, name string, hdr map[string]string) map[string]any {
	t.Helper()
	code, body := call(t, c, "GET", d.base+"/api/configs/"+name, nil, hdr)
	if code != 200 {
		t.Fatalf("get %s: %d %v", name, code, body)
	}
	cfg, _ := body["config"].(map[string]any)
	return cfg
}

// putBody is a PUT /api/configs/<name> body whose config is cfg plus one extra option
// written as raw JSON.
func putBody(t *testing.T, cfg map[string]any, key, rawValue string) []byte {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	inner := strings.TrimSuffix(string(b), "}")
	if len(cfg) > 0 {
		inner += ","
	}
	return []byte(`{"config":` + inner + `"` + key + `":` + rawValue + `}}`)
}

func nested(depth int) string {
	return strings.Repeat("[", depth) + `"x"` + strings.Repeat("]", depth)
}

// Row H7: a small body nested thousands deep is refused before anything is written, so
// it can no longer become a config.json thousands of times its size.
func TestSecurityDeeplyNestedConfigRefused(t *testing.T) {
	home := t.TempDir()
	d := start(t, home)
	c := adminClient(t, d)
	dir := newEnv(t, c, d, home, "deep")
	cfgPath := filepath.Join(dir, "config.json")
	before, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := storedConfig(t, c, d, "deep", nil)
	url := d.base + "/api/configs/deep"

	for _, depth := range []int{9000, 33} {
		code, body := rawCall(t, c, "PUT", url, putBody(t, cfg, "--user_prompt_library", nested(depth)), nil)
		if code != 422 || !strings.Contains(string(body), "levels of arrays and objects") {
			t.Errorf("PUT with a %d-deep value: %d %.300s, want 422 naming the nesting", depth, code, body)
		}
		if after, _ := os.ReadFile(cfgPath); !bytes.Equal(after, before) {
			t.Fatalf("PUT with a %d-deep value rewrote config.json (%d bytes, was %d)", depth, len(after), len(before))
		}
	}
	// The training form's JSON spelling goes through the same decoder.
	code, body := rawCall(t, c, "POST", d.base+"/api/training/validate", []byte(`{"--user_prompt_library":`+nested(9000)+`}`),
		map[string]string{"Accept": "application/json"})
	if code != 422 || !strings.Contains(string(body), "levels of arrays and objects") {
		t.Errorf("validate with a 9000-deep JSON form: %d %.300s, want 422", code, body)
	}
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || len(got) > 64<<10 {
		t.Errorf("GET after the refused PUTs: %d, %d bytes", res.StatusCode, len(got))
	}

	// A value that would be written as a file over the 1 MiB cap is refused whole.
	many := "[[" + strings.TrimSuffix(strings.Repeat("1,", 400_000), ",") + "]]"
	if code, body := rawCall(t, c, "PUT", url, putBody(t, cfg, "--user_prompt_library", many), nil); code != 413 {
		t.Errorf("PUT of a value encoded over 1 MiB: %d %.300s, want 413", code, body)
	}
	if after, _ := os.ReadFile(cfgPath); !bytes.Equal(after, before) {
		t.Fatal("the refused oversized PUT rewrote config.json")
	}

	// Ordinary nesting is fine, and the file stays close to the body's size.
	normal := `{"portraits":{"studio":["a studio portrait of <token>","<token> in a leather jacket"]}}`
	if code, body := rawCall(t, c, "PUT", url, putBody(t, cfg, "--user_prompt_library", normal), nil); code != 200 {
		t.Fatalf("PUT with a 3-deep value: %d %s", code, body)
	}
	after, _ := os.ReadFile(cfgPath)
	if !strings.Contains(string(after), "leather jacket") || len(after) > 8<<10 {
		t.Errorf("config.json after a 3-deep value (%d bytes):\n%s", len(after), after)
	}
}

// webhookSecrets are the secrets of the webhook config the item-9 test stores.
var webhookSecrets = []string{"SECRETPATH", "SECRETQUERY", "st_SECRETTOKEN", "DISCORDTOKEN"}

const secretWebhooks = `[{"webhook_type":"raw","callback_url":"https://hooks.example.com/cb/SECRETPATH?k=SECRETQUERY","auth_token":"st_SECRETTOKEN","log_level":"info"},` +
	`{"webhook_type":"discord","webhook_url":"https://discord.com/api/webhooks/123/DISCORDTOKEN","message_prefix":"team"}]`

// Row H9: webhook secrets stored in an environment are shown to nobody (viewer or admin)
// by GET, export, the active config or the list, and sending the shown form back keeps
// the stored secrets.
func TestSecurityWebhookSecretsHiddenInEnvironments(t *testing.T) {
	home := t.TempDir()
	d := start(t, home)
	tm := newTeam(t, d)
	admin := tm.admin.cookie
	dir := newEnv(t, admin, d, home, "hooked")
	cfg := storedConfig(t, admin, d, "hooked", nil)
	cfg["--webhook_config"] = secretWebhooks
	if code, body := call(t, admin, "PUT", d.base+"/api/configs/hooked", map[string]any{"config": cfg}, nil); code != 200 {
		t.Fatalf("put webhooks: %d %v", code, body)
	}
	if code, body := call(t, admin, "POST", d.base+"/api/configs/hooked/activate", nil, nil); code != 200 {
		t.Fatalf("activate: %d %v", code, body)
	}
	// A webhook config file, the other place webhook secrets are kept.
	hookFile := filepath.Join(home, "config", "webhooks", "team.json")
	if err := os.MkdirAll(filepath.Dir(hookFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hookFile, []byte(secretWebhooks), 0o600); err != nil {
		t.Fatal(err)
	}

	views := []string{"/api/configs/hooked", "/api/configs/hooked/export", "/api/configs/hooked/export?include_metadata=false",
		"/api/configs/active", "/api/configs/", "/api/configs/team?config_type=webhook"}
	for _, who := range []member{tm.view, tm.admin} {
		for _, v := range views {
			code, body := rawCall(t, who.cookie, "GET", d.base+v, nil, nil)
			if code != 200 {
				t.Fatalf("%s GET %s: %d %s", who.name, v, code, body)
			}
			for _, s := range webhookSecrets {
				if strings.Contains(body, s) {
					t.Errorf("%s GET %s shows the secret %s: %s", who.name, v, s, body)
				}
			}
		}
	}
	// The structure stays visible: types, hosts, and that a token is set.
	shown, _ := storedConfig(t, tm.view.cookie, d, "hooked", nil)["--webhook_config"].(string)
	for _, want := range []string{`"webhook_type":"raw"`, "https://hooks.example.com/<set>", `"auth_token":"<set>"`, "https://discord.com/<set>", `"message_prefix":"team"`} {
		if !strings.Contains(shown, want) {
			t.Errorf("shown webhook_config %s lacks %s", shown, want)
		}
	}

	// The admin saves back what GET shows: the stored secrets stay.
	back := storedConfig(t, admin, d, "hooked", nil)
	back["--learning_rate"] = 0.0002
	if code, body := call(t, admin, "PUT", d.base+"/api/configs/hooked", map[string]any{"config": back}, nil); code != 200 {
		t.Fatalf("put back: %d %v", code, body)
	}
	code, body := call(t, admin, "GET", d.base+"/api/configs/team?config_type=webhook", nil, nil)
	if code != 200 {
		t.Fatalf("get webhook config: %d %v", code, body)
	}
	if code, body := call(t, admin, "PUT", d.base+"/api/configs/team?config_type=webhook", map[string]any{"config": body["config"]}, nil); code != 200 {
		t.Fatalf("put webhook config back: %d %v", code, body)
	}
	for _, p := range []string{filepath.Join(dir, "config.json"), hookFile} {
		raw, _ := os.ReadFile(p)
		for _, s := range webhookSecrets {
			if !bytes.Contains(raw, []byte(s)) {
				t.Errorf("%s lost the secret %s after a save of the shown form:\n%s", p, s, raw)
			}
		}
		if bytes.Contains(raw, []byte("<set>")) {
			t.Errorf("%s stores the placeholder:\n%s", p, raw)
		}
	}
	if raw, _ := os.ReadFile(filepath.Join(dir, "config.json")); !bytes.Contains(raw, []byte("0.0002")) {
		t.Errorf("the edit made with the shown form was not saved:\n%s", raw)
	}

	// A training form that sends the shown form back over the active environment keeps
	// the environment's secrets too.
	fields := append(fastPathFields(t, home), [2]string{"--webhook_config", shown})
	if code, body := form(t, admin, d.base+"/api/training/validate", fields, "application/json"); code != 200 || strings.Contains(body, "webhook_config") {
		t.Errorf("validate with the shown webhook_config: %d %s", code, body)
	}

	// A placeholder with no stored secret behind it is refused, not stored.
	newEnv(t, admin, d, home, "fresh")
	fresh := storedConfig(t, admin, d, "fresh", nil)
	fresh["--webhook_config"] = `[{"webhook_type":"raw","callback_url":"https://hooks.example.com/<set>","auth_token":"<set>"}]`
	if code, body := call(t, admin, "PUT", d.base+"/api/configs/fresh", map[string]any{"config": fresh}, nil); code != 422 {
		t.Errorf("PUT of placeholders with nothing stored: %d %v, want 422", code, body)
	}
}

// Row H15: a JSON body with anything but whitespace after the value is refused with
// 422 wherever it is sent.
func TestSecurityJSONBodyWithTrailingDataRefused(t *testing.T) {
	home := t.TempDir()
	d := start(t, home)
	c := adminClient(t, d)
	dir := newEnv(t, c, d, home, "trail")
	before, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	login := `{"username":"admin","password":"your-secure-password"}`
	cfg, _ := json.Marshal(map[string]any{"config": storedConfig(t, c, d, "trail", nil)})
	for _, tail := range []string{` {"b":2}`, "xyz", "}", " [1]"} {
		code, body := rawCall(t, http.DefaultClient, "POST", d.base+"/api/auth/login", []byte(login+tail), nil)
		if code != 422 || !strings.Contains(string(body), "extra data after the JSON document") {
			t.Errorf("login body with %q after it: %d %s, want 422", tail, code, body)
		}
		code, body = rawCall(t, c, "PUT", d.base+"/api/configs/trail", append(append([]byte{}, cfg...), tail...), nil)
		if code != 422 || !strings.Contains(string(body), "extra data after the JSON document") {
			t.Errorf("PUT body with %q after it: %d %s, want 422", tail, code, body)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "config.json")); !bytes.Equal(after, before) {
		t.Error("a refused PUT rewrote config.json")
	}
	if code, body := rawCall(t, http.DefaultClient, "POST", d.base+"/api/auth/login", []byte(login+" \r\n\t "), nil); code != 200 {
		t.Errorf("login body with whitespace after it: %d %s", code, body)
	}
}

// Row H15: an auth_token or URL with a line break is refused when the webhooks are
// validated, naming the field, instead of failing every delivery later.
func TestSecurityWebhookTokenWithLineBreakRefused(t *testing.T) {
	home := t.TempDir()
	d := start(t, home)
	c := adminClient(t, d)
	for _, tc := range []struct{ hook, field string }{
		{`{"webhook_type":"raw","callback_url":"https://hooks.example.com/cb","auth_token":"st_abc\r\nX-Injected: 1"}`, "auth_token"},
		{`{"webhook_type":"raw","callback_url":"https://hooks.example.com/cb","auth_token":"st_abc\ndef"}`, "auth_token"},
		{`{"webhook_type":"raw","callback_url":"https://hooks.example.com/c\r\nb"}`, "callback_url"},
		{`{"webhook_type":"discord","webhook_url":"https://discord.com/api/webhooks/1/t\nX"}`, "webhook_url"},
	} {
		fields := append(fastPathFields(t, home), [2]string{"--webhook_config", "[" + tc.hook + "]"})
		code, body := form(t, c, d.base+"/api/training/validate", fields, "application/json")
		if code != 200 || !strings.Contains(body, `"valid":false`) || !strings.Contains(body, "webhook 1: "+tc.field+": must not contain line breaks") {
			t.Errorf("validate %s: %d %s", tc.hook, code, body)
		}
	}
	fields := append(fastPathFields(t, home), [2]string{"--webhook_config",
		`[{"webhook_type":"raw","callback_url":"https://hooks.example.com/cb","auth_token":"st_abc"}]`})
	if code, body := form(t, c, d.base+"/api/training/validate", fields, "application/json"); code != 200 || strings.Contains(body, "webhook_config") {
		t.Errorf("validate with a clean token: %d %s", code, body)
	}
}

// wantPrivate fails unless every file under root is 0600 and every folder 0700.
func wantPrivate(t *testing.T, step, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if st.IsDir() {
			want = 0o700
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("after %s: %s is %#o, want %#o", step, p, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Row H15: everything the configs service writes is the daemon user's alone: files
// 0600, folders 0700, after each kind of write.
func TestSecurityConfigFilesArePrivate(t *testing.T) {
	home := t.TempDir()
	d := start(t, home)
	c := adminClient(t, d)
	root := filepath.Join(home, "config")
	newEnv(t, c, d, home, "mode")
	wantPrivate(t, "create", root)

	cfg := storedConfig(t, c, d, "mode", nil)
	cfg["--learning_rate"] = 0.0003
	steps := []struct {
		name, method, path string
		body               any
	}{
		{"PUT", "PUT", "/api/configs/mode", map[string]any{"config": cfg}},
		{"copy", "POST", "/api/configs/mode/copy", map[string]any{"target_name": "mode-copy"}},
		{"rename", "POST", "/api/configs/mode-copy/rename", map[string]any{"new_name": "mode-renamed"}},
		{"import", "POST", "/api/configs/import", map[string]any{"name": "mode-imported", "data": map[string]any{
			"--model_family": "dit", "--model_flavour": "tiny", "--model_type": "full", "data_backend_config": "mode/multidatabackend.json"}}},
		{"dataloader", "POST", "/api/configs/mode-imported/dataloader", map[string]any{"path": "shared/loaders/imported.json"}},
	}
	for _, s := range steps {
		if code, body := call(t, c, s.method, d.base+s.path, s.body, nil); code != 200 {
			t.Fatalf("%s: %d %v", s.name, code, body)
		}
		wantPrivate(t, s.name, root)
	}
	for _, p := range []string{"mode/config.json", "mode/.metadata.json", "mode/multidatabackend.json", "mode-renamed/config.json",
		"mode-imported/config.json", "mode-imported/.metadata.json", "shared/loaders/imported.json", "default.json"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("%s was not written: %v", p, err)
		}
	}
}
