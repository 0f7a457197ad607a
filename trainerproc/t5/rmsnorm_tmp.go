package t5

import (
	"math"

	"simpletuner/trainerproc/engine"
)

// rmsNorm TEMPORARY host version until engine.RMSNorm is merged.
func rmsNorm(e *engine.Engine, x, w *engine.Tensor, eps float32) *engine.Tensor {
	v, err := x.ToHost()
	if err != nil {
		panic(hostError{err})
	}
	wv, err := w.ToHost()
	if err != nil {
		panic(hostError{err})
	}
	d := x.Dim(-1)
	for r := 0; r < len(v)/d; r++ {
		row := v[r*d : (r+1)*d]
		var ss float64
		for _, f := range row {
			ss += float64(f) * float64(f)
		}
		rs := float32(1 / math.Sqrt(ss/float64(d)+float64(eps)))
		for i := range row {
			row[i] = row[i] * rs * wv[i]
		}
	}
	return e.FromHost(v, x.Shape()...)
}
