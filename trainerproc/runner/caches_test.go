package runner

import (
	"encoding/json"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"simpletuner/plugins"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/family"
	"simpletuner/trainerproc/family/dit"
	"simpletuner/trainerproc/family/encoders/encoderstest"
)

// stageEvent is one lifecycle.stage event: its key, status and extra data.
type stageEvent struct {
	key, status string
	data        map[string]any
}

func stagesOf(t *testing.T, evs []plugins.Event) []stageEvent {
	t.Helper()
	var out []stageEvent
	for _, e := range eventsOf(evs, plugins.EventLifecycleStage) {
		d := dataOf(t, e)
		st, _ := d["stage"].(map[string]any)
		key, _ := st["key"].(string)
		status, _ := st["status"].(string)
		out = append(out, stageEvent{key, status, d})
	}
	return out
}

// find is the index of the first stage event with key and status, or -1.
func find(ss []stageEvent, key, status string) int {
	return slices.IndexFunc(ss, func(s stageEvent) bool { return s.key == key && s.status == status })
}

// countFiles counts the files under dir whose name ends with ext.
func countFiles(t *testing.T, dir, ext string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ext) {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLatentFamilyTrainsFromCaches: a family asking for latents and text embeddings trains
// end to end from a pipeline directory. The first job encodes every caption (and the empty
// one) with the pipeline's T5 into the text_embeds dataset's cache_dir and every image with
// its VAE into cache_dir_vae, frees both encoders before the model is built, and feeds the
// loss scaled latents and embeddings; a second job with the same data encodes nothing; after
// one image changes, a third job encodes that image alone.
func TestLatentFamilyTrainsFromCaches(t *testing.T) {
	log := &toyLog{}
	reg, err := family.NewRegistry(dit.Family{}, latentToy{log: log})
	if err != nil {
		t.Fatal(err)
	}
	r := New(Options{Threads: 2, BLAS: blas.ChoiceAuto, Families: reg})
	pipe := encoderstest.PipelineDir(t, 3)
	root := t.TempDir()
	dataDir := filepath.Join(root, "data")
	makeDataset(t, dataDir, 2, 16) // 4 images, captions "red" and "blue"
	vaeCache, textCache := filepath.Join(root, "vae-cache"), filepath.Join(root, "text-cache")
	dl, err := json.Marshal([]map[string]any{
		{"id": "shapes", "type": "local", "dataset_type": "image", "instance_data_dir": dataDir, "caption_strategy": "textfile",
			"resolution": 16, "resolution_type": "pixel", "crop": false, "cache_dir_vae": vaeCache},
		{"id": "text", "type": "local", "dataset_type": "text_embeds", "default": true, "cache_dir": textCache},
	})
	if err != nil {
		t.Fatal(err)
	}
	run := func(name string) []stageEvent {
		t.Helper()
		cfg := baseConfig(filepath.Join(root, name), dataDir)
		cfg["--model_family"], cfg["--model_flavour"] = "latent_toy", "a"
		cfg["--pretrained_model_name_or_path"] = pipe
		cfg["--data_backend_config"] = string(dl)
		cfg["--train_batch_size"], cfg["--max_train_steps"] = 2, 3
		evs, st := startJob(t, r, cfg).wait(t, nil)
		if st.State != plugins.StateCompleted {
			t.Fatalf("%s: job ended %q: %s\n%s", name, st.State, st.Error, tail(evs, 6))
		}
		if l := losses(t, evs); len(l) != 3 {
			t.Fatalf("%s: losses %v", name, l)
		}
		ss := stagesOf(t, evs)
		text, vae, build := find(ss, stageTextEmbeds, "completed"), find(ss, stageVAECache, "completed"), find(ss, "init_load_base_model", "running")
		if text < 0 || vae < 0 || build < 0 || text > build || vae > build {
			t.Fatalf("%s: text cache done at event %d, VAE cache at %d, model build at %d: the caches come first", name, text, vae, build)
		}
		return ss
	}
	counts := func(ss []stageEvent, key string) [3]float64 {
		d := ss[find(ss, key, "completed")].data
		return [3]float64{d["hits"].(float64), d["built"].(float64), d["stale"].(float64)}
	}

	ss := run("first")
	if got := counts(ss, stageTextEmbeds); got != [3]float64{0, 3, 0} {
		t.Errorf("first job's text cache hits, built, stale = %v, want 0, 3 (red, blue, empty), 0", got)
	}
	if got := counts(ss, stageVAECache); got != [3]float64{0, 4, 0} {
		t.Errorf("first job's VAE cache = %v, want 0, 4, 0", got)
	}
	if n := countFiles(t, textCache, ".te"); n != 3 {
		t.Errorf("%d text-embedding files in %s, want 3", n, textCache)
	}
	if n := countFiles(t, vaeCache, ".lat"); n != 4 {
		t.Errorf("%d latent files in %s, want 4", n, vaeCache)
	}

	ss = run("second")
	if got := counts(ss, stageTextEmbeds); got != [3]float64{3, 0, 0} {
		t.Errorf("second job's text cache = %v, want all hits", got)
	}
	if got := counts(ss, stageVAECache); got != [3]float64{4, 0, 0} {
		t.Errorf("second job's VAE cache = %v, want all hits", got)
	}

	writeClassImage(t, filepath.Join(dataDir, "red_a.png"), 16, "red", 7)
	ss = run("third")
	if got := counts(ss, stageTextEmbeds); got != [3]float64{3, 0, 0} {
		t.Errorf("third job's text cache = %v, want all hits", got)
	}
	if got := counts(ss, stageVAECache); got != [3]float64{3, 1, 1} {
		t.Errorf("third job's VAE cache = %v, want the changed image rebuilt", got)
	}
	if n := countFiles(t, vaeCache, ".lat"); n != 4 {
		t.Errorf("%d latent files after the rebuild, want 4 (rewritten in place)", n)
	}

	log.mu.Lock()
	defer log.mu.Unlock()
	if !slices.Equal(log.liveAtBuild, []int64{0, 0, 0}) {
		t.Errorf("engine buffers alive when the model was built: %v, want none (encoders freed)", log.liveAtBuild)
	}
	for _, b := range log.batches {
		// 16-pixel images through the tiny VAE (downscale 4), 8 tokens of the test T5 (32 wide).
		if b != [6]int{2, toyC, 4, 4, 8, toyD} {
			t.Fatalf("batch shapes [B,C,H,W,L,D] %v", b)
		}
	}
	if len(log.batches) != 9 {
		t.Fatalf("%d batches, want 9", len(log.batches))
	}
}
