package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/hfhub"
	"simpletuner/trainerproc/hfhub/hfhubtest"
	"simpletuner/trainerproc/model"
	"simpletuner/trainerproc/model/modeltest"
)

// serveDir commits the tree under dir to repo's main branch on hub.
func serveDir(t testing.TB, hub *hfhubtest.Hub, repo, dir string) string {
	t.Helper()
	files, err := hfhubtest.DirFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	return hub.Commit(repo, "main", files)
}

// envOf is a getenv over a fixed map.
func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func hubClient(hub *hfhubtest.Hub, cache string, extra map[string]string) *hfhub.Client {
	env := map[string]string{"HF_ENDPOINT": hub.URL, "HF_HUB_CACHE": cache, "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1"}
	for k, v := range extra {
		env[k] = v
	}
	c := hfhub.NewClient(hfhub.ConfigFromEnv(envOf(env), ""))
	c.Backoff = func(int) time.Duration { return 0 }
	return c
}

func TestProgressThrottle(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type rep struct {
		after time.Duration // since t0
		done  int64
	}
	const total = 10000
	cases := []struct {
		name string
		reps []rep
		want []int64 // Done of the reports passed on
	}{
		{"first and final always", []rep{{0, 0}, {1, total}}, []int64{0, total}},
		{"below 1 % within a second is held", []rep{{0, 0}, {10, 50}, {20, 99}, {30, 100}}, []int64{0, 100}},
		{"a second passes", []rep{{0, 0}, {time.Second - 1, 10}, {time.Second, 20}}, []int64{0, 20}},
		{"interval counts from the last one passed on", []rep{{0, 0}, {time.Second, 10}, {time.Second + 500*time.Millisecond, 20}, {2 * time.Second, 30}}, []int64{0, 10, 30}},
		{"a repeated final report is passed on once", []rep{{0, 0}, {1, total}, {2 * time.Second, total}}, []int64{0, total}},
		{"resumed file starts above 0", []rep{{0, 7000}, {1, 7050}, {2, 7100}}, []int64{7000, 7100}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var now time.Time
			var got []int64
			th := newProgressThrottle(func() time.Time { return now }, func(p hfhub.Progress) { got = append(got, p.Done) })
			for _, r := range tc.reps {
				now = t0.Add(r.after)
				th.report(hfhub.Progress{Repo: "org/m", File: "f", Done: r.done, Total: total})
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("passed on %v, want %v", got, tc.want)
			}
		})
	}
}

// TestProgressThrottleFiles reports several files at once, as a snapshot download does:
// each file is throttled on its own, keeps its order and ends with its final report.
func TestProgressThrottleFiles(t *testing.T) {
	const total = 1 << 20
	var mu sync.Mutex
	got := map[string][]int64{}
	start := time.Unix(0, 0)
	th := newProgressThrottle(func() time.Time { return start }, func(p hfhub.Progress) {
		mu.Lock()
		got[p.File] = append(got[p.File], p.Done)
		mu.Unlock()
	})
	var wg sync.WaitGroup
	for f := range 4 {
		wg.Go(func() {
			for done := int64(0); done <= total; done += 1024 {
				th.report(hfhub.Progress{Repo: "org/m", File: fmt.Sprint("file", f), Done: done, Total: total})
			}
		})
	}
	wg.Wait()
	for f := range 4 {
		g := got[fmt.Sprint("file", f)]
		// 0, then every 1 % (10486 bytes, so every 11th chunk), and the end.
		if len(g) < 90 || len(g) > 102 || g[0] != 0 || g[len(g)-1] != total || !slices.IsSorted(g) {
			t.Fatalf("file%d: %d reports %v…", f, len(g), g[:min(5, len(g))])
		}
	}
}

func TestDownloadEvent(t *testing.T) {
	title, msg, d := downloadEvent(hfhub.Progress{Repo: "org/m", File: "transformer/x.safetensors", Done: 1 << 20, Total: 3 << 20})
	if title != "Downloading org/m" || msg != "transformer/x.safetensors: 1.0 MiB of 3.0 MiB (33.33%)" ||
		d.Repo != "org/m" || d.File != "transformer/x.safetensors" || d.Done != 1<<20 || d.Total != 3<<20 || d.Percent != 33.33 {
		t.Fatalf("%q %q %+v", title, msg, d)
	}
	if _, _, d := downloadEvent(hfhub.Progress{Repo: "org/m", File: "empty"}); d.Percent != 0 {
		t.Fatalf("empty file: %+v", d)
	}
}

