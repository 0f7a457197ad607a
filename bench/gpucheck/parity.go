//go:build cuda

package main

import (
	"flag"
	"fmt"

	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/engine/cuda"
)

// runParity prints one PARITY line per op and variant and fails when any op is out of
// tolerance, wrote NaN or left an output unwritten.
func runParity(args []string) error {
	fs := flag.NewFlagSet("parity", flag.ContinueOnError)
	seed := fs.Uint64("seed", 1, "input seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ref, err := cpu.New(cpu.Options{})
	if err != nil {
		return err
	}
	defer ref.Close()
	bad := 0
	for _, prec := range []cuda.Precision{cuda.PrecisionFP32, cuda.PrecisionBF16} {
		g, err := cuda.New(cuda.Options{Precision: prec})
		if err != nil {
			return err
		}
		fmt.Printf("# %s vs %s\n", g.Describe(), ref.Describe())
		for _, r := range cuda.CheckParity(g, ref, *seed) {
			status := "PASS"
			if !r.OK() {
				status = "FAIL"
				bad++
			}
			extra := r.Note
			if r.Err != nil {
				extra += " error: " + r.Err.Error()
			}
			if r.NaN {
				extra += " NaN/unwritten output"
			}
			fmt.Printf("PARITY\t%s\t%s\t%.2e\t%.0e\t%s\t%s\n", r.Op, r.Precision, r.RelErr, r.Tol, status, extra)
		}
		if n := g.LiveBuffers(); n != 0 {
			fmt.Printf("PARITY\tleak\t%s\t%d\t0\tFAIL\tbuffers not freed\n", prec, n)
			bad++
		}
		if err := g.Close(); err != nil {
			return err
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d parity checks failed", bad)
	}
	return nil
}
