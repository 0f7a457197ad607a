package api

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestListCheckpointsNames: the listing shows exactly the folders the trainer would
// resume from — names as the contract spells them — so a step is never listed under a
// second spelling (checkpoint-0500, checkpoint-+5) that the trainer ignores.
func TestListCheckpointsNames(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"checkpoint-10", "checkpoint-7-rolling", "checkpoint-0500", "checkpoint-+5", "checkpoint-007-rolling",
		"checkpoint-3-tmp", "checkpoint-", "checkpoints", ".tmp-checkpoint-9-x"} {
		if err := os.Mkdir(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	list, err := listCheckpoints(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range list {
		got = append(got, c.Name)
	}
	if want := []string{"checkpoint-10", "checkpoint-7-rolling"}; !slices.Equal(got, want) {
		t.Errorf("listed %q, want %q", got, want)
	}
	if len(list) == 2 && (list[0].Step != 10 || list[1].Step != 7) {
		t.Errorf("steps %d, %d; want 10, 7", list[0].Step, list[1].Step)
	}
}
