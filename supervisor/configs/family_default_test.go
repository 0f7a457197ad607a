package configs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"simpletuner/options"
)

// TestNewEnvironmentIsSizedForItsFamily: a dit environment starts at the family's default
// resolution, in its config and its starter dataloader (with SimpleTuner's image-size
// bounds scaled to it), not SimpleTuner's 1024; a --resolution the user put in
// default.json is kept; a dataloader written later follows the environment.
func TestNewEnvironmentIsSizedForItsFamily(t *testing.T) {
	s := newService(t)
	want := options.Default().DefaultResolution("dit")
	if want >= 1024 {
		t.Fatalf("dit's default resolution is %g", want)
	}
	c := seedEnv(t, s)
	if got := c.Config["--resolution"]; got != want {
		t.Errorf("config --resolution = %v, want %g", got, want)
	}
	dir := filepath.Join(s.Dir(), "pixart-api-demo")
	num := func(v any) string { return fmt.Sprint(v) }
	if got := readFile(t, filepath.Join(dir, "config.json"))["--resolution"]; num(got) != num(want) {
		t.Errorf("stored --resolution = %v, want %g", got, want)
	}
	dl, err := readJSON(filepath.Join(dir, "multidatabackend.json"))
	if err != nil {
		t.Fatal(err)
	}
	img := dl.([]any)[0].(map[string]any)
	if num(img["resolution"]) != num(want) || img["resolution_type"] != "pixel_area" || num(img["minimum_image_size"]) != num(want/4) ||
		num(img["maximum_image_size"]) != num(want*4) || num(img["target_downsample_size"]) != num(want) {
		t.Errorf("starter dataset %v", img)
	}

	// A dataloader created afterwards for an environment follows its resolution.
	if err := os.Remove(filepath.Join(dir, "multidatabackend.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateDataloader("pixart-api-demo", DataloaderRequest{}); err != nil {
		t.Fatal(err)
	}
	dl, _ = readJSON(filepath.Join(dir, "multidatabackend.json"))
	if got := dl.([]any)[0].(map[string]any)["resolution"]; num(got) != num(want) {
		t.Errorf("regenerated dataloader resolution %v, want %g", got, want)
	}

	// The user's own default.json resolution wins.
	def := readFile(t, filepath.Join(s.Dir(), "default.json"))
	def["--resolution"] = 48
	if err := writeJSONAtomic(filepath.Join(s.Dir(), "default.json"), def); err != nil {
		t.Fatal(err)
	}
	c, err = s.CreateEnvironment(EnvironmentRequest{Name: "mine", ModelFamily: sp("dit"), ModelType: sp("full")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Config["--resolution"]; num(got) != "48" {
		t.Errorf("default.json's 48 became %v", got)
	}
}
