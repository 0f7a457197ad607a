package encoders

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"simpletuner/trainerproc/family/encoders/encoderstest"
)

// ids is the VAE's and the T5 pipeline's identities of a pipeline directory.
func ids(t *testing.T, dir, variant, preprocess string) [2]string {
	t.Helper()
	v, err := VAEIdentity(filepath.Join(dir, "vae"), variant)
	if err != nil {
		t.Fatal(err)
	}
	x, err := T5Identity(dir, preprocess)
	if err != nil {
		t.Fatal(err)
	}
	return [2]string{v, x}
}

// TestIdentity: what changes an encoder's outputs changes its identity (config, weights,
// variant, tokenizer, preprocessing), what does not (a config rewritten with the same
// bytes) does not; a plain weights file is named by header, size and mtime.
func TestIdentity(t *testing.T) {
	base := encoderstest.PipelineDir(t, 1)
	want := ids(t, base, "", "")
	if !strings.HasPrefix(want[0], "vae:") || !strings.HasPrefix(want[1], "t5:") {
		t.Fatalf("identities %q", want)
	}
	later := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name                string
		variant, preprocess string
		change              func(t *testing.T, dir string)
		vaeSame, t5Same     bool
	}{
		{name: "unchanged", vaeSame: true, t5Same: true},
		{name: "config rewritten with the same bytes", vaeSame: true, t5Same: true, change: func(t *testing.T, dir string) {
			rewrite(t, filepath.Join(dir, "vae", "config.json"), func(b []byte) []byte { return b })
		}},
		{name: "vae config", t5Same: true, change: func(t *testing.T, dir string) {
			rewrite(t, filepath.Join(dir, "vae", "config.json"), func(b []byte) []byte { return append(b, ' ') })
		}},
		{name: "vae weights touched", t5Same: true, change: func(t *testing.T, dir string) {
			touch(t, filepath.Join(dir, "vae", "diffusion_pytorch_model.safetensors"), later)
		}},
		{name: "vae variant", variant: "fp16", t5Same: true},
		{name: "t5 weights touched", vaeSame: true, change: func(t *testing.T, dir string) {
			touch(t, filepath.Join(dir, "text_encoder", "model.safetensors"), later)
		}},
		{name: "tokenizer", vaeSame: true, change: func(t *testing.T, dir string) {
			rewrite(t, filepath.Join(dir, "tokenizer", "spiece.model"), func(b []byte) []byte { b[len(b)-1] ^= 1; return b })
		}},
		{name: "preprocessing", preprocess: "pixart-clean", vaeSame: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(base)); err != nil {
				t.Fatal(err)
			}
			// CopyFS gives new mtimes: put the originals' back so only tc.change differs.
			for _, f := range []string{"vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"} {
				st, err := os.Stat(filepath.Join(base, f))
				if err != nil {
					t.Fatal(err)
				}
				touch(t, filepath.Join(dir, f), st.ModTime())
			}
			if tc.change != nil {
				tc.change(t, dir)
			}
			got := ids(t, dir, tc.variant, tc.preprocess)
			if (got[0] == want[0]) != tc.vaeSame || (got[1] == want[1]) != tc.t5Same {
				t.Errorf("vae same %v (want %v), t5 same %v (want %v)", got[0] == want[0], tc.vaeSame, got[1] == want[1], tc.t5Same)
			}
		})
	}
}