// resolvedOptions resolves a configuration with extra weight options.
func resolvedOptions(t *testing.T, extra map[string]any) *Settings {
	t.Helper()
	cfg := baseConfig(t.TempDir(), t.TempDir())
	for k, v := range extra {
		cfg[k] = v
	}
	raw, _ := json.Marshal(cfg)
	s, _, err := ParseSettings(raw)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWeightSourcesOf(t *testing.T) {
	all := []string{componentTransformer, componentVAE}
	cases := []struct {
		name        string
		opts        map[string]any
		usable      []string
		wantSrc     weightSources
		wantIgnored []string
	}{
		{"nothing set", nil, nil, weightSources{}, nil},
		{"base model, revision and variant", map[string]any{optPretrained: "org/m", optRevision: "v1", optVariant: "fp16"}, nil,
			weightSources{Pretrained: "org/m", Revision: "v1", Variant: "fp16"}, nil},
		{"the default VAE is dropped quietly by a family without one", nil, nil, weightSources{}, nil},
		{"an empty VAE means the base model's", map[string]any{optVAE: ""}, all, weightSources{}, nil},
		{"a chosen VAE a family cannot load is reported", map[string]any{optVAE: "org/vae"}, nil, weightSources{}, []string{optVAE}},
		{"a transformer a family cannot load is reported", map[string]any{optTransformer: "org/t"}, []string{componentVAE},
			weightSources{Overrides: map[string]componentSource{componentVAE: {Option: optVAE, NameOrPath: "madebyollin/sdxl-vae-fp16-fix"}}},
			[]string{optTransformer}},
		{"overrides a family loads", map[string]any{optTransformer: "org/t", optVAE: "./vae"}, all,
			weightSources{Overrides: map[string]componentSource{
				componentTransformer: {Option: optTransformer, NameOrPath: "org/t", Subfolder: "transformer"},
				componentVAE:         {Option: optVAE, NameOrPath: "./vae"}}}, nil},
		{"transformer subfolder none is the top level", map[string]any{optTransformer: "org/t", optTransformerSubfolder: "none"}, all,
			weightSources{Overrides: map[string]componentSource{
				componentTransformer: {Option: optTransformer, NameOrPath: "org/t"},
				componentVAE:         {Option: optVAE, NameOrPath: "madebyollin/sdxl-vae-fp16-fix"}}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := resolvedOptions(t, tc.opts)
			src, ignored := weightSourcesOf(s.Cfg, tc.usable)
			if fmt.Sprint(src) != fmt.Sprint(tc.wantSrc) || !slices.Equal(ignored, tc.wantIgnored) {
				t.Fatalf("got %+v ignored %v\nwant %+v ignored %v", src, ignored, tc.wantSrc, tc.wantIgnored)
			}
		})
	}
}

func TestResolveWeights(t *testing.T) {
	hub := hfhubtest.New(t)
	pipe := modeltest.SaveTiny(t, 5)
	commit := serveDir(t, hub, "org/dit", pipe)
	vaeWeights := []byte("plain vae weights")
	hub.Commit("org/vae", "main", map[string]hfhubtest.File{
		"config.json":                              {Content: []byte(`{"_class_name": "AutoencoderKL"}`)},
		"diffusion_pytorch_model.safetensors":      {Content: vaeWeights, LFS: true},
		"diffusion_pytorch_model.fp16.safetensors": {Content: []byte("fp16 vae weights"), LFS: true},
	})
	cache := t.TempDir()
	c := hubClient(hub, cache, nil)
	ctx := context.Background()

	// A repo id lands in the cache's snapshot of the commit main points at.
	w, err := resolveWeights(ctx, c, weightSources{Pretrained: "org/dit"})
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(cache, "models--org--dit", "snapshots", commit)
	if w.Pipeline != want || w.Components != nil {
		t.Fatalf("resolved %+v, want pipeline %s", w, want)
	}
	for _, f := range []string{"model_index.json", "transformer/config.json", "transformer/diffusion_pytorch_model.safetensors",
		"text_encoder/model.safetensors"} {
		if got, want := readFile(t, filepath.Join(w.Pipeline, f)), readFile(t, filepath.Join(pipe, f)); string(got) != string(want) {
			t.Fatalf("%s differs from the served file", f)
		}
	}

	// A local directory is used as it is, without a request.
	n := len(hub.Requests())
	if w, err := resolveWeights(ctx, c, weightSources{Pretrained: pipe}); err != nil || w.Pipeline != pipe {
		t.Fatalf("local dir: %+v %v", w, err)
	}
	if len(hub.Requests()) != n {
		t.Fatal("a local directory asked the Hub")
	}

	// Overrides: --revision pins the base repo (and an override naming it), not another repo.
	w, err = resolveWeights(ctx, c, weightSources{Pretrained: "org/dit", Revision: commit, Variant: "fp16", Overrides: map[string]componentSource{
		componentTransformer: {Option: optTransformer, NameOrPath: "org/dit", Subfolder: "transformer"},
		componentVAE:         {Option: optVAE, NameOrPath: "org/vae"}}})
	if err != nil {
		t.Fatal(err)
	}
	vaeDir := w.Components[componentVAE]
	if w.Components[componentTransformer] != filepath.Join(want, "transformer") ||
		!strings.HasPrefix(vaeDir, filepath.Join(cache, "models--org--vae", "snapshots")+string(filepath.Separator)) {
		t.Fatalf("components %v", w.Components)
	}
	if string(readFile(t, filepath.Join(vaeDir, "diffusion_pytorch_model.fp16.safetensors"))) != "fp16 vae weights" {
		t.Fatal("the fp16 variant of the VAE was not fetched")
	}
	if _, err := os.Stat(filepath.Join(vaeDir, "diffusion_pytorch_model.safetensors")); err == nil {
		t.Fatal("the plain VAE weights were fetched along with the variant")
	}
}

func TestResolveWeightsErrors(t *testing.T) {
	hub := hfhubtest.New(t)
	pipe := modeltest.SaveTiny(t, 5)
	serveDir(t, hub, "org/dit", pipe)
	serveDir(t, hub, "org/gated", pipe)
	hub.Gate("org/gated", "good-token")
	serveDir(t, hub, "org/corrupt", pipe)
	hub.Corrupt("org/corrupt", "transformer/diffusion_pytorch_model.safetensors", true)
	cases := []struct {
		name      string
		src       weightSources
		env       map[string]string
		class     error
		cause     error
		inMessage []string
	}{
		{"gated without a token", weightSources{Pretrained: "org/gated"}, nil, ErrConfig, hfhub.ErrGatedRepo,
			[]string{"--pretrained_model_name_or_path org/gated", "accept", "HF_TOKEN"}},
		{"gated with a token without access", weightSources{Pretrained: "org/gated"}, map[string]string{"HF_TOKEN": "other", "HF_HUB_DISABLE_IMPLICIT_TOKEN": ""},
			ErrConfig, hfhub.ErrGatedRepo, []string{"org/gated"}},
		{"repo not found", weightSources{Pretrained: "org/nope"}, nil, ErrConfig, hfhub.ErrRepoNotFound, []string{"org/nope"}},
		{"revision not found", weightSources{Pretrained: "org/dit", Revision: "v9"}, nil, ErrConfig, hfhub.ErrRevisionNotFound, []string{"v9"}},
		{"missing local path", weightSources{Pretrained: "./no/such/dir"}, nil, ErrConfig, hfhub.ErrNotAModel, []string{"./no/such/dir"}},
		{"offline and not cached", weightSources{Pretrained: "org/dit"}, map[string]string{"HF_HUB_OFFLINE": "1"}, ErrConfig, hfhub.ErrOffline,
			[]string{"HF_HUB_OFFLINE"}},
		{"corrupt download", weightSources{Pretrained: "org/corrupt"}, nil, ErrDownload, hfhub.ErrCorrupt,
			[]string{"transformer/diffusion_pytorch_model.safetensors"}},
		{"override not found", weightSources{Overrides: map[string]componentSource{componentVAE: {Option: optVAE, NameOrPath: "org/novae"}}}, nil,
			ErrConfig, hfhub.ErrRepoNotFound, []string{"--pretrained_vae_model_name_or_path org/novae"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := hubClient(hub, t.TempDir(), tc.env)
			_, err := resolveWeights(context.Background(), c, tc.src)
			if !errors.Is(err, tc.class) || !errors.Is(err, tc.cause) {
				t.Fatalf("error %v, want %v and %v", err, tc.class, tc.cause)
			}
			for _, s := range tc.inMessage {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q does not say %q", err, s)
				}
			}
		})
	}
	// A cancelled run is neither the user's error nor a download failure.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := resolveWeights(ctx, hubClient(hub, t.TempDir(), nil), weightSources{Pretrained: "org/dit"})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrConfig) || errors.Is(err, ErrDownload) {
		t.Fatalf("cancelled: %v", err)
	}
}

