package modeltest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"simpletuner/trainerproc/model"
)

func TestSaveTiny(t *testing.T) {
	a, b := SaveTiny(t, 3), SaveTiny(t, 3)
	cfg, err := model.ReadConfig(a)
	if err != nil || cfg.Flavour != "tiny" {
		t.Fatalf("config %+v %v", cfg, err)
	}
	w := filepath.Join(model.TransformerDir, model.TransformerWeights)
	wa, errA := os.ReadFile(filepath.Join(a, w))
	wb, errB := os.ReadFile(filepath.Join(b, w))
	if errA != nil || errB != nil || !bytes.Equal(wa, wb) {
		t.Fatalf("same seed, different weights (%v, %v)", errA, errB)
	}
}
