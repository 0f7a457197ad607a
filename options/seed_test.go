package options

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// seedRegistry is what a daemon would build when it accepts SimpleTuner's families on
// top of its trainer's: the seed's examples train pixart_sigma and flux.
func seedRegistry(t *testing.T) *Registry {
	t.Helper()
	r, err := New(Capabilities{Families: append(DefaultFamilies(), SimpleTunerFamilies()...)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// seedDirs lays the fixtures out as the tutorial's server sees them: config/<env>/… and
// config/multidatabackend-once.json; it returns the configs dir and the output root.
func seedDirs(t *testing.T) (configs, output string) {
	t.Helper()
	root := t.TempDir()
	configs, output = filepath.Join(root, "config"), filepath.Join(root, "output")
	copyFile(t, "pixart-sigma.multidatabackend.json", filepath.Join(configs, "pixart-api-demo", "multidatabackend.json"))
	copyFile(t, "flux-kontext.multidatabackend.json", filepath.Join(configs, "kontext-api-demo", "multidatabackend.json"))
	copyFile(t, "multidatabackend-once.json", filepath.Join(configs, "multidatabackend-once.json"))
	// Creating the LyCORIS environment writes its default LyCORIS config.
	ly, err := json.Marshal(DefaultLycorisConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(configs, "kontext-api-demo", "lycoris_config.json"), ly, 0o644); err != nil {
		t.Fatal(err)
	}
	return configs, output
}

func copyFile(t *testing.T, fixture, dst string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func checkFile(p string) error {
	st, err := os.Stat(p)
	if err == nil && !st.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	return err
}

// readForm reads the named sections of testdata/fast-path.form into form fields.
func readForm(t *testing.T, sections ...string) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "fast-path.form"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	form := map[string][]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			in = slices.Contains(sections, strings.Trim(line, "[]"))
		case in:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("bad form line %q", line)
			}
			form[k] = append(form[k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return form
}

// TestSeedExamples runs the seed's environment examples end to end: the PUT config is
// parsed as the active environment, the validate/start form (--num_train_epochs=0) is
// merged over it, paths are resolved, and validation must find no errors.
func TestSeedExamples(t *testing.T) {
	r := seedRegistry(t)
	tests := []struct {
		fixture      string
		wantWarnings []string
		wantArgs     []string // a few argv entries the trainer must get
		wantNoArgs   []string // options that must not reach the trainer
		wantData     string   // resolved --data_backend_config, relative to the configs dir
	}{
		{
			fixture:    "pixart-sigma.config.json",
			wantArgs:   []string{"--model_family=pixart_sigma", "--base_model_precision=bf16", "--learning_rate=0.0001", "--validation_resolution=1024x1024", "--report_to=none"},
			wantNoArgs: []string{"--lora_rank", "--lora_type", "--clip_skip"},
			wantData:   "pixart-api-demo/multidatabackend.json",
		},
		{
			fixture:      "flux-kontext.config.json",
			wantWarnings: []string{`tracker "wandb" is not available in this trainer; metrics stay in the event stream`},
			wantArgs:     []string{"--model_family=flux", "--model_flavour=kontext", "--lora_type=lycoris", "--clip_skip=2", "--optimizer=optimi-lion", "--learning_rate=1e-05", "--conditioning_multidataset_sampling=combined"},
			wantData:     "kontext-api-demo/multidatabackend.json",
		},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			configs, output := seedDirs(t)
			data, err := os.ReadFile(filepath.Join("testdata", tt.fixture))
			if err != nil {
				t.Fatal(err)
			}
			env, issues := r.ParseJSON(data)
			if len(issues) > 0 {
				t.Fatalf("parsing the environment config: %v", issues.Messages())
			}
			for _, strict := range []bool{true, false} { // validate, then start
				form := map[string][]string{"__active_tab__": {"model"}, "--num_train_epochs": {"0"}}
				sub, issues := r.ParseForm(form)
				if len(issues) > 0 {
					t.Fatalf("parsing the form: %v", issues.Messages())
				}
				cfg, issues := r.Merge(env.Values, sub.Values)
				if len(issues) > 0 {
					t.Fatalf("merge: %v", issues.Messages())
				}
				if issues := cfg.ResolvePaths(configs, output); len(issues) > 0 {
					t.Fatalf("resolve paths: %v", issues.Messages())
				}
				issues = r.Validate(cfg, ValidateOptions{StrictEpochs: strict, CheckFile: checkFile})
				if errs := issues.Errors(); len(errs) > 0 {
					t.Fatalf("validation errors (strict=%v): %v", strict, errs.Messages())
				}
				if got := issues.Warnings().Messages(); !slices.Equal(got, tt.wantWarnings) {
					t.Errorf("warnings = %q, want %q", got, tt.wantWarnings)
				}
				if got, want := cfg.String("--data_backend_config"), filepath.Join(configs, tt.wantData); got != want {
					t.Errorf("data_backend_config = %q, want %q", got, want)
				}
				args := cfg.Args()
				for _, a := range tt.wantArgs {
					if !slices.Contains(args, a) {
						t.Errorf("argv lacks %s: %q", a, args)
					}
				}
				for _, name := range tt.wantNoArgs {
					for _, a := range args {
						if strings.HasPrefix(a, name+"=") {
							t.Errorf("argv has %s, which does not apply", a)
						}
					}
				}
			}
		})
	}
}

// TestSeedFastPath submits the fast path's forms with no environment at all.
func TestSeedFastPath(t *testing.T) {
	r := seedRegistry(t)
	const noUpload = "--post_upload_script runs after an upload, and nothing is uploaded without --push_to_hub or --publishing_config: it will not run (use --post_checkpoint_script to act on each local checkpoint)"
	tests := []struct {
		name     string
		sections []string
		perms    []string
		strict   bool
		wantErrs []string
		// wantWarns: the seed's post_upload_script has no upload to follow (no
		// --push_to_hub), which validate says.
		wantWarns []string
		check     func(t *testing.T, cfg *Config)
	}{
		{name: "validate", sections: []string{"validate"}, strict: true},
		{name: "start", sections: []string{"validate", "start"}, check: func(t *testing.T, cfg *Config) {
			if got := cfg.String("--validation_prompt"); got != "test shot of <token>" {
				t.Errorf("validation_prompt = %q", got)
			}
		}},
		{name: "webhook", sections: []string{"validate", "webhook"}, check: func(t *testing.T, cfg *Config) {
			if n, _ := cfg.Int("--webhook_reporting_interval"); n != 10 {
				t.Errorf("webhook_reporting_interval = %d, want 10", n)
			}
			for _, a := range cfg.Args() {
				if strings.HasPrefix(a, "--webhook") {
					t.Errorf("server-only %s reached the trainer argv", a)
				}
			}
		}},
		{name: "preview", sections: []string{"validate", "preview"}, check: func(t *testing.T, cfg *Config) {
			if !cfg.Bool("--validation_preview") {
				t.Error("validation_preview not set")
			}
		}},
		{name: "external validation with permission", sections: []string{"validate", "external-validation"}, perms: []string{PermHooks}},
		{name: "hooks with permission", sections: []string{"validate", "hooks"}, perms: []string{PermHooks}, wantWarns: []string{noUpload}},
		{name: "hooks without permission", sections: []string{"validate", "hooks", "external-validation"}, wantErrs: []string{
			"setting --post_checkpoint_script needs the job.hooks permission; ask an admin, or leave it unset",
			"setting --post_upload_script needs the job.hooks permission; ask an admin, or leave it unset",
			"setting --validation_external_script needs the job.hooks permission; ask an admin, or leave it unset",
		}, wantWarns: []string{noUpload}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			configs, output := seedDirs(t)
			sub, issues := r.ParseForm(readForm(t, tt.sections...))
			if len(issues) > 0 {
				t.Fatalf("parse: %v", issues.Messages())
			}
			if sub.Control["__active_tab__"] == "" {
				t.Error("__active_tab__ not kept as a control key")
			}
			cfg, issues := r.Merge(nil, sub.Values)
			if len(issues) > 0 {
				t.Fatalf("merge: %v", issues.Messages())
			}
			if issues := cfg.ResolvePaths(configs, output); len(issues) > 0 {
				t.Fatalf("resolve: %v", issues.Messages())
			}
			if got, want := cfg.String("--data_backend_config"), filepath.Join(configs, "multidatabackend-once.json"); got != want {
				t.Errorf("data_backend_config = %q, want %q", got, want)
			}
			issues = r.Validate(cfg, ValidateOptions{StrictEpochs: tt.strict, Permissions: tt.perms, CheckFile: checkFile})
			if got := issues.Errors().Messages(); !slices.Equal(got, tt.wantErrs) {
				t.Errorf("errors = %q, want %q", got, tt.wantErrs)
			}
			if got := issues.Warnings().Messages(); !slices.Equal(got, tt.wantWarns) {
				t.Errorf("warnings = %q, want %q", got, tt.wantWarns)
			}
			if tt.check != nil {
				tt.check(t, cfg)
			}
		})
	}
}

// TestSeedNeedsFamilies: with only the built-in families, the seed's pixart_sigma is an
// error naming the families the trainer does know.
func TestSeedNeedsFamilies(t *testing.T) {
	sub, issues := Default().ParseForm(readForm(t, "validate"))
	if len(issues) > 0 {
		t.Fatal(issues.Messages())
	}
	cfg, _ := Default().Merge(nil, sub.Values)
	got := Default().Validate(cfg, ValidateOptions{}).Errors().Messages()
	want := []string{"Unknown model family: pixart_sigma (known: dit)"}
	if !slices.Equal(got, want) {
		t.Errorf("errors = %q, want %q", got, want)
	}
}