// hubRunner is a test runner whose Hub settings come from env, on a stopped clock (so
// download progress is paced by size alone).
func hubRunner(env map[string]string) *Runner {
	return New(Options{Threads: 2, BLAS: blas.ChoiceAuto, Getenv: envOf(env), Now: func() time.Time { return time.Unix(0, 0) }})
}

func TestJobTrainsFromHubRepo(t *testing.T) {
	hub := hfhubtest.New(t)
	commit := serveDir(t, hub, "org/dit", modeltest.SaveTiny(t, 99))
	cache := t.TempDir()
	data := t.TempDir()
	makeDataset(t, data, 2, 16)
	cfg := baseConfig(t.TempDir(), data)
	cfg[optPretrained], cfg["--max_train_steps"] = "org/dit", 2
	evs, st := startJob(t, hubRunner(map[string]string{"HF_ENDPOINT": hub.URL, "HF_HUB_CACHE": cache}), cfg).wait(t, nil)
	if st.State != "completed" {
		t.Fatalf("job %s (%s):\n%s", st.State, st.Error, tail(evs, 6))
	}
	snap := filepath.Join(cache, "models--org--dit", "snapshots", commit)
	var fetched, loaded bool
	for _, e := range eventsOf(evs, "lifecycle.stage") {
		d := dataOf(t, e)
		stage := d["stage"].(map[string]any)
		fetched = fetched || stage["key"] == "init_fetch_weights" && stage["status"] == "completed" && d["pipeline"] == snap
		loaded = loaded || stage["key"] == "init_load_base_model" && strings.Contains(e.Message, "loaded from "+snap)
	}
	if !fetched || !loaded {
		t.Fatalf("fetched %v, loaded %v:\n%s", fetched, loaded, tail(eventsOf(evs, "lifecycle.stage"), 6))
	}
	const weights = "transformer/diffusion_pytorch_model.safetensors"
	var reports []float64
	for _, e := range eventsOf(evs, "download.progress") {
		d := dataOf(t, e)
		if d["repo"] == "org/dit" && d["file"] == weights {
			reports = append(reports, d["percent"].(float64))
		}
	}
	// First report, then one per percent at most, ending at 100 %.
	if len(reports) < 2 || len(reports) > 102 || reports[len(reports)-1] != 100 || !slices.IsSorted(reports) {
		t.Fatalf("progress of %s: %v", weights, reports)
	}
}

