package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"simpletuner/supervisor/configs"
	"simpletuner/trainerproc/data"
)

// dataloaderSchemaCases are dataloader documents on which the daemon's check and the
// trainer's parser once answered differently, with the answer both must now give.
var dataloaderSchemaCases = []struct {
	name  string
	doc   string
	valid bool
}{
	{"tutorial fast path", `[{"id":"demo-images","type":"local","dataset_type":"image","instance_data_dir":"/data/demo","caption_strategy":"textfile","resolution":1024,"resolution_type":"pixel_area"},
		{"id":"demo-text-embeds","type":"local","dataset_type":"text_embeds","default":true,"cache_dir":"/data/cache/text"}]`, true},
	{"resolution as a numeric string", schemaDoc(`"resolution": "64"`), true},
	{"resolution as a word", schemaDoc(`"resolution": "big"`), false},
	{"repeats as a numeric string", schemaDoc(`"repeats": "2"`), true},
	{"fractional repeats", schemaDoc(`"repeats": 1.5`), false},
	{"resolution below 8 pixels", schemaDoc(`"resolution": 4`), false},
	{"resolution 0", schemaDoc(`"resolution": 0`), false},
	{"metadata_backend json", schemaDoc(`"metadata_backend": "json"`), true},
	{"default as a string", `[` + schemaImage("") + `, {"id": "te", "type": "local", "dataset_type": "text_embeds", "default": "true"}]`, true},
	{"crop as a word", schemaDoc(`"crop": "yes"`), false},
	{"type aws", schemaDoc(`"type": "aws"`), false},
	{"caption_strategy parquet", schemaDoc(`"caption_strategy": "parquet"`), false},
	{"crop_style face", schemaDoc(`"crop_style": "face"`), false},
	{"dataset_type video", schemaDoc(`"dataset_type": "video"`), false},
	{"memory images", schemaDoc(`"type": "memory"`), false},
	{"prepend_instance_prompt without a prompt", schemaDoc(`"prepend_instance_prompt": true`), false},
	{"bad crop_aspect_buckets", schemaDoc(`"crop_aspect_buckets": [0, 1]`), false},
	{"aspect ratios the wrong way round", schemaDoc(`"minimum_aspect_ratio": 2, "maximum_aspect_ratio": 1`), false},
	{"conditioning_data naming text embeds", schemaDoc(`"conditioning_data": ["te"]`), false},
	{"text_embeds naming nothing", schemaDoc(`"text_embeds": "nope"`), false},
	{"no image dataset", `[{"id": "te", "type": "local", "dataset_type": "text_embeds", "default": true}]`, false},
	{"a disabled dataset is not checked", `[{"id": "old", "type": "ftp", "resolution": -1, "disabled": true}, ` + schemaImage("") + `, ` + schemaTextEmbeds + `]`, true},
	{"a disabled default does not count", `[` + schemaImage("") + `, {"id": "te", "type": "local", "dataset_type": "text_embeds", "default": true, "disabled": true}]`, false},
	{"id not a string", `[` + schemaImage(`"id": 5`) + `, ` + schemaTextEmbeds + `]`, false},
	{"no instance_data_dir", `[{"id": "imgs", "type": "local"}, ` + schemaTextEmbeds + `]`, false},
	{"no type", `[{"id": "imgs", "instance_data_dir": "/data/imgs"}, ` + schemaTextEmbeds + `]`, false},
	{"duplicate id", `[` + schemaImage("") + `, ` + schemaImage("") + `, ` + schemaTextEmbeds + `]`, false},
	{"not a list", `{"id": "x"}`, false},
	{"not JSON", `[{`, false},
	{"trailing data", `[` + schemaTextEmbeds + `] []`, false},
}

const schemaTextEmbeds = `{"id": "te", "type": "local", "dataset_type": "text_embeds", "default": true}`

// schemaImage is an image dataset with extra members spliced in (later ones win).
func schemaImage(extra string) string {
	s := `{"id": "imgs", "type": "local", "instance_data_dir": "/data/imgs"`
	if extra != "" {
		s += ", " + extra
	}
	return s + "}"
}

func schemaDoc(extra string) string { return "[" + schemaImage(extra) + ", " + schemaTextEmbeds + "]" }

