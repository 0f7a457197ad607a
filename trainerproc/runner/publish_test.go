package runner

import (
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"simpletuner/plugins"
	"simpletuner/trainerproc/checkpoint"
	"simpletuner/trainerproc/hfhub/hfhubtest"
)

const pubRepo = "me/tuned"

// publishConfig is baseConfig with --push_to_hub and --push_checkpoints_to_hub and a
// checkpoint every 4 of its 8 steps.
func publishConfig(t *testing.T) (map[string]any, string) {
	data := t.TempDir()
	makeDataset(t, data, 2, 16)
	out := t.TempDir()
	cfg := baseConfig(out, data)
	cfg["--checkpoint_step_interval"] = 4
	cfg["--push_to_hub"], cfg["--push_checkpoints_to_hub"], cfg["--hub_model_id"] = true, true, pubRepo
	return cfg, out
}

// pubEnv is the trainer environment of a job publishing to hub with token ("" none:
// HF_HOME is empty, so there is no token file either).
func pubEnv(t *testing.T, hub *hfhubtest.Hub, token string) map[string]string {
	return map[string]string{"HF_ENDPOINT": hub.URL, "HF_HOME": t.TempDir(), "HF_TOKEN": token}
}

// localTree reads every file under dir, keyed by slash path.
func localTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = readFile(t, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func checkpointEvents(t *testing.T, evs []plugins.Event) []plugins.CheckpointData {
	var out []plugins.CheckpointData
	for _, e := range eventsOf(evs, plugins.EventTrainingCheckpoint) {
		var cd plugins.CheckpointData
		if err := json.Unmarshal(e.Data, &cd); err != nil {
			t.Fatal(err)
		}
		out = append(out, cd)
	}
	return out
}

func TestJobPublishesCheckpointsAndFinalModel(t *testing.T) {
	hub := hfhubtest.New(t)
	hub.RequireWriteToken("hf_write")
	cfg, out := publishConfig(t)
	cfg["--hub_model_id"] = "https://huggingface.co/" + pubRepo // a pasted URL names the repo too
	cfg["--checkpoints_total_limit"] = 1                        // the first checkpoint is pruned locally, not on the Hub
	evs, st := startJob(t, hubRunner(pubEnv(t, hub, "hf_write")), cfg).wait(t, nil)
	if st.State != "completed" {
		t.Fatalf("job %s (%s):\n%s", st.State, st.Error, tail(evs, 6))
	}
	// Checkpoint events say where each checkpoint went; the final model is a final
	// checkpoint at the repo's root.
	cds := checkpointEvents(t, evs)
	want := []struct {
		step   int64
		remote string
		final  bool
	}{{4, hub.URL + "/me/tuned/tree/main/checkpoint-4", false}, {8, hub.URL + "/me/tuned/tree/main/checkpoint-8", false}, {8, hub.URL + "/me/tuned", true}}
	if len(cds) != len(want) {
		t.Fatalf("checkpoint events %+v", cds)
	}
	for i, w := range want {
		if cd := cds[i]; cd.Step != w.step || !cd.Uploaded || cd.RemotePath != w.remote || cd.IsFinal != w.final {
			t.Errorf("checkpoint event %d: %+v, want %+v", i, cd, w)
		}
	}
	commits := hub.Commits(pubRepo)
	if len(commits) != 3 {
		t.Fatalf("%d commits", len(commits))
	}
	for _, c := range commits {
		if !strings.HasPrefix(c.Summary, "Trained for ") || !strings.Contains(c.Summary, "Trained with datasets shapes") {
			t.Errorf("commit message %q", c.Summary)
		}
	}
	if !strings.Contains(commits[0].Summary, "and 4 steps.") || !strings.Contains(commits[2].Summary, "and 8 steps.") {
		t.Errorf("commit messages %q / %q", commits[0].Summary, commits[2].Summary)
	}
	repo := hub.Files(pubRepo, "main")
	// checkpoint-8 is in its folder and at the root (where the final model replaced what
	// they share), byte for byte; weights went as LFS.
	ck := localTree(t, filepath.Join(out, "checkpoint-8"))
	for rel, b := range ck {
		places := []string{path.Join("checkpoint-8", rel)}
		if _, err := os.Stat(filepath.Join(out, filepath.FromSlash(rel))); err != nil {
			places = append(places, rel)
		}
		for _, p := range places {
			f, ok := repo[p]
			if !ok || string(f.Content) != string(b) {
				t.Errorf("%s missing or different in the repo", p)
			}
			if strings.HasSuffix(p, ".safetensors") && !f.LFS {
				t.Errorf("%s is not an LFS file", p)
			}
		}
	}
	if _, ok := repo["checkpoint-4/"+plugins.CheckpointStateFile]; !ok {
		t.Error("checkpoint-4 is not in the repo")
	}
	// The final pipeline is at the root with its model card and configuration.
	for _, rel := range []string{"model_index.json", "transformer/diffusion_pytorch_model.safetensors", "transformer/config.json", "README.md", "simpletuner_config.json"} {
		local := readFile(t, filepath.Join(out, filepath.FromSlash(rel)))
		if f, ok := repo[rel]; !ok || string(f.Content) != string(local) {
			t.Errorf("final %s missing or different in the repo: %q vs %q", rel, repo[rel].Content, local)
		}
	}
	if card := string(repo["README.md"].Content); !strings.HasPrefix(card, "---\n") || !strings.Contains(card, "# "+pubRepo) || !strings.Contains(card, "Training steps: 8") {
		t.Errorf("model card:\n%s", card)
	}
	var conf map[string]any
	if err := json.Unmarshal(repo["simpletuner_config.json"].Content, &conf); err != nil || conf["model_family"] != "dit" || conf["hub_model_id"] == nil {
		t.Errorf("simpletuner_config.json: %v %v", conf, err)
	}
	// Upload progress is on the publish stage, ending at 100 %.
	var sawProgress bool
	for _, e := range stagesOf(t, evs) {
		if p, _ := e.data["stage"].(map[string]any)["progress"].(map[string]any); e.key == publishStage && p["percent"] == 100.0 {
			sawProgress = true
		}
	}
	if !sawProgress {
		t.Error("no upload progress reached 100 %")
	}
}

func TestJobUploadFailureKeepsLocalResult(t *testing.T) {
	hub := hfhubtest.New(t)
	cfg, out := publishConfig(t)
	// Every transfer to the LFS storage is refused (not a "later": no retries).
	hub.FailStorage(1000, http.StatusBadRequest)
	evs, st := startJob(t, hubRunner(pubEnv(t, hub, "hf_write")), cfg).wait(t, nil)
	if st.State != "completed" {
		t.Fatalf("job %s (%s):\n%s", st.State, st.Error, tail(evs, 6))
	}
	for _, cd := range checkpointEvents(t, evs) {
		if cd.Uploaded || cd.RemotePath != "" || cd.IsFinal {
			t.Errorf("checkpoint event %+v after a failed upload", cd)
		}
	}
	var failed int
	for _, e := range stagesOf(t, evs) {
		if e.key == publishStage && e.status == "failed" {
			failed++
			if cause, _ := e.data["error"].(string); !strings.Contains(cause, "HTTP 400") || !strings.HasPrefix(e.data["path"].(string), out) {
				t.Errorf("failure reported as %v", e.data)
			}
		}
	}
	if failed != 3 { // two checkpoints and the final model
		t.Errorf("%d failed uploads reported, want 3", failed)
	}
	for _, p := range []string{"checkpoint-4/" + plugins.CheckpointStateFile, "checkpoint-8/" + plugins.CheckpointStateFile, "model_index.json", "README.md"} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Errorf("local %s: %v", p, err)
		}
	}
	if n := len(hub.Commits(pubRepo)); n != 0 {
		t.Errorf("%d commits", n)
	}
}

