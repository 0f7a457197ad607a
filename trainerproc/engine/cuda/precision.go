package cuda

import (
	"fmt"
	"strings"
)

// Precision selects how GEMMs are computed; storage and accumulation stay float32.
type Precision uint8

const (
	// PrecisionBF16 rounds GEMM operands to bf16 and accumulates in fp32 (torch autocast's
	// bf16 mode). It is the default on the GPU.
	PrecisionBF16 Precision = iota
	// PrecisionFP32 runs every GEMM in fp32 with TF32 disabled.
	PrecisionFP32
)

// String names the mode as --mixed_precision spells it.
func (p Precision) String() string {
	if p == PrecisionFP32 {
		return "no"
	}
	return "bf16"
}

// ParsePrecision maps a --mixed_precision value to a Precision: "" and "bf16" are
// PrecisionBF16, "no" (and "fp32") PrecisionFP32. fp16 and fp8 are rejected: the engine keeps
// no loss scaler, so they would silently underflow.
func ParsePrecision(s string) (Precision, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "bf16":
		return PrecisionBF16, nil
	case "no", "fp32", "none":
		return PrecisionFP32, nil
	}
	return 0, fmt.Errorf("%w: --mixed_precision=%q (the CUDA trainer supports bf16 and no)", ErrPrecision, s)
}