func TestJobReportsHubErrors(t *testing.T) {
	hub := hfhubtest.New(t)
	serveDir(t, hub, "org/gated", modeltest.SaveTiny(t, 99))
	hub.Gate("org/gated", "good")
	data := t.TempDir()
	makeDataset(t, data, 1, 16)
	cfg := baseConfig(t.TempDir(), data)
	cfg[optPretrained] = "org/gated"
	evs, st := startJob(t, hubRunner(map[string]string{"HF_ENDPOINT": hub.URL, "HF_HUB_CACHE": t.TempDir()}), cfg).wait(t, nil)
	if st.State != "failed" || !strings.Contains(st.Error, "--pretrained_model_name_or_path org/gated") ||
		!strings.Contains(st.Error, "gated") || !strings.Contains(st.Error, "HF_TOKEN") {
		t.Fatalf("job %s: %q", st.State, st.Error)
	}
	if len(eventsOf(evs, "training.progress")) != 0 {
		t.Fatal("a job without its weights trained")
	}
}

// TestJobEndsDuringDownload: a stop or cancel ends a job whose weights are still
// downloading (the training loop, which reads commands, has not started), and keeps the
// partial file for a later run to resume.
func TestJobEndsDuringDownload(t *testing.T) {
	for _, tc := range []struct {
		cmd  plugins.Command
		want string
	}{{plugins.CommandStop, "stopped"}, {plugins.CommandCancel, "cancelled"}} {
		t.Run(tc.want, func(t *testing.T) {
			hub := hfhubtest.New(t)
			dir := modeltest.SaveTiny(t, 99)
			serveDir(t, hub, "org/dit", dir)
			const weights = "transformer/diffusion_pytorch_model.safetensors"
			hub.StallAfter("org/dit", weights, 100000) // then holds the connection open
			cache := t.TempDir()
			data := t.TempDir()
			makeDataset(t, data, 1, 16)
			cfg := baseConfig(t.TempDir(), data)
			cfg[optPretrained] = "org/dit"
			r := hubRunner(map[string]string{"HF_ENDPOINT": hub.URL, "HF_HUB_CACHE": cache, "HF_HUB_DOWNLOAD_TIMEOUT": "3600"})
			j := startJob(t, r, cfg)
			sent := false
			evs, st := j.wait(t, func(e plugins.Event) {
				if e.Type != plugins.EventDownloadProgress || sent {
					return
				}
				var d plugins.DownloadProgress
				if json.Unmarshal(e.Data, &d) == nil && d.File == weights && d.Done > 0 {
					// A checkpoint request is answered, not queued for a loop that never ran.
					sent = j.host.Command(context.Background(), plugins.CommandCheckpoint) == nil &&
						j.host.Command(context.Background(), tc.cmd) == nil
				}
			})
			if !sent || st.State != tc.want {
				t.Fatalf("sent %v, job %s (%s):\n%s", sent, st.State, st.Error, tail(evs, 6))
			}
			var ignored bool
			for _, e := range eventsOf(evs, plugins.EventNotification) {
				ignored = ignored || strings.Contains(e.Message, "checkpoint ignored")
			}
			if !ignored {
				t.Fatalf("the checkpoint request was not answered:\n%s", tail(evs, 6))
			}
			files, err := hfhubtest.DirFiles(dir)
			if err != nil {
				t.Fatal(err)
			}
			// Other files may have been part-way too (a snapshot downloads several at once).
			if _, err := os.Stat(filepath.Join(cache, "models--org--dit", "blobs", files[weights].Etag()+".incomplete")); err != nil {
				t.Fatalf("the partial weights were not kept: %v", err)
			}
		})
	}
}

