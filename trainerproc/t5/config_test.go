package t5

import (
	"errors"
	"reflect"
	"testing"
)

// TestParseConfigFeedForward checks how feed_forward_proj (and an explicit dense_act_fn /
// is_gated_act, which win as they do in the reference) select the feed-forward.
func TestParseConfigFeedForward(t *testing.T) {
	cases := []struct {
		name  string
		json  string
		act   Activation
		gated bool
		err   error
	}{
		{"default relu", `{}`, ActReLU, false, nil},
		{"gated-gelu is the tanh approximation", `{"feed_forward_proj":"gated-gelu"}`, ActGELUTanh, true, nil},
		{"gated-silu", `{"feed_forward_proj":"gated-silu"}`, ActSiLU, true, nil},
		{"plain gelu is exact", `{"feed_forward_proj":"gelu"}`, ActGELU, false, nil},
		{"gated-relu", `{"feed_forward_proj":"gated-relu"}`, ActReLU, true, nil},
		{"saved derived keys", `{"feed_forward_proj":"gated-gelu","dense_act_fn":"gelu_new","is_gated_act":true}`, ActGELUTanh, true, nil},
		{"explicit dense_act_fn wins", `{"feed_forward_proj":"gated-gelu","dense_act_fn":"gelu_pytorch_tanh"}`, ActGELUTanh, true, nil},
		{"swish alias", `{"feed_forward_proj":"gated-swish"}`, ActSiLU, true, nil},
		{"unknown activation", `{"feed_forward_proj":"gated-tanh"}`, "", false, ErrConfig},
		{"not gated prefix", `{"feed_forward_proj":"fancy-gelu"}`, "", false, ErrConfig},
		{"three parts", `{"feed_forward_proj":"gated-gelu-new"}`, "", false, ErrConfig},
		{"empty activation", `{"feed_forward_proj":"gated-"}`, "", false, ErrConfig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(c.json))
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("err = %v, want %v", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Act != c.act || cfg.Gated != c.gated {
				t.Errorf("act %q gated %v, want %q %v", cfg.Act, cfg.Gated, c.act, c.gated)
			}
		})
	}
}

// TestParseConfigSizes checks defaults, the inner width and refused sizes.
func TestParseConfigSizes(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"d_model":4096,"d_kv":64,"num_heads":64,"d_ff":10240,"num_layers":24,"feed_forward_proj":"gated-gelu"}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.VocabSize != 32128 || cfg.RelativeAttentionNumBuckets != 32 || cfg.RelativeAttentionMaxDistance != 128 ||
		cfg.LayerNormEpsilon != 1e-6 || cfg.PadTokenID != 0 || cfg.EOSTokenID != 1 || cfg.InnerDim() != 4096 {
		t.Errorf("defaults: %+v", cfg)
	}
	// T5-v1.1-XXL's encoder: 4,762,310,656 weights with the embedding counted once.
	if got := cfg.ParamCount(); got != 4_762_310_656 {
		t.Errorf("XXL param count %d", got)
	}
	for _, bad := range []string{`{"d_model":0}`, `{"num_heads":-1}`, `{"relative_attention_num_buckets":2}`,
		`{"layer_norm_epsilon":0}`, `{"d_model":"wide"}`, `not json`} {
		if _, err := ParseConfig([]byte(bad)); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", bad, err)
		}
	}
}

// TestConfigJSON checks a parsed config is written back byte for byte and a config built
// in code parses back to itself.
func TestConfigJSON(t *testing.T) {
	raw := []byte("{\n  \"d_model\": 32, \"feed_forward_proj\": \"gated-gelu\", \"custom_key\": [1, 2]\n}\n")
	cfg, err := ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.JSON()
	if err != nil || string(out) != string(raw) {
		t.Fatalf("JSON() = %q, %v; want the input back", out, err)
	}
	built := Config{VocabSize: 64, DModel: 16, DKV: 4, NumHeads: 2, DFF: 24, NumLayers: 2,
		RelativeAttentionNumBuckets: 8, RelativeAttentionMaxDistance: 20, LayerNormEpsilon: 1e-6,
		FeedForwardProj: "gated-silu", EOSTokenID: 1, Act: ActSiLU, Gated: true}
	out, err = built.JSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseConfig(out)
	if err != nil {
		t.Fatal(err)
	}
	back.raw = nil
	if !reflect.DeepEqual(back, built) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, built)
	}
}
