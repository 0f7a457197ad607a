// Package modeltest makes model directories for tests outside package model: a small dit
// saved in the diffusers layout, as a local --pretrained_model_name_or_path or as the
// files of a fake Hub repo.
package modeltest

import (
	"testing"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/model"
)

// SaveTiny saves a tiny-flavour dit initialised from seed into a new temporary directory
// and returns it. The same seed gives the same files.
func SaveTiny(t testing.TB, seed uint64) string {
	t.Helper()
	be, err := cpu.New(cpu.Options{Threads: 1, BLAS: blas.ChoiceGonum})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	cfg, err := model.Flavour("tiny")
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(engine.New(be), cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}