// TestValidateWeights: Validate refuses weights a job could not get, without a request to
// the Hub.
func TestValidateWeights(t *testing.T) {
	hub := hfhubtest.New(t)
	local := modeltest.SaveTiny(t, 1)
	serveDir(t, hub, "org/dit", local)
	cached := t.TempDir()
	if _, err := resolveWeights(context.Background(), hubClient(hub, cached, nil), weightSources{Pretrained: "org/dit"}); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	cases := []struct {
		name    string
		opts    map[string]any
		offline bool
		want    []string // "severity option: message part"
	}{
		{"local pipeline", map[string]any{optPretrained: local}, false, nil},
		{"repo id online", map[string]any{optPretrained: "org/other"}, false, nil},
		{"repo id offline, cached", map[string]any{optPretrained: "org/dit"}, true, nil},
		{"repo id offline, not cached", map[string]any{optPretrained: "org/other"}, true,
			[]string{"error --pretrained_model_name_or_path: HF_HUB_OFFLINE"}},
		{"missing path", map[string]any{optPretrained: "./no/such/model"}, false,
			[]string{"error --pretrained_model_name_or_path: ./no/such/model"}},
		{"directory without model_index.json", map[string]any{optPretrained: data}, false,
			[]string{"error --pretrained_model_name_or_path: model_index.json"}},
		{"not a repo id", map[string]any{optPretrained: "a/b/c"}, false, []string{"error --pretrained_model_name_or_path: org/name"}},
		{"an override dit cannot load", map[string]any{optVAE: "org/vae"}, false,
			[]string{"warning --pretrained_vae_model_name_or_path: cannot load"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t.TempDir(), data)
			for k, v := range tc.opts {
				cfg[k] = v
			}
			raw, _ := json.Marshal(cfg)
			env := map[string]string{"HF_ENDPOINT": hub.URL, "HF_HUB_CACHE": cached}
			if tc.offline {
				env["HF_HUB_OFFLINE"] = "1"
			}
			before := len(hub.Requests())
			issues, err := hubRunner(env).Validate(context.Background(), raw)
			if err != nil {
				t.Fatal(err)
			}
			var got []plugins.Issue
			for _, is := range issues {
				if strings.Contains(is.Option, "pretrained") {
					got = append(got, is)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("issues %+v, want %q", got, tc.want)
			}
			for i, w := range tc.want {
				sevOpt, part, _ := strings.Cut(w, ": ")
				if got[i].Severity+" "+got[i].Option != sevOpt || !strings.Contains(got[i].Message, part) {
					t.Errorf("issue %+v, want %q", got[i], w)
				}
				if got[i].Origin != plugins.IssueOriginTrainer { // so the daemon passes warnings on
					t.Errorf("issue %+v is not marked as the trainer's own", got[i])
				}
			}
			if n := len(hub.Requests()) - before; n != 0 {
				t.Fatalf("Validate made %d requests", n)
			}
		})
	}
}