// TestDataloaderDaemonAndTrainerAgree runs each document through the daemon's start check
// and the trainer's parser: both accept it, or both refuse it with the same messages.
func TestDataloaderDaemonAndTrainerAgree(t *testing.T) {
	for _, tc := range dataloaderSchemaCases {
		t.Run(tc.name, func(t *testing.T) {
			daemon := configs.ValidateDataloader([]byte(tc.doc), configs.DataloaderCheck{AtStart: true}).Errors().Messages()
			var trainer []string
			if _, err := data.ParseConfig([]byte(tc.doc), data.Defaults{}); err != nil {
				trainer = strings.Split(err.Error(), "\n")
			}
			if (len(daemon) == 0) != (len(trainer) == 0) {
				t.Fatalf("daemon valid=%v %q, trainer valid=%v %q", len(daemon) == 0, daemon, len(trainer) == 0, trainer)
			}
			if !slices.Equal(daemon, trainer) {
				t.Errorf("messages differ:\ndaemon  %q\ntrainer %q", daemon, trainer)
			}
			if valid := len(daemon) == 0; valid != tc.valid {
				t.Errorf("valid = %v, want %v (%q)", valid, tc.valid, daemon)
			}
		})
	}
}

// TestDataloaderSchemaThroughTheAPI: what validate and start answer about a dataloader is
// what the trainer would: "resolution": "64" validates (the trainer reads it as 64), and
// a SimpleTuner value this trainer does not implement is refused before a job exists.
func TestDataloaderSchemaThroughTheAPI(t *testing.T) {
	home := t.TempDir()
	d := start(t, home, fakeTrainerArgs(3, 10)...)
	c := adminClient(t, d)
	fields := fastPathFields(t, home)
	dlPath := filepath.Join(home, "config", "multidatabackend-once.json")
	dl, err := os.ReadFile(dlPath)
	if err != nil {
		t.Fatal(err)
	}
	write := func(from, to string) {
		t.Helper()
		if !strings.Contains(string(dl), from) {
			t.Fatalf("fast-path dataloader has no %s", from)
		}
		if err := os.WriteFile(dlPath, []byte(strings.Replace(string(dl), from, to, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	validate := func() validationAnswer { t.Helper(); return validateForm(t, c, d.base, fields) }

	write(`"resolution":32`, `"resolution":"64"`)
	if v := validate(); !v.Valid {
		t.Errorf(`"resolution":"64" is refused: %+v`, v.Errors)
	}

	write(`"type":"local","dataset_type":"image"`, `"type":"aws","dataset_type":"image"`)
	const want = "Dataset 'demo-images': type 'aws' is not supported by this trainer (supported: local, memory)"
	if v := validate(); v.Valid || len(v.Errors) != 1 || v.Errors[0].Message != want || v.Errors[0].Option != "datasets[0].type" {
		t.Errorf("validate with type aws: valid=%v %+v, want the error %q", v.Valid, v.Errors, want)
	}
	if code, body := form(t, c, d.base+"/api/training/start", fields, "application/json"); code != 422 || !strings.Contains(body, want) {
		t.Errorf("start with type aws: %d %s", code, body)
	}
}

// validationAnswer is the part of POST /api/training/validate's answer read here.
type validationAnswer struct {
	Valid  bool `json:"valid"`
	Errors []struct {
		Option  string `json:"option"`
		Message string `json:"message"`
	} `json:"errors"`
}

// TestWebhookConfigSavedIsOneThatStarts: a webhook config is checked when it is saved by
// the reader the dispatcher sends with, so a URL with credentials before the host, which
// every start refused, cannot be saved either.
func TestWebhookConfigSavedIsOneThatStarts(t *testing.T) {
	home := t.TempDir()
	d := start(t, home)
	c := adminClient(t, d)
	hookFile := filepath.Join(home, "config", "webhooks", "team.json")
	if err := os.MkdirAll(filepath.Dir(hookFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hookFile, []byte(`[{"webhook_type":"raw","callback_url":"https://hooks.example.com/cb"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	put := func(url string) (int, string) {
		t.Helper()
		code, body, err := doJSON(c, "PUT", d.base+"/api/configs/team?config_type=webhook",
			map[string]any{"config": []any{map[string]any{"webhook_type": "raw", "callback_url": url}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return code, body
	}
	if code, body := put("https://hooks.example.com/other"); code != 200 {
		t.Fatalf("a plain webhook: %d %s", code, body)
	}
	code, body := put("https://user:secret@hooks.example.com/cb")
	if code != 422 || !strings.Contains(body, "webhook 1: callback_url: must not carry credentials before the host; use auth_token") {
		t.Errorf("a webhook with credentials in its URL: %d %s, want 422 and why", code, body)
	}
	if strings.Contains(body, "secret") {
		t.Errorf("the answer quotes the URL's credentials: %s", body)
	}
}
