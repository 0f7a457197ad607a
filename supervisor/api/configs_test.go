package api

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"simpletuner/options"
	"simpletuner/supervisor/configs"
	"simpletuner/supervisor/configs/configstest"
	"simpletuner/supervisor/datasets"
)

// fileHarness is a harness with a configs dir and a datasets dir under one temp root.
type fileHarness struct {
	*harness
	root, configDir, datasetsDir string
	settings                     *configstest.MemSettings
}

func newFileHarness(t *testing.T, cfg Config, lim datasets.Limits) *fileHarness {
	t.Helper()
	root := t.TempDir()
	fh := &fileHarness{root: root, configDir: filepath.Join(root, "config"), datasetsDir: filepath.Join(root, "datasets"), settings: &configstest.MemSettings{}}
	cs, err := configs.New(configs.Options{Dir: fh.configDir, Registry: options.Default(), Settings: fh.settings, OutputRoot: filepath.Join(root, "output")})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := datasets.New(datasets.Options{Dir: fh.datasetsDir, Settings: fh.settings, Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.Close() })
	cfg.Configs, cfg.Datasets = cs, ds
	fh.harness = newHarness(t, cfg)
	return fh
}

const seedDataloader = `[
  {"id": "pixart-camera", "type": "local", "dataset_type": "image", "instance_data_dir": "/data/datasets/pseudo-camera-10k",
   "caption_strategy": "filename", "resolution": 1.0, "resolution_type": "area", "minimum_image_size": 0.25,
   "maximum_image_size": 1.0, "target_downsample_size": 1.0, "cache_dir_vae": "/data/cache/vae/pixart/pseudo-camera-10k",
   "crop": true, "crop_style": "random", "crop_aspect": "square", "metadata_backend": "discovery"},
  {"id": "pixart-text-embeds", "type": "local", "dataset_type": "text_embeds", "default": true,
   "cache_dir": "/data/cache/text/pixart/pseudo-camera-10k", "write_batch_size": 128}
]`

// seedOverrides is the tutorial's jq merge (step 3).
var seedOverrides = map[string]any{
	"--output_dir": "/workspace/output/pixart900m", "--train_batch_size": 2, "--gradient_accumulation_steps": 2,
	"--learning_rate": 0.0001, "--optimizer": "adamw_bf16", "--lr_scheduler": "cosine", "--lr_warmup_steps": 500,
	"--max_train_steps": 1800, "--num_train_epochs": 0,
	"--validation_prompt": "a studio portrait of <token> wearing a leather jacket", "--validation_guidance": 3.8,
	"--validation_resolution": "1024x1024", "--validation_num_inference_steps": 28, "--cache_dir_vae": "/data/cache/vae/pixart",
	"--seed": 1337, "--resume_from_checkpoint": "latest", "--base_model_precision": "bf16", "--dataloader_prefetch": true,
	"--report_to": "none", "--checkpoints_total_limit": 4, "--validation_seed": 12345,
	"--data_backend_config": "pixart-api-demo/multidatabackend.json",
}

func (fh *fileHarness) createSeedEnv(cookie string) {
	fh.t.Helper()
	res := fh.do(req{method: "POST", path: "/api/configs/environments", cookie: cookie, body: map[string]any{
		"name": "pixart-api-demo", "model_family": "dit", "model_flavour": "tiny", "model_type": "full",
		"description": "PixArt 900M API-driven training"}})
	if res.code != 200 {
		fh.t.Fatalf("create: %d %s", res.code, res.body)
	}
}

// getMerged is the tutorial's `curl GET | jq '.config + {…}'`.
func (fh *fileHarness) getMerged(cookie string, extra map[string]any) map[string]any {
	fh.t.Helper()
	res := fh.do(req{method: "GET", path: "/api/configs/pixart-api-demo", cookie: cookie})
	if res.code != 200 {
		fh.t.Fatalf("get: %d %s", res.code, res.body)
	}
	var got struct {
		Config map[string]any `json:"config"`
	}
	res.json(fh.t, &got)
	for k, v := range seedOverrides {
		got.Config[k] = v
	}
	for k, v := range extra {
		got.Config[k] = v
	}
	return got.Config
}

