package diffusion

import "math"

// SampleTimesteps maps one uniform [0,1) draw per sample to an integer training timestep the
// way SimpleTuner draws them with no timestep bias (uniform weights):
//   - a batch of 1 draws uniformly over 0..T−1 (its torch.multinomial on flat weights);
//   - a larger batch uses its segmented selection: with size = max(T/B, 1), sample i draws
//     uniformly from [end_i, start_i] where start_i = T−1 − i·size and
//     end_i = max(start_i − size, 0), the last sample's end being 0. Neighbouring strata share
//     their boundary timestep, exactly as in SimpleTuner.
//
// Draws outside [0,1) are clamped into it. The result has len(u) entries.
func (s *Schedule) SampleTimesteps(u []float32) []int {
	return segmentedTimesteps(s.NumTimesteps(), u)
}

// segmentedTimesteps is SampleTimesteps for a schedule of n timesteps.
func segmentedTimesteps(n int, u []float32) []int {
	out := make([]int, len(u))
	if len(u) == 1 {
		out[0] = pick(0, n-1, u[0])
		return out
	}
	size := max(n/len(u), 1)
	for i, v := range u {
		start := n - 1 - i*size
		end := 0
		if i != len(u)-1 {
			end = max(start-size, 0)
		}
		if start < end {
			// More samples than timesteps: SimpleTuner's range is then empty past 0 and
			// torch would fail; clamp to the lowest timestep instead.
			start = end
		}
		out[i] = pick(end, start, v)
	}
	return out
}

// pick maps a uniform draw to an integer in [lo, hi].
func pick(lo, hi int, u float32) int {
	k := int(math.Floor(float64(u) * float64(hi-lo+1)))
	return lo + min(max(k, 0), hi-lo)
}

// MinSNRWeight is SimpleTuner's --snr_gamma loss weight for one sample: min(snr, γ)/snr for
// ε-prediction (and sample prediction, which SimpleTuner treats alike) and min(snr, γ)/(snr+1)
// for v-prediction. A γ of 0 or less means the option is off and the weight is 1.
func MinSNRWeight(snr, gamma float64, predictionType string) float64 {
	if gamma <= 0 {
		return 1
	}
	div := snr
	if predictionType == "v_prediction" {
		div = snr + 1
	}
	return math.Min(snr, gamma) / div
}
