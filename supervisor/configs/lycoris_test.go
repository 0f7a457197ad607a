package configs

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"simpletuner/options"
)

// lycorisEnv creates the tutorial's LyCORIS environment with this trainer's family.
func lycorisEnv(t *testing.T, s *Service, name string) *Created {
	t.Helper()
	c, err := s.CreateEnvironment(EnvironmentRequest{Name: name, ModelFamily: sp("dit"), ModelFlavour: sp("tiny"),
		ModelType: sp("lora"), LoraType: sp("lycoris"), Description: sp("LyCORIS LoRA via API")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCreateLycorisEnvironmentWritesTheDefault(t *testing.T) {
	s := newService(t)
	c := lycorisEnv(t, s, "kontext-api-demo")
	if got := c.Config["--lycoris_config"]; got != "kontext-api-demo/lycoris_config.json" {
		t.Fatalf("--lycoris_config = %v", got)
	}
	written := readFile(t, filepath.Join(s.Dir(), "kontext-api-demo", "lycoris_config.json"))
	if jsonOf(t, written) != jsonOf(t, options.DefaultLycorisConfig()) {
		t.Fatalf("written %s", jsonOf(t, written))
	}
	got, err := s.GetLycoris("kontext-api-demo")
	if err != nil || got.EnvironmentID != "kontext-api-demo" || jsonOf(t, got.Config) != jsonOf(t, written) {
		t.Fatalf("GetLycoris = %+v, %v", got, err)
	}
	// The environment validates as a start would (only its empty dataloader is wrong).
	r, err := s.Validate("kontext-api-demo", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range r.Errors {
		if strings.Contains(e, "LyCORIS") || strings.Contains(e, "lycoris") {
			t.Errorf("validate: %s", e)
		}
	}
	// A standard LoRA environment gets no LyCORIS file.
	if _, err := s.CreateEnvironment(EnvironmentRequest{Name: "plain", ModelFamily: sp("dit"), ModelType: sp("lora")}, nil); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(s.Dir(), "plain", lycorisFile)) {
		t.Error("a standard LoRA environment got a LyCORIS config")
	}
	if _, err := s.GetLycoris("plain"); !errors.Is(err, ErrNotFound) || err.Error() != "No Lycoris configuration found for environment 'plain'" {
		t.Errorf("GetLycoris(plain) = %v", err)
	}
	if _, err := s.GetLycoris("nowhere"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetLycoris(nowhere) = %v", err)
	}
	// A copy or rename takes its LyCORIS config along.
	if _, err := s.Copy("kontext-api-demo", "kontext-copy"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(s.Dir(), "kontext-copy", "config.json"))["--lycoris_config"]; got != "kontext-copy/lycoris_config.json" {
		t.Errorf("copy's --lycoris_config = %v", got)
	}
	if _, err := s.Rename("kontext-copy", "kontext-two"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(s.Dir(), "kontext-two", "config.json"))["--lycoris_config"]; got != "kontext-two/lycoris_config.json" {
		t.Errorf("renamed --lycoris_config = %v", got)
	}
}

func TestPutLycoris(t *testing.T) {
	s := newService(t)
	lycorisEnv(t, s, "ly")
	var bad any
	json.Unmarshal([]byte(`{"algo":"loha","multiplier":0,"linear_dim":4,"linear_alpha":1}`), &bad)
	_, err := s.PutLycoris("ly", bad)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Subject != "lycoris" || !slices.Equal(ve.Issues.Errors().Messages(), []string{
		`algo 'loha' is not one this trainer applies: it trains LyCORIS LoKr only; set "algo": "lokr"`, "Field 'multiplier' must be greater than 0, got 0"}) {
		t.Fatalf("bad config: %v", err)
	}
	var good any
	json.Unmarshal([]byte(`{"algo":"lokr","multiplier":1,"linear_dim":8,"linear_alpha":4,"factor":4,"dropout":0.1}`), &good)
	saved, err := s.PutLycoris("ly", good)
	if err != nil {
		t.Fatal(err)
	}
	if saved.Path != "ly/lycoris_config.json" || saved.AbsolutePath != filepath.Join(s.Dir(), "ly", lycorisFile) || !saved.Success ||
		len(saved.Warnings) != 1 || saved.Message != "Lycoris configuration saved for environment 'ly'" {
		t.Fatalf("saved %+v", saved)
	}
	if got, _ := s.GetLycoris("ly"); jsonOf(t, got.Config) != jsonOf(t, good) {
		t.Fatalf("read back %s", jsonOf(t, got.Config))
	}
	// An environment that names no file, or an inline document, gets <env>/lycoris_config.json.
	for name, v := range map[string]any{"inline": `{"algo":"lokr"}`, "unset": nil} {
		cfg := map[string]any{"--model_family": "dit", "--model_type": "lora", "--lora_type": "standard", "--output_dir": name,
			dataBackendKey: "ly/multidatabackend.json"}
		if v != nil {
			cfg["lycoris_config"] = v
		}
		os.MkdirAll(filepath.Join(s.Dir(), name), 0o755)
		if err := writeJSONAtomic(filepath.Join(s.Dir(), name, "config.json"), cfg); err != nil {
			t.Fatal(err)
		}
		saved, err := s.PutLycoris(name, good)
		if err != nil || saved.Path != name+"/lycoris_config.json" {
			t.Fatalf("%s: %+v %v", name, saved, err)
		}
		after := readFile(t, filepath.Join(s.Dir(), name, "config.json"))
		if after["--lycoris_config"] != name+"/lycoris_config.json" || after["lycoris_config"] != nil {
			t.Fatalf("%s: config after %v", name, after)
		}
	}
	// A path outside the configs dir is refused, and nothing is written there.
	outside := filepath.Join(t.TempDir(), "ly.json")
	cfg := readFile(t, filepath.Join(s.Dir(), "ly", "config.json"))
	cfg["--lycoris_config"] = outside
	writeJSONAtomic(filepath.Join(s.Dir(), "ly", "config.json"), cfg)
	if _, err := s.PutLycoris("ly", good); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "within the configs directory") {
		t.Errorf("outside: %v", err)
	}
	if exists(outside) {
		t.Error("wrote outside the configs dir")
	}
	if _, err := s.PutLycoris("nowhere", good); !errors.Is(err, ErrNotFound) || err.Error() != "Environment 'nowhere' not found" {
		t.Errorf("missing environment: %v", err)
	}
	// PUT /api/configs/{name}?config_type=lycoris follows the same rules.
	lycorisEnv(t, s, "kind")
	if _, err := s.Put(KindLycoris, "kind", PutRequest{Config: bad}, nil); !errors.As(err, &ve) || ve.Subject != "lycoris" {
		t.Errorf("config_type=lycoris PUT of a bad config: %v", err)
	}
}

func TestEnvironmentValidationReadsItsLycorisConfig(t *testing.T) {
	s := newService(t)
	lycorisEnv(t, s, "ly")
	p := filepath.Join(s.Dir(), "ly", lycorisFile)
	os.WriteFile(p, []byte(`{"algo":"locon","multiplier":1,"linear_dim":4,"linear_alpha":1}`), 0o644)
	r, err := s.Validate("ly", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `LyCORIS config ly/lycoris_config.json: algo 'locon' is not one this trainer applies: it trains LyCORIS LoKr only; set "algo": "lokr"`
	if r.IsValid || !slices.Contains(r.Errors, want) {
		t.Fatalf("report %+v", r)
	}
	os.Remove(p)
	r, _ = s.Validate("ly", nil)
	if !slices.ContainsFunc(r.Errors, func(e string) bool { return strings.HasPrefix(e, "LyCORIS config not found at ") }) {
		t.Fatalf("missing file: %+v", r)
	}
}

func TestValidateLycorisReport(t *testing.T) {
	r := ValidateLycoris(options.DefaultLycorisConfig())
	if !r.Valid || len(r.Errors) != 0 || len(r.Warnings) != 0 {
		t.Fatalf("default: %+v", r)
	}
	r = ValidateLycoris(map[string]any{"multiplier": 1.0})
	if r.Valid || r.Errors[0] != "Missing required field: 'algo'" || r.Warnings == nil {
		t.Fatalf("no algo: %+v", r)
	}
}