// TestValidateMemoryOfCachedModel: when the base model is a cached repo, Validate's memory
// check estimates that model (its transformer/config.json), not the flavour's.
func TestValidateMemoryOfCachedModel(t *testing.T) {
	hub := hfhubtest.New(t)
	xl, err := model.Flavour("xl")
	if err != nil {
		t.Fatal(err)
	}
	var cfgJSON map[string]any
	b, _ := json.Marshal(xl)
	_ = json.Unmarshal(b, &cfgJSON)
	cfgJSON["_class_name"] = model.ClassName
	b, _ = json.Marshal(cfgJSON)
	hub.Commit("org/xl", "main", map[string]hfhubtest.File{
		"model_index.json":        {Content: []byte(`{"_class_name": "SimpleTunerDiTPipeline", "transformer": ["simpletuner", "` + model.ClassName + `"]}`)},
		"transformer/config.json": {Content: b},
	})
	cache := t.TempDir()
	if _, err := resolveWeights(context.Background(), hubClient(hub, cache, nil), weightSources{Pretrained: "org/xl"}); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	makeDataset(t, data, 1, 16)
	cfg := baseConfig(t.TempDir(), data)
	raw, _ := json.Marshal(cfg)
	r := New(Options{Threads: 1, BLAS: blas.ChoiceAuto, Memory: smallHost(t),
		Getenv: envOf(map[string]string{"HF_ENDPOINT": hub.URL, "HF_HUB_CACHE": cache})})
	if is, err := r.Validate(context.Background(), raw); err != nil || len(errorsOf(is)) != 0 {
		t.Fatalf("tiny on 1 GiB: %v %v", is, err)
	}
	cfg[optPretrained] = "org/xl"
	raw, _ = json.Marshal(cfg)
	is, err := r.Validate(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	if errs := errorsOf(is); len(errs) != 1 || !strings.Contains(errs[0].Message, "the machine has 1.0 GiB of RAM") {
		t.Fatalf("the cached xl model on 1 GiB: %v", errs)
	}
}

// TestHubClientHome: without HOME the default cache is under the account's home directory,
// never relative to the job's working directory.
func TestHubClientHome(t *testing.T) {
	if u, err := user.Current(); err == nil { // an account the database knows
		c := New(Options{Getenv: envOf(nil)}).hubClient()
		if c.Config.CacheDir != filepath.Join(u.HomeDir, ".cache", "huggingface", "hub") {
			t.Fatalf("cache dir %q, home %q", c.Config.CacheDir, u.HomeDir)
		}
	}
	c := New(Options{Getenv: envOf(map[string]string{"HOME": "/home/u"})}).hubClient()
	if c.Config.CacheDir != "/home/u/.cache/huggingface/hub" {
		t.Fatalf("cache dir %q", c.Config.CacheDir)
	}
}
