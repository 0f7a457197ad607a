package checkpoint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"simpletuner/trainerproc/safetensors"
)

// noSyncFS is the real file system with fsync turned into a no-op. Crash tests simulate a
// crash at the operation level, so real fsyncs would only make them slow on a shared disk.
type noSyncFS struct{ OSFS }

type noSyncFile struct{ *os.File }

func (noSyncFile) Sync() error { return nil }

func (noSyncFS) Create(p string) (WritableFile, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	return noSyncFile{f}, nil
}

func (noSyncFS) SyncDir(string) error { return nil }

// warnings collects warnings in a goroutine-safe way.
type warnings struct {
	mu sync.Mutex
	ws []Warning
}

func (w *warnings) add(x Warning) { w.mu.Lock(); w.ws = append(w.ws, x); w.mu.Unlock() }

func (w *warnings) of(kind WarningKind) []Warning {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Warning
	for _, x := range w.ws {
		if x.Kind == kind {
			out = append(out, x)
		}
	}
	return out
}

func (w *warnings) names(kind WarningKind) []string {
	var out []string
	for _, x := range w.of(kind) {
		out = append(out, x.Name)
	}
	sort.Strings(out)
	return out
}

// sample builds a full fine-tune checkpoint whose content depends on step and marker, with
// values that only survive an exact round trip (NaN payloads, -0, denormals, max uint64).
func sample(t testing.TB, step int, rolling bool, marker int) Checkpoint {
	t.Helper()
	vals := []float32{float32(step), float32(marker), math.Float32frombits(0x7fc00123), float32(math.Copysign(0, -1)),
		1e-45, math.MaxFloat32, 0.1, -3.25}
	w, err := safetensors.FromFloat32("blocks.0.attn.to_q.weight", safetensors.F32, []int{2, 4}, vals)
	if err != nil {
		t.Fatal(err)
	}
	b, err := safetensors.FromFloat32("blocks.0.attn.to_q.bias", safetensors.BF16, []int{2}, []float32{1.5, -2})
	if err != nil {
		t.Fatal(err)
	}
	m1, _ := safetensors.FromFloat32("state.0.exp_avg", safetensors.F32, []int{3}, []float32{1e-8, 2, float32(step)})
	st, _ := safetensors.FromInt64("state.0.step", []int{}, []int64{int64(step)})
	return Checkpoint{
		Step:    step,
		Rolling: rolling,
		State: TrainingState{
			GlobalStep:        step,
			EpochStep:         step % 7,
			Epoch:             marker,
			ExhaustedBackends: []string{},
			Repeats:           map[string]int{"ds": 2},
			LearningRate:      1.2345678901234567e-4,
			LRScheduler:       json.RawMessage(`{"last_epoch":` + itoa(step) + `,"base_lrs":[0.0001]}`),
			RNG:               map[string][]uint64{"noise": {math.MaxUint64, 1 << 63, 12345}, "sampler": {uint64(step)}},
			SamplerStates:     map[string]json.RawMessage{"ds": json.RawMessage(`{"bucket":"1024x1024","pos":17,"seen":["a.png"]}`)},
			Extra:             map[string]json.RawMessage{"ema_decay": json.RawMessage(`0.999`)},
		},
		Tensors: []TensorFile{
			{Path: TransformerWeightsFile, Tensors: []safetensors.Tensor{w, b}, Metadata: map[string]string{"format": "pt"}},
			{Path: OptimizerFile, Tensors: []safetensors.Tensor{m1, st}},
		},
		Files: []Blob{
			{Path: TransformerConfigFile, Data: []byte(`{"_class_name":"PixArtTransformer2DModel","num_layers":2}`)},
			{Path: OptimizerStateFile, Data: []byte(`{"name":"adamw","betas":[0.9,0.999]}`)},
		},
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func mustSave(t testing.TB, m *Manager, ck Checkpoint) Saved {
	t.Helper()
	s, err := m.Save(context.Background(), ck)
	if err != nil {
		t.Fatalf("save %d: %v", ck.Step, err)
	}
	return s
}

// entries lists output_dir names, sorted.
func entries(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func withPrefix(names []string, prefixes ...string) []string {
	var out []string
	for _, n := range names {
		for _, p := range prefixes {
			if strings.HasPrefix(n, p) {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// rewriteManifest recomputes the manifest of dir from what is on disk, so a test can
// damage a file in a way the manifest does not catch and reach the deeper checks.
func rewriteManifest(t testing.TB, dir string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var man Manifest
	if err := json.Unmarshal(raw, &man); err != nil {
		t.Fatal(err)
	}
	man.Files, man.Entries = nil, nil
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == ManifestFile || rel == GuardFile {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		man.Files = append(man.Files, rel)
		man.Entries = append(man.Entries, ManifestEntry{Path: rel, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(man)
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), out, 0o644); err != nil {
		t.Fatal(err)
	}
}
