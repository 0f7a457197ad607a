package options

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCheckLycoris(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		errs      []string // substrings, one per error, in order
		warns     []string
	}{
		{name: "SimpleTuner's LoKr default", doc: `{"algo":"lokr","multiplier":1.0,"linear_dim":10000,"linear_alpha":1,"factor":16,
			"apply_preset":{"target_module":["Attention","FeedForward"],"module_algo_map":{"Attention":{"factor":16},"FeedForward":{"factor":8}}}}`},
		{name: "full matrix needs no linear_dim", doc: `{"algo":"lokr","multiplier":1,"full_matrix":true,"linear_alpha":1,"factor":16}`},
		{name: "balanced factor", doc: `{"algo":"LoKr","multiplier":0.5,"linear_dim":4,"linear_alpha":2,"factor":-1}`},
		{name: "not an object", doc: `["lokr"]`, errs: []string{"must be a JSON object"}},
		{name: "no algo", doc: `{"multiplier":1,"linear_dim":4,"linear_alpha":1}`, errs: []string{"Missing required field: 'algo'"}},
		{name: "algo not a string", doc: `{"algo":3,"multiplier":1,"linear_dim":4,"linear_alpha":1}`, errs: []string{"Field 'algo' must be a string"}},
		{name: "unknown algo", doc: `{"algo":"lokrr","multiplier":1,"linear_dim":4,"linear_alpha":1}`, errs: []string{"Unknown algo 'lokrr'. Known algorithms: boft,"}},
		{name: "known algo the trainer does not apply", doc: `{"algo":"loha","multiplier":1,"linear_dim":4,"linear_alpha":1}`,
			errs: []string{`algo 'loha' is not one this trainer applies: it trains LyCORIS LoKr only; set "algo": "lokr"`}},
		{name: "SimpleTuner's mandatory fields", doc: `{"algo":"lokr"}`,
			errs: []string{"Missing required field: 'multiplier'", "Missing required field: 'linear_dim' (needed unless \"full_matrix\": true)", "Missing required field: 'linear_alpha'"}},
		{name: "ranges", doc: `{"algo":"lokr","multiplier":0,"linear_dim":0,"linear_alpha":-1,"factor":0}`,
			errs: []string{"Field 'multiplier' must be greater than 0, got 0", "Field 'linear_dim' must be positive, got 0", "Field 'linear_alpha' must be greater than 0, got -1",
				"Field 'factor' must be a positive integer or -1 (the most balanced split), got 0"}},
		{name: "types", doc: `{"algo":"lokr","multiplier":"1","linear_dim":4.5,"linear_alpha":true,"factor":"16","full_matrix":"yes"}`,
			errs: []string{"Field 'full_matrix' must be true or false", "Field 'multiplier' must be a number", "Field 'linear_dim' must be an integer, got 4.5",
				"Field 'linear_alpha' must be a number", "Field 'factor' must be an integer"}},
		{name: "preset shapes", doc: `{"algo":"lokr","multiplier":1,"linear_dim":4,"linear_alpha":1,"apply_preset":{"target_module":"Attention","module_algo_map":{"Attention":16}}}`,
			errs: []string{"Override 'Attention' within 'apply_preset.module_algo_map' must be a dictionary", "Field 'apply_preset.target_module' must be a list"}},
		{name: "preset not an object", doc: `{"algo":"lokr","multiplier":1,"linear_dim":4,"linear_alpha":1,"apply_preset":[]}`, errs: []string{"Field 'apply_preset' must be a dictionary"}},
		{name: "override factor", doc: `{"algo":"lokr","multiplier":1,"linear_dim":4,"linear_alpha":1,"apply_preset":{"module_algo_map":{"FeedForward":{"factor":2.5}}}}`,
			errs: []string{"apply_preset.module_algo_map.FeedForward: Field 'factor' must be an integer, got 2.5"}},
		{name: "targets the model does not have", doc: `{"algo":"lokr","multiplier":1,"linear_dim":4,"linear_alpha":1,"apply_preset":{"target_module":["Flux2Attention"]}}`,
			errs:  []string{"apply_preset.target_module names no module this trainer adapts; list Attention and/or FeedForward"},
			warns: []string{"'Flux2Attention' is not a module class of this trainer's model (it has Attention and FeedForward) and is ignored"}},
		{name: "settings the trainer ignores", doc: `{"algo":"lokr","multiplier":1,"linear_dim":4,"linear_alpha":1,"bypass_mode":true,
			"apply_preset":{"target_module":["Attention","Conv2d"],"name_algo_map":{},"module_algo_map":{"Attention":{"factor":4,"algo":"lokr"}}}}`,
			warns: []string{"apply_preset.module_algo_map.Attention: 'algo' is not applied", "apply_preset.name_algo_map is not applied", "'Conv2d' is not a module class",
				"LyCORIS setting 'bypass_mode' is not applied"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var doc any
			if err := json.Unmarshal([]byte(tc.doc), &doc); err != nil {
				t.Fatal(err)
			}
			is := CheckLycoris(doc)
			match(t, "error", is.Errors(), tc.errs)
			match(t, "warning", is.Warnings(), tc.warns)
			for _, i := range is {
				if i.Option != "--lycoris_config" {
					t.Errorf("issue about %q, want --lycoris_config: %s", i.Option, i.Message)
				}
				if i.Severity == SevError && !errors.Is(i, ErrInvalidValue) {
					t.Errorf("error does not wrap ErrInvalidValue: %s", i.Message)
				}
			}
		})
	}
}

func match(t *testing.T, what string, got Issues, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d %ss, want %d:\n%s", len(got), what, len(want), strings.Join(got.Messages(), "\n"))
	}
	for i, w := range want {
		if !strings.Contains(got[i].Message, w) {
			t.Errorf("%s %d = %q, want it to contain %q", what, i, got[i].Message, w)
		}
	}
}

func TestDefaultLycorisConfigIsSimpleTunersLoKrAndPasses(t *testing.T) {
	d := DefaultLycorisConfig()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	c, is := ParseLycoris(b)
	if len(is) != 0 {
		t.Fatalf("the default has issues: %v", is.Messages())
	}
	if c.Algo != "lokr" || c.Multiplier != 1 || c.LinearDim != 10000 || c.LinearAlpha != 1 || c.Factor != 16 ||
		c.ApplyPreset.ModuleAlgoMap["Attention"].Factor != 16 || c.ApplyPreset.ModuleAlgoMap["FeedForward"].Factor != 8 ||
		strings.Join(c.ApplyPreset.TargetModule, ",") != "Attention,FeedForward" {
		t.Fatalf("default parsed as %+v", c)
	}
	// Each call is a fresh document: a caller that edits one does not change the next.
	d["algo"] = "loha"
	if DefaultLycorisConfig()["algo"] != "lokr" {
		t.Fatal("DefaultLycorisConfig shares its map")
	}
}

func TestParseLycoris(t *testing.T) {
	c, is := ParseLycoris([]byte(`{"algo":" LoKr ","multiplier":1.0,"full_matrix":true,"linear_alpha":1}`))
	if is.HasErrors() || c.Algo != "lokr" || c.Factor != -1 || !c.FullMatrix {
		t.Fatalf("%+v %v", c, is.Messages())
	}
	for _, bad := range []string{`{"algo":"lokr"`, `{"algo":"lokr"} {}`, `{"algo":"locon","multiplier":1,"linear_dim":4,"linear_alpha":1}`} {
		if _, is := ParseLycoris([]byte(bad)); !is.HasErrors() {
			t.Errorf("%s: no error", bad)
		}
	}
}
