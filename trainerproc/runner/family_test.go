package runner

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"simpletuner/plugins"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/family"
	"simpletuner/trainerproc/family/dit"
)

// latentToy is a second family for the seam's tests: dit's model under another name,
// with the flavours "a" and "b" (dit's tiny and small), asking the data pipeline for VAE
// latents, which it does not prepare yet.
type latentToy struct{}

func (latentToy) Describe() plugins.Family {
	return plugins.Family{Name: "latent_toy", Flavours: []string{"a", "b"}, DefaultFlavour: "a", MinResolution: 8, DefaultResolution: 32}
}

func (latentToy) Overrides() []string { return nil }

func (latentToy) Plan(s family.Spec) (family.Plan, error) {
	s.Flavour = map[string]string{"": "tiny", "a": "tiny", "b": "small"}[s.Flavour]
	p, err := dit.Family{}.Plan(s)
	return latentPlan{p}, err
}

type latentPlan struct{ family.Plan }

func (latentPlan) Caches() family.Caches { return family.Caches{Latents: true, TextEmbeds: true} }

// TestInfoAndValidationFollowTheRegistry: the families a runner reports, parses and
// refuses are its registry's, not a fixed list; a family whose caches the data pipeline
// cannot prepare is refused at start with what it lacks.
func TestInfoAndValidationFollowTheRegistry(t *testing.T) {
	reg, err := family.NewRegistry(dit.Family{}, latentToy{})
	if err != nil {
		t.Fatal(err)
	}
	r := New(Options{Threads: 2, BLAS: blas.ChoiceAuto, Families: reg})
	info, err := r.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range info.Families {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, []string{"dit", "latent_toy"}) || info.Families[1].DefaultResolution != 32 || info.Families[0].DefaultResolution != 16 {
		t.Fatalf("Info families %+v", info.Families)
	}

	dataDir := filepath.Join(t.TempDir(), "data")
	makeDataset(t, dataDir, 2, 16)
	cfg := baseConfig(filepath.Join(t.TempDir(), "out"), dataDir)
	cfg["--model_family"], cfg["--model_flavour"] = "latent_toy", "b"
	raw, _ := json.Marshal(cfg)
	s, _, err := r.ParseSettings(raw)
	if err != nil || s.ModelFamily != "latent_toy" {
		t.Fatalf("ParseSettings(latent_toy): %v", err)
	}
	for _, tc := range []struct{ family, flavour, want string }{
		{"pixart_sigma", "", "Unknown model family: pixart_sigma (known: dit, latent_toy)"},
		{"latent_toy", "tiny", "--model_flavour"},
	} {
		bad := clone(cfg)
		bad["--model_family"], bad["--model_flavour"] = tc.family, tc.flavour
		raw, _ := json.Marshal(bad)
		is, err := r.Validate(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		if errs := errorsOf(is); len(errs) == 0 || !strings.Contains(errs[0].Option+": "+errs[0].Message, tc.want) {
			t.Fatalf("%s/%s: issues %+v, want %q", tc.family, tc.flavour, is, tc.want)
		}
	}
	// The bundled registry knows dit only.
	if _, _, err := ParseSettings(raw); err == nil || !strings.Contains(err.Error(), "known: dit)") {
		t.Fatalf("default runner parsed latent_toy: %v", err)
	}

	evs, st := startJob(t, r, cfg).wait(t, nil)
	if st.State != plugins.StateFailed || !strings.Contains(st.Error, "dit/small needs latents and text embeddings, which this trainer's data pipeline does not prepare") {
		t.Fatalf("latent_toy run ended %q: %s\n%s", st.State, st.Error, tail(evs, 4))
	}
}
