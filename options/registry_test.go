package options

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// required lists options the tutorial and its examples use (docs/compatibility.md §12);
// the registry must keep all of them.
var required = []string{
	"--user_prompt_library", "--tracker_run_name", "--tracker_project_name", "--lora_alpha", "--lora_rank",
	"--lora_dropout", "--lora_type", "--lycoris_config", "--max_grad_norm", "--mixed_precision", "--num_processes",
	"--accelerate_visible_devices", "--validation_step_interval", "--validation_preview", "--validation_preview_steps",
	"--validation_resolution", "--validation_seed", "--validation_guidance", "--validation_num_inference_steps",
	"--validation_negative_prompt", "--validation_prompt", "--validation_method", "--validation_external_script",
	"--validation_external_background", "--webhook_config", "--webhook_reporting_interval", "--checkpoint_step_interval",
	"--checkpoint_epoch_interval", "--checkpoints_total_limit", "--resume_from_checkpoint", "--train_batch_size",
	"--gradient_accumulation_steps", "--max_train_steps", "--num_train_epochs", "--learning_rate", "--lr_scheduler",
	"--lr_warmup_steps", "--seed", "--optimizer", "--model_type", "--model_family", "--model_flavour",
	"--pretrained_model_name_or_path", "--output_dir", "--data_backend_config", "--base_model_precision", "--clip_skip",
	"--report_to", "--caption_dropout_probability", "--resolution", "--resolution_type", "--post_checkpoint_script",
	"--post_upload_script", "--push_to_hub", "--cache_dir_vae", "--dataloader_prefetch",
	"--conditioning_multidataset_sampling", "--checkpointing_rolling_steps", "--checkpoints_rolling_total_limit",
	"--checkpointing_use_tempdir", "--gradient_checkpointing", "--use_ema", "--hub_model_id",
}

var snake = regexp.MustCompile(`^--[a-z][a-z0-9_]*$`)

func TestRegistryTable(t *testing.T) {
	r := Default()
	for _, name := range required {
		if _, ok := r.Lookup(name); !ok {
			t.Errorf("%s is not registered", name)
		}
	}
	opts := r.Options()
	if len(opts) != r.Len() || !slices.IsSortedFunc(opts, func(a, b Option) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("Options() is not the sorted full list")
	}
	for _, o := range opts {
		if !snake.MatchString(o.Name) {
			t.Errorf("%s: canonical names are --snake_case", o.Name)
		}
		if len(o.Help) < 10 || !strings.HasSuffix(o.Help, ".") {
			t.Errorf("%s: help %q should be a sentence", o.Name, o.Help)
		}
		if o.Category < 0 || o.Category >= numCategories {
			t.Errorf("%s: bad category %d", o.Name, o.Category)
		}
		if o.Type == Enum && len(o.Values) == 0 {
			t.Errorf("%s: an enum without values", o.Name)
		}
		if o.Type != Enum && o.Type != List && len(o.Values) > 0 {
			t.Errorf("%s: values on a %s option", o.Name, o.Type)
		}
		if o.Required && o.RequiredMessage == "" {
			t.Errorf("%s: required without a message", o.Name)
		}
		for _, a := range o.Aliases {
			if got, _ := r.Canonical(a); got != o.Name {
				t.Errorf("alias %s → %s, want %s", a, got, o.Name)
			}
		}
	}
	for _, name := range []string{"--post_checkpoint_script", "--post_upload_script", "--validation_external_script"} {
		if o, _ := r.Lookup(name); o.Permission != PermHooks {
			t.Errorf("%s needs %s", name, PermHooks)
		}
	}
	if o, _ := r.Lookup("--webhook_reporting_interval"); !o.ServerOnly {
		t.Error("--webhook_reporting_interval must be server-only")
	}
}

