package model

import (
	"errors"
	"strings"
	"testing"

	"simpletuner/options"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/safetensors"
)

func TestFactorization(t *testing.T) {
	for _, tc := range []struct{ dim, factor, m, n int }{
		{64, 16, 4, 16}, {64, 4, 4, 16}, {256, 16, 16, 16}, {1152, 16, 16, 72},
		{64, -1, 8, 8}, {96, 7, 6, 16}, {13, 4, 1, 13},
	} {
		if m, n := factorization(tc.dim, tc.factor); m != tc.m || n != tc.n {
			t.Errorf("factorization(%d, %d) = (%d, %d), want (%d, %d)", tc.dim, tc.factor, m, n, tc.m, tc.n)
		}
	}
}

// TestAdapterSaveNamesAndDropout checks PEFT/LyCORIS names in the saved adapter file, the
// reload, that LoRA dropout runs in Loss, and config errors.
func TestAdapterSaveNamesAndDropout(t *testing.T) {
	be, err := cpu.New(cpu.Options{Threads: 1, BLAS: blas.ChoiceGonum})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	e := engine.New(be)
	cfg, _ := Flavour("tiny")
	for _, tc := range []struct {
		ac   AdapterConfig
		want string
	}{
		{AdapterConfig{Type: "standard", Rank: 4, Dropout: 0.1}, "transformer.transformer_blocks.0.attn1.to_q.lora_A.weight"},
		{AdapterConfig{Type: "lycoris", Lycoris: mustLycoris(t, `{"algo":"lokr","multiplier":1.0,"full_matrix":true,"linear_alpha":1,"factor":16,
			"apply_preset":{"target_module":["Attention","FeedForward"],"module_algo_map":{"Attention":{"factor":16},"FeedForward":{"factor":8}}}}`)},
			"lycoris_transformer_blocks_1_ff_net_0_proj.lokr_w1"},
	} {
		m, err := New(e, cfg, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.AttachAdapters(tc.ac); err != nil {
			t.Fatal(err)
		}
		ts, err := m.AdapterTensors()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, x := range ts {
			found = found || x.Name == tc.want
		}
		if !found {
			t.Fatalf("%s: %s not among %v", tc.ac.Type, tc.want, m.adapterNames()[:3])
		}
		raw, err := safetensors.Marshal(ts, nil)
		if err != nil {
			t.Fatal(err)
		}
		back, _, _ := safetensors.Unmarshal(raw)
		if err := m.LoadAdapterTensors(back); err != nil {
			t.Fatal(err)
		}
		s := e.Scope()
		b := makeBatch(cfg, 2, 8, 4, 3)
		rng := engine.NewRNG(5)
		l, _, err := m.Loss(e.FromHost(b.x0, b.shape...), b.c, rng, LossOptions{CaptionDropout: 0.5})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Backward(l); err != nil {
			t.Fatal(err)
		}
		s.Close()
		engine.ZeroGrads(m.Trainable())
		m.Free()
	}
	if n, _ := be.Stats(); n != 0 {
		t.Errorf("%d buffers leaked", n)
	}
	m, _ := New(e, cfg, 1)
	defer m.Free()
	if err := m.AttachAdapters(AdapterConfig{Type: "loha", Rank: 4}); !errors.Is(err, ErrConfig) {
		t.Errorf("loha: %v", err)
	}
	if err := m.AttachAdapters(AdapterConfig{Type: "lycoris", Lycoris: options.LycorisConfig{Algo: "locon"}}); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "options.ParseLycoris") {
		t.Errorf("unchecked locon config: %v", err)
	}
}

func mustLycoris(t *testing.T, s string) options.LycorisConfig {
	c, is := options.ParseLycoris([]byte(s))
	if is.HasErrors() {
		t.Fatal(is.Messages())
	}
	return c
}