func TestJobRefusesPublishingItCannotDo(t *testing.T) {
	tests := []struct {
		name, token, writeToken string
		want                    []string
	}{
		{"no token", "", "", []string{"HF_TOKEN", "huggingface-cli login"}},
		{"token without write access", "hf_read", "hf_write", []string{"write access", pubRepo}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := hfhubtest.New(t)
			if tt.writeToken != "" {
				hub.RequireWriteToken(tt.writeToken)
			}
			cfg, _ := publishConfig(t)
			r := hubRunner(pubEnv(t, hub, tt.token))
			if tt.token == "" {
				raw, _ := json.Marshal(cfg)
				issues, err := r.Validate(context.Background(), raw)
				if err != nil {
					t.Fatal(err)
				}
				var warned bool
				for _, is := range issues {
					warned = warned || is.Option == optPushToHub && is.Severity == "warning" && strings.Contains(is.Message, "HF_TOKEN")
				}
				if !warned {
					t.Errorf("validate issues %+v", issues)
				}
			}
			evs, st := startJob(t, r, cfg).wait(t, nil)
			if st.State != "failed" {
				t.Fatalf("job %s:\n%s", st.State, tail(evs, 6))
			}
			for _, w := range tt.want {
				if !strings.Contains(st.Error, w) {
					t.Errorf("error %q lacks %q", st.Error, w)
				}
			}
			if len(eventsOf(evs, plugins.EventTrainingProgress)) != 0 {
				t.Error("trained although the upload could not work")
			}
		})
	}
}

