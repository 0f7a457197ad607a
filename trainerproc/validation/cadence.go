package validation

// PreviewSteps returns the 1-based sampler steps at which an intermediate image is shown
// for a sampling run of total steps with validation_preview_steps = every: step 1, then
// every `every` steps after it (1+every, 1+2·every, …), then the last step. This is the
// tutorial's cadence (1,5,9,13,17,20 for every=4 and 20 steps); SimpleTuner's code emits
// 1,4,8,… instead, and the tutorial wins (docs/compatibility.md §7).
func PreviewSteps(total, every int) []int {
	if total <= 0 {
		return nil
	}
	if every < 1 {
		every = 1
	}
	var out []int
	for s := 1; s <= total; s += every {
		out = append(out, s)
	}
	if out[len(out)-1] != total {
		out = append(out, total)
	}
	return out
}

// IsPreviewStep reports whether step (1-based) is in PreviewSteps(total, every).
func IsPreviewStep(step, total, every int) bool {
	if step < 1 || step > total {
		return false
	}
	if every < 1 {
		every = 1
	}
	return step == total || (step-1)%every == 0
}
