package diffusion

import (
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"testing"
)

// golden is testdata/golden.json, written by testdata/gen_golden.py from diffusers' schedulers.
type golden struct {
	Training struct {
		X0        string `json:"x0"`
		Eps       string `json:"eps"`
		Shape     []int  `json:"shape"`
		Schedules map[string]struct {
			Config        json.RawMessage `json:"config"`
			Betas         string          `json:"betas"`
			AlphasCumprod string          `json:"alphas_cumprod"`
			AddNoiseT     []int           `json:"add_noise_t"`
			Noisy         string          `json:"noisy"`
		} `json:"schedules"`
	} `json:"training"`
}

func loadGolden(t *testing.T) golden {
	t.Helper()
	var g golden
	readGolden(t, &g)
	return g
}

// readGolden decodes testdata/golden.json into v.
func readGolden(t *testing.T, v any) {
	t.Helper()
	raw, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

// f32s decodes the generator's float32 hex encoding.
func f32s(t *testing.T, s string) []float32 {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b)%4 != 0 {
		t.Fatalf("bad float32 hex (%d chars): %v", len(s), err)
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		u := uint32(b[4*i])<<24 | uint32(b[4*i+1])<<16 | uint32(b[4*i+2])<<8 | uint32(b[4*i+3])
		out[i] = math.Float32frombits(u)
	}
	return out
}

// ulps is the distance between two float32 values in units of the last place.
func ulps(a, b float32) int64 {
	ia, ib := int64(int32(math.Float32bits(a))), int64(int32(math.Float32bits(b)))
	if ia < 0 {
		ia = math.MinInt32 - ia
	}
	if ib < 0 {
		ib = math.MinInt32 - ib
	}
	d := ia - ib
	if d < 0 {
		d = -d
	}
	return d
}

func TestScheduleMatchesDiffusers(t *testing.T) {
	g := loadGolden(t).Training
	x0, eps := f32s(t, g.X0), f32s(t, g.Eps)
	per := g.Shape[1]
	for name, s := range g.Schedules {
		t.Run(name, func(t *testing.T) {
			c, err := ParseSchedulerConfig(s.Config, name)
			if err != nil {
				t.Fatal(err)
			}
			sch, err := NewSchedule(c)
			if err != nil {
				t.Fatal(err)
			}
			betas, abar := f32s(t, s.Betas), f32s(t, s.AlphasCumprod)
			if sch.NumTimesteps() != len(betas) {
				t.Fatalf("T = %d, want %d", sch.NumTimesteps(), len(betas))
			}
			var worstB, worstA int64
			for i := range betas {
				worstB = max(worstB, ulps(float32(sch.Beta(i)), betas[i]))
				worstA = max(worstA, ulps(float32(sch.AlphaBar(i)), abar[i]))
			}
			// Bit-exact: the tables are computed with torch's own float32 arithmetic.
			if worstB != 0 || worstA != 0 {
				t.Errorf("betas off by up to %d ulp, alphas_cumprod by %d ulp", worstB, worstA)
			}
			want := f32s(t, s.Noisy)
			got := make([]float32, len(x0))
			for b, ts := range s.AddNoiseT {
				lo, hi := b*per, (b+1)*per
				sch.AddNoise(got[lo:hi], x0[lo:hi], eps[lo:hi], ts)
			}
			for i := range want {
				if ulps(got[i], want[i]) > 1 {
					t.Fatalf("add_noise[%d] = %v, want %v", i, got[i], want[i])
				}
			}
		})
	}
}