func TestLookupSpellings(t *testing.T) {
	r := Default()
	tests := []struct{ in, want string }{
		{"--learning_rate", "--learning_rate"},
		{"learning_rate", "--learning_rate"},
		{" --learning_rate ", "--learning_rate"},
		{"--checkpointing_steps", "--checkpoint_step_interval"},
		{"checkpointing_steps", "--checkpoint_step_interval"},
		{"--validation_steps", "--validation_step_interval"},
		{"validation_steps", "--validation_step_interval"},
		{"project_name", "--tracker_project_name"},
		{"maximum_caption_length", "--tokenizer_max_length"},
		{"data_backend_config", "--data_backend_config"},
	}
	for _, tt := range tests {
		got, err := r.Canonical(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	r := Default()
	tests := []struct{ in, want string }{
		{"--learning_rat", "--learning_rate"},
		{"learningrate", "--learning_rate"},
		{"--lerning_rate", "--learning_rate"},
		{"--checkpointing_step", "--checkpoint_step_interval"}, // via the alias
		{"--validaton_prompt", "--validation_prompt"},
		{"--Seed", "--seed"},
		{"--foo", ""},
		{"--completely_unrelated_option_name", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := r.Suggest(tt.in); got != tt.want {
			t.Errorf("Suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	_, err := r.Canonical("--learning_rat")
	if !errors.Is(err, ErrUnknownOption) || err.Error() != "unknown option --learning_rat; did you mean --learning_rate?" {
		t.Errorf("Canonical error = %v", err)
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"kitten", "sitting", 3}, {"learning_rat", "learning_rate", 1}, {"same", "same", 0}}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name string
		caps Capabilities
		err  bool
	}{
		{"defaults", Capabilities{}, false},
		{"trainer families", Capabilities{Families: []Family{{Name: "dit", Flavours: []string{"tiny"}}, {Name: "pixart_sigma"}}}, false},
		{"with SimpleTuner families", Capabilities{Families: append(DefaultFamilies(), SimpleTunerFamilies()...), Trackers: []string{"tensorboard"}}, false},
		{"duplicate family", Capabilities{Families: []Family{{Name: "dit"}, {Name: "dit"}}}, true},
		{"bad family name", Capabilities{Families: []Family{{Name: "dit tiny"}}}, true},
		{"empty family name", Capabilities{Families: []Family{{Name: ""}}}, true},
		{"bad default flavour", Capabilities{Families: []Family{{Name: "dit", Flavours: []string{"tiny"}, DefaultFlavour: "huge"}}}, true},
		{"unknown tracker", Capabilities{Trackers: []string{"mlflow"}}, true},
	}
	for _, tt := range tests {
		r, err := New(tt.caps)
		if tt.err {
			if !errors.Is(err, ErrInvalidRegistry) {
				t.Errorf("%s: error = %v, want ErrInvalidRegistry", tt.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		o, _ := r.Lookup("--model_family")
		if !slices.IsSorted(o.Values) || len(o.Values) != len(r.Families()) {
			t.Errorf("%s: model_family values %q", tt.name, o.Values)
		}
	}
}

func TestRegistryIsReadOnly(t *testing.T) {
	r := Default()
	o, _ := r.Lookup("--optimizer")
	o.Values[0] = "mutated"
	o.ValueAliases = nil
	opts := r.Options()
	opts[0].Name = "--mutated"
	fams := r.Families()
	fams[0].Flavours[0] = "mutated"
	again, _ := r.Lookup("--optimizer")
	if again.Values[0] == "mutated" || r.Options()[0].Name == "--mutated" || r.Families()[0].Flavours[0] == "mutated" {
		t.Error("callers can mutate the registry")
	}
	if Default() != r {
		t.Error("Default() is rebuilt on every call")
	}
	d := r.Defaults()
	l := d.List("--report_to")
	l[0] = "mutated"
	if def, _ := r.Lookup("--report_to"); def.Default.([]string)[0] != "none" {
		t.Error("Config shares the default list with the registry")
	}
}

func TestEnumStrings(t *testing.T) {
	if Int.String() != "int" || List.SchemaType() != "array" || Float.SchemaType() != "number" || Enum.SchemaType() != "string" {
		t.Error("type names")
	}
	if CatHooks.String() != "Hook scripts" || FromServer.String() != "server" || SevSuggestion.String() != "suggestion" {
		t.Error("enum names")
	}
	if Type(99).String() != "Type(99)" || Category(99).String() != "Category(99)" {
		t.Error("out-of-range names")
	}
}

func TestFamilyLookup(t *testing.T) {
	r, err := New(Capabilities{Families: append(DefaultFamilies(), SimpleTunerFamilies()...)})
	if err != nil {
		t.Fatal(err)
	}
	f, ok := r.Family("flux")
	if !ok || f.DefaultFlavour != "krea" || !slices.Contains(f.Flavours, "kontext") || f.MinResolution != 256 {
		t.Errorf("flux = %+v, %v", f, ok)
	}
	f.Flavours[0] = "mutated"
	if again, _ := r.Family("flux"); again.Flavours[0] == "mutated" {
		t.Error("Family returns shared flavours")
	}
	if _, ok := r.Family("nope"); ok {
		t.Error("unknown family found")
	}
	if d, _ := Default().Family("dit"); d.MinResolution != 0 || !slices.Equal(d.Flavours, []string{"tiny", "small", "base", "xl"}) {
		t.Errorf("dit = %+v", d)
	}
}

// TestDefaultResolution: a family with its own default resolution gets it; the others
// (SimpleTuner's latent families) and unknown names get the option's default, 1024.
func TestDefaultResolution(t *testing.T) {
	r, err := New(Capabilities{Families: append(DefaultFamilies(), SimpleTunerFamilies()...)})
	if err != nil {
		t.Fatal(err)
	}
	for fam, want := range map[string]float64{"dit": 16, "pixart_sigma": 1024, "flux": 1024, "nope": 1024} {
		if got := r.DefaultResolution(fam); got != want {
			t.Errorf("DefaultResolution(%q) = %g, want %g", fam, got, want)
		}
	}
}

func TestIssuesHelpers(t *testing.T) {
	is := Issues{
		errIssue("--a", ErrInvalidValue, "bad a"),
		warnIssue("--b", "warn b"),
		{Option: "--c", Severity: SevSuggestion, Message: "try c"},
	}
	if !is.HasErrors() || len(is.Errors()) != 1 || len(is.Warnings()) != 1 || len(is.Suggestions()) != 1 {
		t.Errorf("filters: %v", is)
	}
	if Issues(nil).HasErrors() || Issues(nil).Err() != nil || is[1:].Err() != nil {
		t.Error("no errors should mean a nil Err")
	}
	if !errors.Is(is.Err(), ErrInvalidValue) || is.Err().Error() != "bad a" {
		t.Errorf("Err() = %v", is.Err())
	}
}