func TestSeedEnvironmentWorkflow(t *testing.T) {
	fh := newFileHarness(t, Config{}, datasets.Limits{})
	cookie, _ := fh.setup()
	fh.createSeedEnv(cookie)
	envDir := filepath.Join(fh.configDir, "pixart-api-demo")
	// Step 2: cat > config/pixart-api-demo/multidatabackend.json
	if err := os.WriteFile(filepath.Join(envDir, "multidatabackend.json"), []byte(seedDataloader), 0o644); err != nil {
		t.Fatal(err)
	}
	// Step 3: GET | jq merge > file; jq wrap; PUT.
	res := fh.do(req{method: "PUT", path: "/api/configs/pixart-api-demo", cookie: cookie, body: map[string]any{
		"name": "pixart-api-demo", "description": "PixArt 900M full tune (API)", "tags": []string{"pixart", "api"},
		"config": fh.getMerged(cookie, nil)}})
	if res.code != 200 {
		t.Fatalf("put: %d %s", res.code, res.body)
	}
	var saved configs.Saved
	res.json(t, &saved)
	if saved.Message != "Configuration 'pixart-api-demo' updated successfully" {
		t.Errorf("message = %q", saved.Message)
	}
	wantWarn := "dataloader pixart-api-demo/multidatabackend.json: Dataset 'pixart-camera': instance_data_dir '/data/datasets/pseudo-camera-10k' is not a readable folder (does not exist); upload the data there or fix the path"
	if !contains(saved.Validation.Warnings, wantWarn) {
		t.Errorf("warnings = %q", saved.Validation.Warnings)
	}
	// Step 4: activate.
	res = fh.do(req{method: "POST", path: "/api/configs/pixart-api-demo/activate", cookie: cookie})
	if res.code != 200 || !strings.Contains(string(res.body), `"active":"pixart-api-demo"`) {
		t.Fatalf("activate: %d %s", res.code, res.body)
	}
	res = fh.do(req{method: "GET", path: "/api/configs/active", cookie: cookie})
	var active configs.Loaded
	res.json(t, &active)
	if active.Name != "pixart-api-demo" || active.Config.(map[string]any)["--max_train_steps"] != 1800.0 {
		t.Errorf("active = %s", res.body)
	}
	// The files land where the seed says.
	var stored map[string]any
	b, _ := os.ReadFile(filepath.Join(envDir, "config.json"))
	if err := json.Unmarshal(b, &stored); err != nil {
		t.Fatal(err)
	}
	if stored["--optimizer"] != "adamw_bf16" || stored["data_backend_config"] != "pixart-api-demo/multidatabackend.json" || stored["--model_family"] != "dit" {
		t.Errorf("config.json = %s", b)
	}
	var meta configs.Metadata
	b, _ = os.ReadFile(filepath.Join(envDir, ".metadata.json"))
	_ = json.Unmarshal(b, &meta)
	if meta.Description != "PixArt 900M full tune (API)" || len(meta.Tags) != 2 {
		t.Errorf(".metadata.json = %s", b)
	}
	if got, _ := os.ReadFile(filepath.Join(envDir, "multidatabackend.json")); string(got) != seedDataloader {
		t.Error("the PUT rewrote the dataloader")
	}
	res = fh.do(req{method: "GET", path: "/api/configs/?config_type=model", cookie: cookie})
	var list configs.Listing
	res.json(t, &list)
	if list.Active == nil || *list.Active != "pixart-api-demo" || list.Count != 2 {
		t.Errorf("list = %s", res.body)
	}
	if res := fh.do(req{method: "DELETE", path: "/api/configs/pixart-api-demo", cookie: cookie}); res.code != 400 || res.detail() != "Cannot delete the active configuration" {
		t.Errorf("delete active: %d %s", res.code, res.body)
	}
	if fh.validated.Load() == 0 {
		t.Error("no response was checked against the OpenAPI document")
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func TestPutDashedSpellingTakesEffect(t *testing.T) {
	fh := newFileHarness(t, Config{}, datasets.Limits{})
	cookie, _ := fh.setup()
	fh.createSeedEnv(cookie)
	other := filepath.Join(fh.configDir, "shared", "loader.json")
	_ = os.MkdirAll(filepath.Dir(other), 0o755)
	if err := os.WriteFile(other, []byte(seedDataloader), 0o644); err != nil {
		t.Fatal(err)
	}
	// The GET answers both spellings; the client edits only the dashed one.
	cfg := fh.getMerged(cookie, map[string]any{"--data_backend_config": "shared/loader.json"})
	if cfg["data_backend_config"] != "pixart-api-demo/multidatabackend.json" {
		t.Fatalf("GET lacks the bare spelling: %v", cfg["data_backend_config"])
	}
	res := fh.do(req{method: "PUT", path: "/api/configs/pixart-api-demo", cookie: cookie, body: map[string]any{"name": "pixart-api-demo", "config": cfg}})
	if res.code != 200 {
		t.Fatalf("put: %d %s", res.code, res.body)
	}
	res = fh.do(req{method: "GET", path: "/api/configs/pixart-api-demo", cookie: cookie})
	var got configs.Loaded
	res.json(t, &got)
	if c := got.Config.(map[string]any); c["data_backend_config"] != "shared/loader.json" || c["--data_backend_config"] != "shared/loader.json" {
		t.Errorf("after PUT: %v / %v", c["data_backend_config"], c["--data_backend_config"])
	}
}

func TestConfigErrorsAndPermissions(t *testing.T) {
	fh := newFileHarness(t, Config{}, datasets.Limits{})
	cookie, key := fh.setup()
	fh.createSeedEnv(cookie)
	researcher := fh.createUser(key, "res", "researcher")
	viewer := fh.createUser(key, "view", "viewer")
	put := func(cookie string, extra map[string]any) resp {
		return fh.do(req{method: "PUT", path: "/api/configs/pixart-api-demo", cookie: cookie, body: map[string]any{"config": fh.getMerged(cookie, extra)}})
	}
	// 422 with every message.
	res := put(cookie, map[string]any{"--max_train_steps": 0, "--optimizer": "sgd9"})
	if res.code != 422 {
		t.Fatalf("invalid PUT: %d %s", res.code, res.body)
	}
	var vb validationBody
	res.json(t, &vb)
	var msgs []string
	for _, d := range vb.Detail {
		msgs = append(msgs, d.Msg)
	}
	for _, want := range []string{
		`unsupported optimizer "sgd9"; supported: adamw, adamw_bf16, optimi-adamw, optimi-lion, optimi-sgd`,
		"Either num_train_epochs or max_train_steps must be greater than 0. You cannot set both to 0.",
	} {
		if !contains(msgs, want) {
			t.Errorf("422 lacks %q: %q", want, msgs)
		}
	}
	// Hook scripts: 403 for a researcher, fine for the admin.
	hook := map[string]any{"--post_checkpoint_script": "/usr/local/bin/sync.sh {local_checkpoint_path}"}
	if res := put(researcher, hook); res.code != 403 || !strings.Contains(res.detail(), "needs the job.hooks permission") {
		t.Errorf("researcher hook: %d %s", res.code, res.body)
	}
	if res := put(cookie, hook); res.code != 200 {
		t.Errorf("admin hook: %d %s", res.code, res.body)
	}
	// A viewer reads but does not write.
	if res := fh.do(req{method: "GET", path: "/api/configs/pixart-api-demo", cookie: viewer}); res.code != 200 {
		t.Errorf("viewer GET: %d", res.code)
	}
	if res := fh.do(req{method: "POST", path: "/api/configs/pixart-api-demo/activate", cookie: viewer}); res.code != 403 || res.detail() != "Permission denied: config.edit.own" {
		t.Errorf("viewer activate: %d %s", res.code, res.body)
	}
	if res := fh.do(req{method: "GET", path: "/api/configs/"}); res.code != 401 {
		t.Errorf("anonymous list: %d", res.code)
	}
	tests := []struct {
		method, path string
		body         any
		code         int
		detail       string
	}{
		{"GET", "/api/configs/nope", nil, 404, "Configuration 'nope' not found"},
		{"GET", "/api/configs/bad%20name", nil, 400, "Configuration name may only contain letters, numbers, '.', '_' or '-'"},
		{"GET", "/api/configs/pixart-api-demo?config_type=yaml", nil, 422, ""},
		{"POST", "/api/configs/environments", map[string]any{"name": "pixart-api-demo", "model_family": "dit"}, 409, "Environment 'pixart-api-demo' already exists"},
		{"POST", "/api/configs/environments", map[string]any{"name": "x"}, 400, "model_family is required"},
		{"POST", "/api/configs/environments", map[string]any{"name": "x", "model_family": "dit", "example": "nope"}, 404, "Example 'nope' not found. Available examples: dit-tiny, dit-tiny-lora"},
		{"POST", "/api/configs/pixart-api-demo/dataloader", nil, 409, "Dataloader config already exists at 'pixart-api-demo/multidatabackend.json'; send \"overwrite\": true to replace it with a new one"},
		{"POST", "/api/configs/pixart-api-demo/copy", map[string]any{"target_name": "../x"}, 400, "Configuration name may only contain letters, numbers, '.', '_' or '-'"},
		{"POST", "/api/configs/pixart-api-demo/copy", map[string]any{"target_name": "pixart-copy"}, 200, ""},
		{"POST", "/api/configs/pixart-copy/rename", map[string]any{"new_name": "pixart-api-demo"}, 409, "Configuration 'pixart-api-demo' already exists"},
		{"POST", "/api/configs/pixart-copy/rename", map[string]any{"new_name": "pixart-two"}, 200, ""},
		{"POST", "/api/configs/pixart-two/validate", nil, 200, ""},
		{"GET", "/api/configs/pixart-two/export?include_metadata=false", nil, 200, ""},
		{"POST", "/api/configs/import", map[string]any{"data": map[string]any{"--model_family": "dit", "data_backend_config": "pixart-two/multidatabackend.json"}, "name": "imported"}, 200, ""},
		{"POST", "/api/configs/import", map[string]any{"data": map[string]any{"--model_family": "dit"}, "name": "imported"}, 409, "Configuration 'imported' already exists"},
		{"DELETE", "/api/configs/imported", nil, 200, ""},
		{"GET", "/api/configs/examples", nil, 200, ""},
		{"GET", "/api/configs/pixart-two?config_type=dataloader", nil, 200, ""},
		{"GET", "/api/configs/active", nil, 200, ""},
	}
	for _, tt := range tests {
		res := fh.do(req{method: tt.method, path: tt.path, cookie: cookie, body: tt.body})
		if res.code != tt.code || (tt.detail != "" && res.detail() != tt.detail) {
			t.Errorf("%s %s = %d %s; want %d %q", tt.method, tt.path, res.code, res.body, tt.code, tt.detail)
		}
	}
}
