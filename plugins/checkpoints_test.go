package plugins

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestCheckpointNameRoundTrip: every accepted name maps back to itself, so the trainer's
// scan and the daemon's listing agree on which folders are checkpoints and their steps.
func TestCheckpointNameRoundTrip(t *testing.T) {
	cases := []struct {
		in      string
		step    int
		rolling bool
		ok      bool
	}{
		{"checkpoint-0", 0, false, true},
		{"checkpoint-500", 500, false, true},
		{"checkpoint-300-rolling", 300, true, true},
		{"checkpoint-", 0, false, false},
		{"checkpoints", 0, false, false},
		{"checkpoint-abc", 0, false, false},
		{"checkpoint-0500", 0, false, false},
		{"checkpoint-007", 0, false, false},
		{"checkpoint--5", 0, false, false},
		{"checkpoint-+5", 0, false, false},
		{"checkpoint- 5", 0, false, false},
		{"checkpoint-100.safetensors", 0, false, false},
		{"checkpoint-100-tmp", 0, false, false},
		{"checkpoint-100.corrupt", 0, false, false},
		{"checkpoint-rolling", 0, false, false},
		{"checkpoint-1-rolling-rolling", 0, false, false},
		{"checkpoint-99999999999999999999999", 0, false, false},
		{".tmp-checkpoint-100-ab", 0, false, false},
	}
	for _, c := range cases {
		step, rolling, ok := ParseCheckpointName(c.in)
		if step != c.step || rolling != c.rolling || ok != c.ok {
			t.Errorf("ParseCheckpointName(%q) = %d,%v,%v want %d,%v,%v", c.in, step, rolling, ok, c.step, c.rolling, c.ok)
		}
		if ok {
			if back := CheckpointName(step, rolling); back != c.in {
				t.Errorf("CheckpointName(%d,%v) = %q, want %q", step, rolling, back, c.in)
			}
		}
	}
	for _, step := range []int{0, 1, 9, 10, 400, 1 << 40} {
		for _, rolling := range []bool{false, true} {
			n := CheckpointName(step, rolling)
			if s, r, ok := ParseCheckpointName(n); !ok || s != step || r != rolling {
				t.Errorf("ParseCheckpointName(CheckpointName(%d,%v) = %q) = %d,%v,%v", step, rolling, n, s, r, ok)
			}
		}
	}
}

func FuzzParseCheckpointName(f *testing.F) {
	f.Add("checkpoint-300-rolling")
	f.Add("checkpoint-0500")
	f.Fuzz(func(t *testing.T, name string) {
		step, rolling, ok := ParseCheckpointName(name)
		if ok && CheckpointName(step, rolling) != name {
			t.Fatalf("%q parsed as %d,%v but names %q", name, step, rolling, CheckpointName(step, rolling))
		}
	})
}

// TestCheckpointDataRoundTrip: what the trainer sends decodes to the same value on the
// daemon's side, and the keys are the ones SimpleTuner's clients read.
func TestCheckpointDataRoundTrip(t *testing.T) {
	in := CheckpointData{Path: "/out/checkpoint-40", Step: 40, Rolling: true, Pruned: []string{"/out/checkpoint-20"},
		Checkpoint: &CheckpointInfo{Path: "/out/checkpoint-40", Label: "Checkpoint saved to /out/checkpoint-40"}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"path":"/out/checkpoint-40","step":40,"rolling":true,"pruned":["/out/checkpoint-20"],` +
		`"checkpoint":{"path":"/out/checkpoint-40","label":"Checkpoint saved to /out/checkpoint-40","is_final":false}}`
	if string(b) != want {
		t.Errorf("encoded\n%s\nwant\n%s", b, want)
	}
	var out CheckpointData
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip: %+v, want %+v", out, in)
	}
	// SimpleTuner's flat form (is_final at the top, no nested object) reads too.
	var flat CheckpointData
	if err := json.Unmarshal([]byte(`{"path":"checkpoint-4","step":4,"is_final":true,"remote_path":"s3://b/c","uploaded":true}`), &flat); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(flat, CheckpointData{Path: "checkpoint-4", Step: 4, IsFinal: true, RemotePath: "s3://b/c", Uploaded: true}) {
		t.Errorf("flat form read as %+v", flat)
	}
}
