package configs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"simpletuner/options"
	"simpletuner/supervisor/configs/configstest"
)

func newService(t *testing.T) *Service {
	t.Helper()
	root := t.TempDir()
	s, err := New(Options{Dir: filepath.Join(root, "config"), Registry: options.Default(), Settings: &configstest.MemSettings{},
		OutputRoot: filepath.Join(root, "output"), Now: func() time.Time { return time.Date(2026, 1, 15, 10, 30, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sp(s string) *string { return &s }

func seedEnv(t *testing.T, s *Service) *Created {
	t.Helper()
	c, err := s.CreateEnvironment(EnvironmentRequest{Name: "pixart-api-demo", ModelFamily: sp("dit"), ModelFlavour: sp("tiny"),
		ModelType: sp("full"), Description: sp("PixArt 900M API-driven training")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readFile(t *testing.T, p string) map[string]any {
	t.Helper()
	v, err := readJSON(p)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := v.(map[string]any)
	return m
}

func TestCreateEnvironmentLayout(t *testing.T) {
	s := newService(t)
	c := seedEnv(t, s)
	dir := filepath.Join(s.Dir(), "pixart-api-demo")
	for _, f := range []string{"config.json", ".metadata.json", "multidatabackend.json"} {
		if !exists(filepath.Join(dir, f)) {
			t.Errorf("%s not written", f)
		}
	}
	if !exists(filepath.Join(s.Dir(), "default.json")) {
		t.Error("default.json not created on first use")
	}
	cfg := readFile(t, filepath.Join(dir, "config.json"))
	want := map[string]any{"--model_family": "dit", "--model_flavour": "tiny", "--model_type": "full",
		"--output_dir": "pixart-api-demo", "data_backend_config": "pixart-api-demo/multidatabackend.json"}
	for k, v := range want {
		if cfg[k] != v {
			t.Errorf("config %s = %v, want %v", k, cfg[k], v)
		}
	}
	if _, ok := cfg["--data_backend_config"]; ok {
		t.Error("stored config has the dashed data_backend_config")
	}
	if _, ok := cfg["--lora_type"]; ok {
		t.Error("full model got a lora_type")
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if !strings.HasSuffix(string(raw), "}\n") || !strings.Contains(string(raw), "\n  \"--") {
		t.Errorf("config.json not 2-space indented with a trailing newline:\n%s", raw)
	}
	if c.Dataloader.Path != "pixart-api-demo/multidatabackend.json" || c.Environment.Path != dir || c.Message != "Environment 'pixart-api-demo' created" {
		t.Errorf("created = %+v", c)
	}
	if !slices.Contains(c.Validation.Warnings, "dataloader pixart-api-demo/multidatabackend.json: Dataset 'pixart-api-demo-images': instance_data_dir is empty; point it at the folder that holds the training files") {
		t.Errorf("warnings = %q", c.Validation.Warnings)
	}
	ents, _ := os.ReadDir(s.Dir())
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary folder %s left behind", e.Name())
		}
	}
}

func TestCreateEnvironmentErrors(t *testing.T) {
	s := newService(t)
	seedEnv(t, s)
	tests := []struct {
		name     string
		req      EnvironmentRequest
		sentinel error
		msg      string
	}{
		{"exists", EnvironmentRequest{Name: "pixart-api-demo", ModelFamily: sp("dit")}, ErrExists, "Environment 'pixart-api-demo' already exists"},
		{"no family", EnvironmentRequest{Name: "x"}, ErrInvalid, "model_family is required"},
		{"bad name", EnvironmentRequest{Name: "../x", ModelFamily: sp("dit")}, ErrInvalid, "Configuration name may only contain letters, numbers, '.', '_' or '-'"},
		{"reserved", EnvironmentRequest{Name: "webhooks", ModelFamily: sp("dit")}, ErrInvalid, "'webhooks' is reserved for the configs folder's own use; choose another name"},
		{"reference without path", EnvironmentRequest{Name: "x", ModelFamily: sp("dit"), CreateDataloader: new(bool)}, ErrInvalid, "dataloader_path is required when referencing an existing configuration"},
		{"dataloader outside", EnvironmentRequest{Name: "x", ModelFamily: sp("dit"), DataloaderPath: sp("../../etc/x.json")}, ErrInvalid, "Dataloader configs must live within the configs directory"},
		{"dataloader missing", EnvironmentRequest{Name: "x", ModelFamily: sp("dit"), DataloaderPath: sp("nope/m.json"), CreateDataloader: new(bool)}, ErrNotFound, "Dataloader configuration not found: nope/m.json"},
		{"unknown example", EnvironmentRequest{Name: "x", Example: sp("sdxl")}, ErrNotFound, "Example 'sdxl' not found. Available examples: dit-tiny, dit-tiny-lora"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.CreateEnvironment(tt.req, nil)
			if !errors.Is(err, tt.sentinel) || err.Error() != tt.msg {
				t.Fatalf("err = %v, want %q (%v)", err, tt.msg, tt.sentinel)
			}
		})
	}
	_, err := s.CreateEnvironment(EnvironmentRequest{Name: "x", ModelFamily: sp("pixart_sigma"), ModelFlavour: sp("900M")}, nil)
	var ve *ValidationError
	if !errors.As(err, &ve) || !slices.Equal(ve.Issues.Errors().Messages(), []string{"Unknown model family: pixart_sigma (known: dit)"}) {
		t.Fatalf("unknown family: %v", err)
	}
	if exists(filepath.Join(s.Dir(), "x")) {
		t.Error("a rejected environment left a folder")
	}
}

func TestCreateFromExampleAndReference(t *testing.T) {
	s := newService(t)
	c, err := s.CreateEnvironment(EnvironmentRequest{Name: "quick", Example: sp("dit-tiny")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Config["--max_train_steps"] != json.Number("200") || c.Config["--model_type"] != "full" || c.Config[dataBackendKey] != "quick/multidatabackend.json" {
		t.Errorf("example config = %v", c.Config)
	}
	dl, err := readJSON(filepath.Join(s.Dir(), "quick", "multidatabackend.json"))
	if err != nil || len(dl.([]any)) != 2 {
		t.Fatalf("example dataloader: %v %v", dl, err)
	}
	// A second environment sharing the first one's dataloader.
	c, err = s.CreateEnvironment(EnvironmentRequest{Name: "shared", ModelFamily: sp("dit"), ModelType: sp("lora"),
		DataloaderPath: sp("config/quick/multidatabackend.json"), CreateDataloader: new(bool)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Config[dataBackendKey] != "quick/multidatabackend.json" || c.Config["--lora_type"] != "standard" {
		t.Errorf("shared config = %v", c.Config)
	}
	if exists(filepath.Join(s.Dir(), "shared", "multidatabackend.json")) {
		t.Error("a referenced dataloader was written anew")
	}
}

func TestGetListActive(t *testing.T) {
	s := newService(t)
	seedEnv(t, s)
	l, err := s.Get(KindModel, "pixart-api-demo")
	if err != nil {
		t.Fatal(err)
	}
	cfg := l.Config.(map[string]any)
	if cfg["data_backend_config"] != "pixart-api-demo/multidatabackend.json" || cfg["--data_backend_config"] != "pixart-api-demo/multidatabackend.json" {
		t.Errorf("GET lacks both spellings: %v", cfg)
	}
	if l.Metadata.Description != "PixArt 900M API-driven training" || *l.Metadata.ModelFamily != "dit" {
		t.Errorf("metadata = %+v", l.Metadata)
	}
	if _, err := s.Get(KindModel, "nope"); !errors.Is(err, ErrNotFound) || err.Error() != "Configuration 'nope' not found" {
		t.Errorf("missing: %v", err)
	}
	lst, err := s.List(KindModel)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range lst.Configs {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"default", "pixart-api-demo"}) || lst.Active != nil || lst.Count != 2 {
		t.Errorf("list = %v active=%v", names, lst.Active)
	}
	if !lst.Configs[1].HasDataloader {
		t.Error("has_dataloader false")
	}
	dls, _ := s.List(KindDataloader)
	if dls.Count != 1 || dls.Configs[0].Name != "pixart-api-demo" {
		t.Errorf("dataloaders = %+v", dls.Configs)
	}
	a, _ := s.Active()
	if a.Name != "" || a.Metadata != nil {
		t.Errorf("active before activation = %+v", a)
	}
	if _, err := s.Activate("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("activate missing: %v", err)
	}
	if _, err := s.Activate("pixart-api-demo"); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Active(); a.Name != "pixart-api-demo" {
		t.Errorf("active = %+v", a)
	}
	if err := s.Delete(KindModel, "pixart-api-demo"); !errors.Is(err, ErrActive) {
		t.Errorf("delete active: %v", err)
	}
}

func putSeed(t *testing.T, s *Service, edit func(map[string]any)) (*Saved, error) {
	t.Helper()
	l, err := s.Get(KindModel, "pixart-api-demo")
	if err != nil {
		t.Fatal(err)
	}
	cfg := l.Config.(map[string]any)
	for k, v := range map[string]any{"--output_dir": "/workspace/output/pixart900m", "--train_batch_size": 2,
		"--gradient_accumulation_steps": 2, "--learning_rate": 0.0001, "--optimizer": "adamw_bf16", "--lr_scheduler": "cosine",
		"--lr_warmup_steps": 500, "--max_train_steps": 1800, "--num_train_epochs": 0,
		"--validation_prompt": "a studio portrait of <token> wearing a leather jacket", "--validation_guidance": 3.8,
		"--validation_resolution": "1024x1024", "--validation_num_inference_steps": 28, "--cache_dir_vae": "/data/cache/vae/pixart",
		"--seed": 1337, "--resume_from_checkpoint": "latest", "--base_model_precision": "bf16", "--dataloader_prefetch": true,
		"--report_to": "none", "--checkpoints_total_limit": 4, "--validation_seed": 12345, "--data_backend_config": "pixart-api-demo/multidatabackend.json"} {
		cfg[k] = v
	}
	if edit != nil {
		edit(cfg)
	}
	b, _ := json.Marshal(cfg)
	v, _ := decodeJSON(b)
	return s.Put(KindModel, "pixart-api-demo", PutRequest{Name: "pixart-api-demo", Description: sp("PixArt 900M full tune (API)"), Tags: []string{"pixart", "api"}, Config: v}, nil)
}

func TestPutSeed(t *testing.T) {
	s := newService(t)
	seedEnv(t, s)
	saved, err := putSeed(t, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if saved.Message != "Configuration 'pixart-api-demo' updated successfully" || saved.Metadata.Description != "PixArt 900M full tune (API)" || !slices.Equal(saved.Metadata.Tags, []string{"pixart", "api"}) {
		t.Errorf("saved = %+v", saved)
	}
	cfg := readFile(t, filepath.Join(s.Dir(), "pixart-api-demo", "config.json"))
	if cfg["--max_train_steps"] != json.Number("1800") || cfg["--validation_prompt"] != "a studio portrait of <token> wearing a leather jacket" {
		t.Errorf("stored = %v", cfg)
	}
	if _, ok := cfg["--data_backend_config"]; ok || cfg["data_backend_config"] != "pixart-api-demo/multidatabackend.json" {
		t.Errorf("data_backend_config stored as %v / %v", cfg["data_backend_config"], cfg["--data_backend_config"])
	}
	raw, _ := os.ReadFile(filepath.Join(s.Dir(), "pixart-api-demo", "config.json"))
	if !strings.Contains(string(raw), "<token>") {
		t.Error("HTML-escaped prompt in config.json")
	}
}

func TestPutEitherSpellingTakesEffect(t *testing.T) {
	s := newService(t)
	seedEnv(t, s)
	other := filepath.Join(s.Dir(), "other", "multidatabackend.json")
	if err := writeFileAtomic(other, []byte(`[{"id":"te","type":"local","dataset_type":"text_embeds","default":true}]`)); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"--data_backend_config", "data_backend_config"} {
		t.Run(key, func(t *testing.T) {
			target := "other/multidatabackend.json"
			if key == "data_backend_config" {
				target = "pixart-api-demo/multidatabackend.json"
			}
			_, err := putSeed(t, s, func(m map[string]any) {
				delete(m, "--data_backend_config") // the GET's own copy comes back unchanged
				l, _ := s.Get(KindModel, "pixart-api-demo")
				m["--data_backend_config"] = l.Config.(map[string]any)["--data_backend_config"]
				m["data_backend_config"] = l.Config.(map[string]any)["data_backend_config"]
				m[key] = target
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, filepath.Join(s.Dir(), "pixart-api-demo", "config.json"))["data_backend_config"]; got != target {
				t.Errorf("after editing %s: data_backend_config = %v, want %v", key, got, target)
			}
		})
	}
}

func TestPutValidationFailures(t *testing.T) {
	s := newService(t)
	seedEnv(t, s)
	before, _ := os.ReadFile(filepath.Join(s.Dir(), "pixart-api-demo", "config.json"))
	tests := []struct {
		name      string
		edit      func(map[string]any)
		errs      []string
		forbidden bool
	}{
		{"steps and epochs zero", func(m map[string]any) { m["--max_train_steps"] = 0 },
			[]string{"Either num_train_epochs or max_train_steps must be greater than 0. You cannot set both to 0."}, false},
		{"bad values", func(m map[string]any) { m["--learning_rate"] = "fast"; m["--optimizer"] = "sgd9" },
			[]string{`invalid value "fast" for --learning_rate: want a number`, `unsupported optimizer "sgd9"; supported: adamw, adamw_bf16, optimi-adamw, optimi-lion, optimi-sgd`}, false},
		{"missing dataloader", func(m map[string]any) { m["--data_backend_config"] = "nope/m.json" },
			nil, false},
		{"hook without permission", func(m map[string]any) { m["--post_checkpoint_script"] = "/bin/true {local_checkpoint_path}" },
			[]string{"setting --post_checkpoint_script needs the job.hooks permission; ask an admin, or leave it unset"}, true},
		{"typo", func(m map[string]any) { m["--learning_rat"] = 1 },
			[]string{"unknown option --learning_rat; did you mean --learning_rate?"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := putSeed(t, s, tt.edit)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a ValidationError", err)
			}
			got := ve.Issues.Errors().Messages()
			if tt.errs != nil && !slices.Equal(got, tt.errs) {
				t.Errorf("errors = %q\nwant %q", got, tt.errs)
			}
			if len(got) == 0 {
				t.Error("no messages")
			}
			if ve.Forbidden() != tt.forbidden {
				t.Errorf("Forbidden = %v", ve.Forbidden())
			}
		})
	}
	after, _ := os.ReadFile(filepath.Join(s.Dir(), "pixart-api-demo", "config.json"))
	if string(before) != string(after) {
		t.Error("a rejected PUT changed the file")
	}
	// With the permission the hook is accepted.
	if _, err := putSeed(t, s, func(m map[string]any) { m["--post_checkpoint_script"] = "/bin/true" }); err == nil {
		t.Fatal("hook accepted without permission")
	}
	l, _ := s.Get(KindModel, "pixart-api-demo")
	cfg := l.Config.(map[string]any)
	cfg["--post_checkpoint_script"] = "/bin/true"
	if _, err := s.Put(KindModel, "pixart-api-demo", PutRequest{Config: cfg}, []string{options.PermHooks}); err != nil {
		t.Fatalf("with job.hooks: %v", err)
	}
}

// TestConcurrentPuts: many writers at once; every read in between and the final file
// are one writer's complete config, never a mix.
func TestConcurrentPuts(t *testing.T) {
	s := newService(t)
	seedEnv(t, s)
	path := filepath.Join(s.Dir(), "pixart-api-demo", "config.json")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	readerErr := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				readerErr <- nil
				return
			default:
			}
			m, err := readObject(path)
			if err != nil {
				readerErr <- err
				return
			}
			seed, _ := m["--seed"].(json.Number)
			if prompt, _ := m["--validation_prompt"].(string); prompt != "" && prompt != "p"+seed.String() {
				readerErr <- fmt.Errorf("mixed file: seed %s with prompt %q", seed, prompt)
				return
			}
		}
	}()
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := putSeed(t, s, func(m map[string]any) {
				m["--seed"] = i
				m["--validation_prompt"] = fmt.Sprintf("p%d", i)
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-readerErr; err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temp file %s left", e.Name())
		}
	}
}

func TestCopyRenameExportImportDelete(t *testing.T) {
	s := newService(t)
	seedEnv(t, s)
	if _, err := s.Activate("pixart-api-demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Copy("pixart-api-demo", "pixart-copy"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(s.Dir(), "pixart-copy", "config.json"))[dataBackendKey]; got != "pixart-copy/multidatabackend.json" {
		t.Errorf("copy data_backend_config = %v", got)
	}
	if !exists(filepath.Join(s.Dir(), "pixart-copy", "multidatabackend.json")) {
		t.Error("copy lacks its dataloader")
	}
	if _, err := s.Copy("pixart-api-demo", "pixart-copy"); !errors.Is(err, ErrExists) {
		t.Errorf("copy onto existing: %v", err)
	}
	if _, err := s.Rename("pixart-api-demo", "renamed"); err != nil {
		t.Fatal(err)
	}
	if a, _, _ := s.ActiveName(); a != "renamed" {
		t.Errorf("active after rename = %q", a)
	}
	if got := readFile(t, filepath.Join(s.Dir(), "renamed", "config.json"))[dataBackendKey]; got != "renamed/multidatabackend.json" {
		t.Errorf("renamed data_backend_config = %v", got)
	}
	if m := readFile(t, filepath.Join(s.Dir(), "renamed", ".metadata.json")); m["name"] != "renamed" {
		t.Errorf("renamed metadata = %v", m)
	}
	exp, err := s.Export("renamed", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ImportRequest{Data: exp}, nil); !errors.Is(err, ErrExists) || err.Error() != "Configuration 'renamed' already exists" {
		t.Errorf("import onto existing: %v", err)
	}
	saved, err := s.Import(ImportRequest{Data: exp, Name: sp("imported")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if saved.Metadata.Description != "PixArt 900M API-driven training" {
		t.Errorf("imported metadata = %+v", saved.Metadata)
	}
	bare, _ := s.Export("imported", false)
	if _, ok := bare["_metadata"]; ok {
		t.Error("bare export has _metadata")
	}
	if err := s.Delete(KindModel, "imported"); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(s.Dir(), "imported")) {
		t.Error("deleted environment still on disk")
	}
	if err := s.Delete(KindModel, "imported"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
}

func TestValidateReport(t *testing.T) {
	s := newService(t)
	seedEnv(t, s)
	r, err := s.Validate("pixart-api-demo", nil)
	if err != nil {
		t.Fatal(err)
	}
	// At start an empty instance_data_dir is an error.
	want := "dataloader pixart-api-demo/multidatabackend.json: Dataset 'pixart-api-demo-images': instance_data_dir is empty; point it at the folder that holds the training files"
	if r.IsValid || !slices.Contains(r.Errors, want) {
		t.Errorf("report = %+v", r)
	}
}

func TestDataloaderKindAndCreateDataloader(t *testing.T) {
	s := newService(t)
	seedEnv(t, s)
	if _, err := s.CreateDataloader("pixart-api-demo", DataloaderRequest{}); !errors.Is(err, ErrExists) ||
		err.Error() != `Dataloader config already exists at 'pixart-api-demo/multidatabackend.json'; send "overwrite": true to replace it with a new one` {
		t.Errorf("existing: %v", err)
	}
	d, err := s.CreateDataloader("pixart-api-demo", DataloaderRequest{Path: sp("pixart-api-demo/second.json"), IncludeDefaults: new(bool)})
	if err != nil {
		t.Fatal(err)
	}
	if d.Dataloader.Path != "pixart-api-demo/second.json" {
		t.Errorf("dataloader = %+v", d)
	}
	if got := readFile(t, filepath.Join(s.Dir(), "pixart-api-demo", "config.json"))[dataBackendKey]; got != "pixart-api-demo/second.json" {
		t.Errorf("pointer = %v", got)
	}
	v, _ := decodeJSON([]byte(`[{"id":"a","type":"local","dataset_type":"image","instance_data_dir":"/nowhere"},{"id":"a","type":"local"}]`))
	_, err = s.Put(KindDataloader, "pixart-api-demo", PutRequest{Config: v}, nil)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Subject != "dataloader" || !slices.Contains(ve.Issues.Errors().Messages(), "You can only have one backend named a") {
		t.Fatalf("dataloader PUT: %v", err)
	}
}

func TestExamples(t *testing.T) {
	ex, err := Examples()
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) != 2 || ex[0].Name != "dit-tiny" || !ex[0].HasDataloader || ex[0].Description == "" {
		t.Fatalf("examples = %+v", ex)
	}
	// Every bundled example must validate against the default registry.
	s := newService(t)
	for _, e := range ex {
		if _, err := s.CreateEnvironment(EnvironmentRequest{Name: "from-" + e.Name, Example: sp(e.Name)}, nil); err != nil {
			t.Errorf("example %s: %v", e.Name, err)
		}
	}
}