// TestIdentityHubCache: in the Hugging Face cache layout a weights file is its blob's name
// (the content hash), whatever snapshot links to it and whatever its mtime.
func TestIdentityHubCache(t *testing.T) {
	src := encoderstest.PipelineDir(t, 1)
	cache := t.TempDir()
	weights, err := os.ReadFile(filepath.Join(src, "vae", "diffusion_pytorch_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	snapshot := func(rev, blob string) string {
		dir := filepath.Join(cache, "snapshots", rev, "vae")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		copyTo(t, filepath.Join(src, "vae", "config.json"), filepath.Join(dir, "config.json"))
		blobPath := filepath.Join(cache, "blobs", blob)
		if err := os.MkdirAll(filepath.Dir(blobPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(blobPath, weights, 0o644); err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, blobPath)
		if err := os.Symlink(rel, filepath.Join(dir, "diffusion_pytorch_model.safetensors")); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	blobA, blobB := strings.Repeat("a1", 32), strings.Repeat("b2", 32)
	a := snapshot("rev1", blobA)
	b := snapshot("rev2", blobA) // another snapshot of the same blob (rewritten: new mtime)
	c := snapshot("rev3", blobB)
	idA, _ := VAEIdentity(a, "")
	idB, _ := VAEIdentity(b, "")
	idC, _ := VAEIdentity(c, "")
	if idA == "" || idA != idB || idA == idC {
		t.Fatalf("identities: same blob %q / %q, other blob %q", idA, idB, idC)
	}
	if fid, err := fileIdentity(filepath.Join(a, "diffusion_pytorch_model.safetensors")); err != nil || fid != "blob:"+blobA {
		t.Fatalf("fileIdentity = %q, %v", fid, err)
	}
}

// TestIdentityErrors: missing files and a file that is not safetensors are ErrIdentity.
func TestIdentityErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := VAEIdentity(dir, ""); !errors.Is(err, ErrIdentity) {
		t.Errorf("empty dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := VAEIdentity(dir, ""); !errors.Is(err, ErrIdentity) {
		t.Errorf("no weights: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "diffusion_pytorch_model.safetensors"), []byte("\xff\xff\xff\xff\xff\xff\xff\x7fjunk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := VAEIdentity(dir, ""); !errors.Is(err, ErrIdentity) {
		t.Errorf("not safetensors: %v", err)
	}
	if _, err := LoadT5(encoderstest.NewEngine(t), dir, T5Options{Preprocess: strings.ToLower}); !errors.Is(err, ErrIdentity) {
		t.Errorf("unnamed preprocessing: %v", err)
	}
}

// TestVAEEncode: the adapter's posterior is the model's Encode, on the host.
func TestVAEEncode(t *testing.T) {
	e := encoderstest.NewEngine(t)
	dir := encoderstest.PipelineDir(t, 1)
	v, err := LoadVAE(e, filepath.Join(dir, "vae"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Free()
	b, h, w := 2, 16, 24
	pix := make([]float32, b*3*h*w)
	for i := range pix {
		pix[i] = float32(i%29)/14 - 1
	}
	p, err := v.Encode(pix, b, h, w)
	if err != nil {
		t.Fatal(err)
	}
	x := e.FromHost(pix, b, 3, h, w)
	mean, logvar, err := v.Model.Encode(x)
	if err != nil {
		t.Fatal(err)
	}
	wantMean, _ := mean.ToHost()
	wantLV, _ := logvar.ToHost()
	x.Free()
	mean.Free()
	logvar.Free()
	if p.B != b || p.C != 4 || p.H != h/4 || p.W != w/4 || !slices.Equal(p.Mean, wantMean) || !slices.Equal(p.LogVar, wantLV) {
		t.Fatalf("posterior %dx%dx%dx%d differs from the model's", p.B, p.C, p.H, p.W)
	}
	if v.Identity() == "" {
		t.Fatal("empty identity")
	}
}

// TestT5Encode: the adapter returns the pipeline's hidden states and each caption's real
// token count (its mask's ones).
func TestT5Encode(t *testing.T) {
	e := encoderstest.NewEngine(t)
	dir := encoderstest.PipelineDir(t, 1)
	enc, err := LoadT5(e, dir, T5Options{Preprocess: strings.ToLower, PreprocessName: "lower"})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Free()
	caps := []string{"A photo of a cat", "", "a much longer caption that will be cut at the maximum length of tokens"}
	got, err := enc.Encode(caps, 8)
	if err != nil {
		t.Fatal(err)
	}
	want, err := enc.Pipeline.Encode(caps, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Free()
	hidden, _ := want.Hidden.ToHost()
	mask, _ := want.Mask.ToHost()
	if got.B != 3 || got.L != 8 || got.D != 32 || !slices.Equal(got.Hidden, hidden) {
		t.Fatalf("embeddings %dx%dx%d differ from the pipeline's", got.B, got.L, got.D)
	}
	for i, n := range got.Lengths {
		for j := range got.L {
			if (j < n) != (mask[i*got.L+j] == 1) {
				t.Fatalf("caption %d: length %d, mask %v", i, n, mask[i*got.L:(i+1)*got.L])
			}
		}
	}
	if got.Lengths[1] != 1 || got.Lengths[2] != 8 {
		t.Fatalf("lengths %v: the empty caption is </s> alone, the long one fills 8", got.Lengths)
	}
	if m, err := T5Memory(dir, 3, 8); err != nil || m.Total <= 0 {
		t.Fatalf("T5Memory = %+v, %v", m, err)
	}
	if _, err := T5Memory(t.TempDir(), 1, 8); err == nil {
		t.Fatal("T5Memory of an empty dir")
	}
}

func rewrite(t *testing.T, path string, f func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

func touch(t *testing.T, path string, when time.Time) {
	t.Helper()
	if err := os.Chtimes(path, when, when); err != nil {
		t.Fatal(err)
	}
}

func copyTo(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
