package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"simpletuner/internal/sysmem"
	"simpletuner/options"
	"simpletuner/plugins"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/model"
)

// smallHost is a kernel file tree of a host with 1 GiB of RAM and no cgroup limit.
func smallHost(t *testing.T) sysmem.FS { return hostOfKB(t, 1048576) }

// hostOfKB is a kernel file tree of a host with kb KiB of RAM and no cgroup limit.
func hostOfKB(t *testing.T, kb int64) sysmem.FS {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	meminfo := fmt.Sprintf("MemTotal: %d kB\nMemAvailable: %d kB\n", kb, kb/2)
	if err := os.WriteFile(filepath.Join(root, "proc", "meminfo"), []byte(meminfo), 0o644); err != nil {
		t.Fatal(err)
	}
	return sysmem.FS{Root: root}
}

// tutorialDataloader is the tutorial's fast-path dataloader: 1024 px, pixel_area.
func tutorialDataloader(dataDir string) string {
	b, _ := json.Marshal([]map[string]any{
		{"id": "demo-images", "type": "local", "dataset_type": "image", "instance_data_dir": dataDir, "caption_strategy": "textfile",
			"resolution": 1024, "resolution_type": "pixel_area"},
		{"id": "text", "type": "memory", "dataset_type": "text_embeds", "default": true},
	})
	return string(b)
}

// TestMemoryCheck: on a 1 GiB host the tutorial's 1024 px dataloader, a 1024x1024
// validation image and --resolution 1024 for a dataset without its own are refused by
// Validate with the estimate, what the host has and what to lower; 16 px passes. Run
// refuses the same job before loading any data.
func TestMemoryCheck(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	makeDataset(t, dataDir, 1, 16)
	r := New(Options{Threads: 1, BLAS: blas.ChoiceAuto, Memory: smallHost(t)})
	validate := func(cfg map[string]any) []plugins.Issue {
		t.Helper()
		raw, _ := json.Marshal(cfg)
		is, err := r.Validate(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		return errorsOf(is)
	}
	good := baseConfig(t.TempDir(), dataDir)
	if is := validate(good); len(is) != 0 {
		t.Fatalf("16 px on 1 GiB: %v", is)
	}

	tutorial := clone(good)
	tutorial["--data_backend_config"] = tutorialDataloader(dataDir)
	tutorial["--train_batch_size"] = 1
	noOwnResolution := clone(good)
	noOwnResolution["--data_backend_config"] = strings.Replace(dataloader(dataDir, 16), `"resolution":16,"resolution_type":"pixel",`, "", 1)
	noOwnResolution["--resolution"] = 1024
	validationRes := clone(good)
	validationRes["--validation_prompt"] = "a red square"
	validationRes["--validation_resolution"] = "1024x1024"
	for _, tc := range []struct {
		name, option string
		cfg          map[string]any
		want         []string
	}{
		{"tutorial dataloader", "--data_backend_config", tutorial,
			[]string{"needs about 5", "GiB", `dataset "demo-images" (resolution 1024 pixel_area) at 1024x1024, batch 1`,
				"attention scratch 512 GiB", "the machine has 1.0 GiB of RAM", `lower the resolution of dataset "demo-images" in the dataloader (--data_backend_config) (up to about`, "sample size is 16 px"}},
		{"--resolution", "--resolution", noOwnResolution, []string{"at 1024x1024, batch 4", "lower --resolution (up to about", ", --train_batch_size"}},
		{"validation", "--validation_resolution", validationRes,
			[]string{"validation images at 1024x1024 (batch 2 with guidance)", "attention scratch 256 GiB", "lower --validation_resolution (up to about"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := validate(tc.cfg)
			if len(is) != 1 || is[0].Option != tc.option {
				t.Fatalf("issues %v, want one on %s", is, tc.option)
			}
			for _, w := range tc.want {
				if !strings.Contains(is[0].Message, w) {
					t.Errorf("message lacks %q:\n%s", w, is[0].Message)
				}
			}
		})
	}

	// Run refuses before the data stage (a queued job meets the machine at start).
	evs, st := startJob(t, r, tutorial).wait(t, nil)
	if st.State != plugins.StateFailed || !strings.Contains(st.Error, "the machine has 1.0 GiB of RAM") {
		t.Fatalf("run ended %q: %s", st.State, st.Error)
	}
	for _, e := range eventsOf(evs, "lifecycle.stage") {
		if strings.Contains(string(e.Data), "init_data_backend") {
			t.Fatalf("the data stage ran before the refusal: %s", e.Data)
		}
	}
}

// TestFamilyDefaultResolutionIsTheModelsSampleSize: the dit family's default resolution
// (options, where new environments take it from) is the sample size of the flavour this
// trainer defaults to, and that flavour is the family's default in both lists.
func TestFamilyDefaultResolutionIsTheModelsSampleSize(t *testing.T) {
	fam, ok := options.Default().Family("dit")
	if !ok {
		t.Fatal("no dit family in the registry")
	}
	info, err := testRunner().Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Families) != 2 || info.Families[0].Name != "dit" || info.Families[0].DefaultFlavour != fam.DefaultFlavour {
		t.Fatalf("trainer families %+v, registry %+v", info.Families, fam)
	}
	cfg, err := model.Flavour(fam.DefaultFlavour)
	if err != nil {
		t.Fatal(err)
	}
	if fam.DefaultResolution != cfg.SampleSize {
		t.Errorf("registry default resolution %d, %s's sample size %d", fam.DefaultResolution, fam.DefaultFlavour, cfg.SampleSize)
	}
}

// TestMemoryAdviceOnGradientCheckpointing: a job that does not fit is told that
// --gradient_checkpointing would help when its family implements it and it is off, and
// that it does nothing when the family does not implement it and it is on.
func TestMemoryAdviceOnGradientCheckpointing(t *testing.T) {
	ls := newLatentSetup(t)
	for _, tc := range []struct {
		name          string
		implemented   bool
		set           bool
		want, notWant string
	}{
		{"implemented, off", true, false, "--gradient_checkpointing would lower it", "not implemented"},
		{"implemented, on", true, true, "", "--gradient_checkpointing"},
		{"not implemented, on", false, true, "--gradient_checkpointing is not implemented by latent_toy/a", ""},
		{"not implemented, off", false, false, "", "--gradient_checkpointing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New(Options{Threads: 1, BLAS: blas.ChoiceAuto, Memory: smallHost(t),
				Families: mustRegistry(t, latentToy{log: &toyLog{}, huge: true, checkpointing: tc.implemented})})
			cfg := ls.config("out")
			cfg["--gradient_checkpointing"] = tc.set
			raw, _ := json.Marshal(cfg)
			is, err := r.Validate(context.Background(), raw)
			if err != nil {
				t.Fatal(err)
			}
			errs := errorsOf(is)
			if len(errs) != 1 {
				t.Fatalf("issues %+v", is)
			}
			msg := errs[0].Message
			if tc.want != "" && !strings.Contains(msg, tc.want) || tc.notWant != "" && strings.Contains(msg, tc.notWant) {
				t.Errorf("message %q: want %q, not %q", msg, tc.want, tc.notWant)
			}
		})
	}
}