func TestHubRepoID(t *testing.T) {
	for in, want := range map[string]string{
		"me/tuned":                          "me/tuned",
		" https://huggingface.co/me/tuned ": "me/tuned",
		"huggingface.co/me/tuned?x=1#y":     "me/tuned",
		"/me/tuned/":                        "me/tuned",
	} {
		if got := hubRepoID(in); got != want {
			t.Errorf("hubRepoID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestJobPublishesLoRAWeights(t *testing.T) {
	hub := hfhubtest.New(t)
	cfg, out := publishConfig(t)
	cfg["--model_type"] = "lora"
	evs, st := startJob(t, hubRunner(pubEnv(t, hub, "hf_write")), cfg).wait(t, nil)
	if st.State != "completed" {
		t.Fatalf("job %s (%s):\n%s", st.State, st.Error, tail(evs, 6))
	}
	repo := hub.Files(pubRepo, "main")
	// SimpleTuner's LoRA layout: the adapter weights, model card and configuration in each
	// checkpoint's folder and at the root (the final ones last); no optimizer state.
	for _, p := range []string{"checkpoint-4/", "checkpoint-8/", ""} {
		for _, f := range []string{checkpoint.LoRAWeightsFile, modelCardFile, trainingConfigFile} {
			if _, ok := repo[p+f]; !ok {
				t.Errorf("%s%s is not in the repo", p, f)
			}
		}
	}
	for p := range repo {
		if strings.Contains(p, checkpoint.OptimizerFile) || strings.Contains(p, "transformer/") {
			t.Errorf("%s uploaded for a LoRA", p)
		}
	}
	final := readFile(t, filepath.Join(out, checkpoint.LoRAWeightsFile))
	if f := repo[checkpoint.LoRAWeightsFile]; string(f.Content) != string(final) || !f.LFS {
		t.Error("the root's adapter weights are not the final ones")
	}
	if card := string(repo[modelCardFile].Content); !strings.Contains(card, "template:sd-lora") {
		t.Errorf("model card:\n%s", card)
	}
}

func TestStopDuringUploadStopsTheJob(t *testing.T) {
	hub := hfhubtest.New(t)
	// The storage keeps saying "later": the upload waits between retries until stopped.
	hub.FailStorage(1000, http.StatusServiceUnavailable)
	cfg, out := publishConfig(t)
	j := startJob(t, hubRunner(pubEnv(t, hub, "hf_write")), cfg)
	var once sync.Once
	evs, st := j.wait(t, func(e plugins.Event) {
		if e.Type == plugins.EventLifecycleStage && strings.HasPrefix(e.Title, "Uploading checkpoint checkpoint-4") {
			once.Do(func() { j.host.Command(t.Context(), plugins.CommandStop) })
		}
	})
	if st.State != plugins.StateStopped {
		t.Fatalf("job %s (%s):\n%s", st.State, st.Error, tail(evs, 6))
	}
	cds := checkpointEvents(t, evs)
	if len(cds) != 1 || cds[0].Step != 4 || cds[0].Uploaded {
		t.Fatalf("checkpoint events %+v", cds)
	}
	if _, err := os.Stat(filepath.Join(out, "checkpoint-4", plugins.CheckpointStateFile)); err != nil {
		t.Fatalf("the checkpoint is not kept: %v", err)
	}
	if n := len(hub.Commits(pubRepo)); n != 0 {
		t.Fatalf("%d commits", n)
	}
}
