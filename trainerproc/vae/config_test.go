package vae

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// tinyConfig is the architecture of the golden fixture (testdata/tiny/config.json).
func tinyConfig() Config {
	c := DefaultConfig()
	c.DownBlockTypes = []string{downBlockType, downBlockType, downBlockType}
	c.UpBlockTypes = []string{upBlockType, upBlockType, upBlockType}
	c.BlockOutChannels = []int{16, 32, 32}
	c.LayersPerBlock = 2
	c.NormNumGroups = 8
	c.SampleSize = 64
	c.ScalingFactor = 0.13025
	return c
}

func TestParseConfig(t *testing.T) {
	sdxl := `{"_class_name":"AutoencoderKL","_diffusers_version":"0.20.0","act_fn":"silu",
	"block_out_channels":[128,256,512,512],"down_block_types":["DownEncoderBlock2D","DownEncoderBlock2D","DownEncoderBlock2D","DownEncoderBlock2D"],
	"force_upcast":false,"in_channels":3,"latent_channels":4,"layers_per_block":2,"norm_num_groups":32,"out_channels":3,
	"sample_size":1024,"scaling_factor":0.13025,"shift_factor":null,
	"up_block_types":["UpDecoderBlock2D","UpDecoderBlock2D","UpDecoderBlock2D","UpDecoderBlock2D"]}`
	flux := strings.Replace(strings.Replace(sdxl, `"shift_factor":null`, `"shift_factor":0.1159,"use_quant_conv":false,"use_post_quant_conv":false`, 1),
		`"latent_channels":4`, `"latent_channels":16`, 1)
	tests := []struct {
		name    string
		json    string
		wantErr string // substring; "" means valid
		check   func(t *testing.T, c Config)
	}{
		{name: "sdxl", json: sdxl, check: func(t *testing.T, c Config) {
			// Fields absent from the file take diffusers' defaults.
			if !c.UseQuantConv || !c.UsePostQuantConv || !c.MidBlockAddAttention || c.Shift() != 0 || c.Downscale() != 8 {
				t.Errorf("defaults not applied: %+v", c)
			}
			want := SDXLConfig()
			if !slices.Equal(c.BlockOutChannels, want.BlockOutChannels) || c.ScalingFactor != want.ScalingFactor || c.LayersPerBlock != 2 {
				t.Errorf("parsed %+v, want the SDXL architecture", c)
			}
		}},
		{name: "flux", json: flux, check: func(t *testing.T, c Config) {
			if c.UseQuantConv || c.UsePostQuantConv || c.Shift() != 0.1159 || c.LatentChannels != 16 {
				t.Errorf("parsed %+v", c)
			}
		}},
		{name: "empty object is diffusers' default", json: `{}`, check: func(t *testing.T, c Config) {
			if c.ScalingFactor != 0.18215 || !slices.Equal(c.BlockOutChannels, []int{64}) || c.NormNumGroups != 32 {
				t.Errorf("parsed %+v", c)
			}
		}},
		{name: "no attention", json: `{"block_out_channels":[32],"mid_block_add_attention":false}`, check: func(t *testing.T, c Config) {
			if c.MidBlockAddAttention {
				t.Error("mid_block_add_attention false ignored")
			}
		}},
		{name: "malformed", json: `{"block_out_channels":`, wantErr: "unexpected EOF"},
		{name: "wrong type", json: `{"layers_per_block":"two"}`, wantErr: "layers_per_block"},
		{name: "other class", json: `{"_class_name":"AutoencoderTiny"}`, wantErr: `"AutoencoderTiny"`},
		{name: "block count", json: `{"block_out_channels":[64,64]}`, wantErr: "2 block_out_channels but 1 down_block_types"},
		{name: "block type", json: `{"down_block_types":["DownBlock2D"]}`, wantErr: `down_block_types[0] = "DownBlock2D"`},
		{name: "up block type", json: `{"up_block_types":["UpBlock2D"]}`, wantErr: `up_block_types[0] = "UpBlock2D"`},
		{name: "activation", json: `{"act_fn":"gelu"}`, wantErr: `act_fn "gelu"`},
		{name: "groups", json: `{"block_out_channels":[48]}`, wantErr: "not a positive multiple of norm_num_groups 32"},
		{name: "layers", json: `{"layers_per_block":0}`, wantErr: "layers_per_block 0"},
		{name: "latents", json: `{"latent_channels":0}`, wantErr: "latent_channels 0"},
		{name: "no blocks", json: `{"block_out_channels":[],"down_block_types":[],"up_block_types":[]}`, wantErr: "block_out_channels is empty"},
		{name: "scaling", json: `{"scaling_factor":0}`, wantErr: "scaling_factor is 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.json))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, c)
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want ErrConfig containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestArchitecture checks the config → architecture decisions through the parameter list:
// which resnets get a shortcut, which blocks down- or upsample, how many resnets a decoder
// block has, and the optional quant convs and mid attention.
func TestArchitecture(t *testing.T) {
	noAttn := tinyConfig()
	noAttn.MidBlockAddAttention = false
	noQuant := tinyConfig()
	noQuant.UseQuantConv, noQuant.UsePostQuantConv = false, false
	oneBlock := tinyConfig()
	oneBlock.BlockOutChannels, oneBlock.DownBlockTypes, oneBlock.UpBlockTypes = []int{16}, []string{downBlockType}, []string{upBlockType}
	tests := []struct {
		name    string
		cfg     Config
		params  int // total parameter count; 0 = not checked
		present []string
		absent  []string
		shapes  map[string][]int
	}{
		{
			name: "sdxl", cfg: SDXLConfig(),
			params: 83653863, // the published SDXL VAE's parameter count
			present: []string{
				"encoder.down_blocks.1.resnets.0.conv_shortcut.weight", // 128 → 256
				"encoder.down_blocks.2.downsamplers.0.conv.weight",
				"decoder.up_blocks.0.resnets.2.conv1.weight",         // layers_per_block + 1 resnets
				"decoder.up_blocks.2.resnets.0.conv_shortcut.weight", // 512 → 256
				"decoder.up_blocks.3.resnets.0.conv_shortcut.weight", // 256 → 128
				"encoder.mid_block.attentions.0.to_out.0.bias",
				"quant_conv.weight", "post_quant_conv.bias",
			},
			absent: []string{
				"encoder.down_blocks.0.resnets.0.conv_shortcut.weight", // 128 → 128
				"encoder.down_blocks.3.resnets.0.conv_shortcut.weight", // 512 → 512
				"encoder.down_blocks.3.downsamplers.0.conv.weight",     // last block
				"decoder.up_blocks.3.upsamplers.0.conv.weight",
				"decoder.up_blocks.1.resnets.0.conv_shortcut.weight", // 512 → 512
				"decoder.up_blocks.0.resnets.3.conv1.weight",
			},
			shapes: map[string][]int{
				"encoder.conv_in.weight":                         {128, 3, 3, 3},
				"encoder.conv_out.weight":                        {8, 512, 3, 3},
				"quant_conv.weight":                              {8, 8, 1, 1},
				"post_quant_conv.weight":                         {4, 4, 1, 1},
				"decoder.conv_in.weight":                         {512, 4, 3, 3},
				"decoder.conv_out.weight":                        {3, 128, 3, 3},
				"decoder.conv_norm_out.weight":                   {128},
				"encoder.mid_block.attentions.0.to_q.weight":     {512, 512},
				"encoder.mid_block.attentions.0.group_norm.bias": {512},
				"decoder.up_blocks.2.resnets.0.conv1.weight":     {256, 512, 3, 3},
				"decoder.up_blocks.2.resnets.0.norm1.weight":     {512},
			},
		},
		{
			name: "tiny", cfg: tinyConfig(),
			present: []string{"encoder.down_blocks.1.resnets.0.conv_shortcut.weight", "decoder.up_blocks.2.resnets.0.conv_shortcut.weight",
				"encoder.down_blocks.1.downsamplers.0.conv.bias", "decoder.up_blocks.1.upsamplers.0.conv.bias"},
			absent: []string{"encoder.down_blocks.2.resnets.0.conv_shortcut.weight", "encoder.down_blocks.2.downsamplers.0.conv.weight",
				"decoder.up_blocks.2.upsamplers.0.conv.weight", "decoder.up_blocks.1.resnets.0.conv_shortcut.weight"},
			shapes: map[string][]int{"encoder.down_blocks.1.resnets.0.conv_shortcut.weight": {32, 16, 1, 1}},
		},
		{name: "no mid attention", cfg: noAttn,
			present: []string{"encoder.mid_block.resnets.1.conv2.weight"},
			absent:  []string{"encoder.mid_block.attentions.0.to_q.weight", "decoder.mid_block.attentions.0.group_norm.weight"}},
		{name: "no quant convs", cfg: noQuant, absent: []string{"quant_conv.weight", "post_quant_conv.weight"}},
		{name: "one block", cfg: oneBlock,
			absent: []string{"encoder.down_blocks.0.downsamplers.0.conv.weight", "decoder.up_blocks.0.upsamplers.0.conv.weight"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			byName := map[string][]int{}
			total := 0
			for _, sp := range tc.cfg.paramSpecs() {
				if _, dup := byName[sp.name]; dup {
					t.Errorf("%s listed twice", sp.name)
				}
				byName[sp.name] = sp.shape
				n := 1
				for _, d := range sp.shape {
					n *= d
				}
				total += n
			}
			if tc.params != 0 && total != tc.params {
				t.Errorf("%d parameters, want %d", total, tc.params)
			}
			for _, n := range tc.present {
				if _, ok := byName[n]; !ok {
					t.Errorf("%s missing", n)
				}
			}
			for _, n := range tc.absent {
				if _, ok := byName[n]; ok {
					t.Errorf("%s present", n)
				}
			}
			for n, want := range tc.shapes {
				if got := byName[n]; !slices.Equal(got, want) {
					t.Errorf("%s: shape %v, want %v", n, got, want)
				}
			}
		})
	}
}

func TestCanonicalName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"encoder.mid_block.attentions.0.query.weight", "encoder.mid_block.attentions.0.to_q.weight"},
		{"encoder.mid_block.attentions.0.key.bias", "encoder.mid_block.attentions.0.to_k.bias"},
		{"decoder.mid_block.attentions.0.value.weight", "decoder.mid_block.attentions.0.to_v.weight"},
		{"decoder.mid_block.attentions.0.proj_attn.bias", "decoder.mid_block.attentions.0.to_out.0.bias"},
		{"decoder.mid_block.attentions.0.group_norm.bias", "decoder.mid_block.attentions.0.group_norm.bias"},
		{"encoder.mid_block.attentions.0.to_q.weight", "encoder.mid_block.attentions.0.to_q.weight"},
		{"encoder.conv_in.weight", "encoder.conv_in.weight"},
		{"encoder.query.weight", "encoder.query.weight"}, // only inside an attention block
		{"x.attentions.0", "x.attentions.0"},
	}
	for _, tc := range tests {
		got, legacy := canonicalName(tc.in)
		if got != tc.want || legacy != (tc.in != tc.want) {
			t.Errorf("canonicalName(%q) = %q, %v; want %q", tc.in, got, legacy, tc.want)
		}
	}
}

func ExampleConfig_Downscale() {
	fmt.Println(SDXLConfig().Downscale())
	// Output: 8
}
