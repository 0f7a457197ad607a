package cuda

import (
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strings"
)

// ptxFS holds the kernels compiled by `make kernels` (kernels/*.cu → kernels/*.ptx).
//
//go:embed kernels/*.ptx
var ptxFS embed.FS

// PTXModules returns the embedded PTX modules by file name (e.g. "attention.ptx").
func PTXModules() (map[string]string, error) {
	ents, err := fs.Glob(ptxFS, "kernels/*.ptx")
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(ents))
	for _, e := range ents {
		b, err := ptxFS.ReadFile(e)
		if err != nil {
			return nil, err
		}
		out[strings.TrimPrefix(e, "kernels/")] = string(b)
	}
	return out, nil
}

// flashDims are the head dimensions the flash attention kernels are compiled for; a head
// dimension runs on the smallest one at least as large. Larger heads take the unfused path.
var flashDims = []int{16, 32, 64, 80, 128}

// flashDim returns the compiled head size for dh, or false when dh is too large.
func flashDim(dh int) (int, bool) {
	for _, d := range flashDims {
		if dh <= d {
			return d, true
		}
	}
	return 0, false
}

// kernelSigs declares every kernel's parameters (see the arg* kinds). The Go side checks
// each launch against it and a test checks it against the PTX, so the two cannot drift.
var kernelSigs = func() map[string]string {
	m := map[string]string{
		// elementwise.cu
		"fill_f32":         "pfl",
		"copy2d_f32":       "pipiii",
		"permute_f32":      "ppli" + "iiiiii" + "iiiiii",
		"binary_f32":       "pppiiiiii",
		"affine_f32":       "ppffl",
		"axpy_f32":         "ppfl",
		"expand_f32":       "ppiiiif",
		"bias_act_f32":     "pppiii",
		"bias_act_bwd_f32": "ppppiii",
		"cast_f32_bf16":    "ppl",
		"cast_bf16_f32":    "ppl",
		// reduce.cu
		"reduce_cols_f32": "ppiiiiif",
		"reduce_rows_f32": "ppiiiiif",
		// norm.cu
		"layernorm_f32":            "ppppppiiiff",
		"layernorm_bwd_f32":        "ppppppiiif",
		"layernorm_param_grad_f32": "ppppppiii",
		"softmax_f32":              "ppii",
		"softmax_bwd_f32":          "pppii",
		"attn_mask_softmax_f32":    "pppiiii",
		"attn_bwd_prob_f32":        "pppiiii",
		"attn_bwd_ds_f32":          "ppppiiii",
		"rmsnorm_f32":              "ppppiif",
		"rmsnorm_bwd_f32":          "pppppii",
		"rmsnorm_weight_grad_f32":  "ppppii",
		// groupnorm.cu
		"groupnorm_part_f32":       "ppilil",
		"groupnorm_stats_f32":      "pppililf",
		"groupnorm_apply_f32":      "pppppp" + "iiil",
		"groupnorm_bwd_part_f32":   "ppppp" + "iiiii",
		"groupnorm_bwd_group_f32":  "pppiiii",
		"groupnorm_bwd_dx_f32":     "ppppppp" + "iiil",
		"groupnorm_param_grad_f32": "pppiii",
		// conv.cu
		"im2col_f32":               "pp" + "iiiiiiiiiiii",
		"col2im_f32":               "pp" + "iiiiiiiiiiiiiii",
		"upsample_nearest_f32":     "ppiiii",
		"upsample_nearest_bwd_f32": "ppiiii",
		// attention.cu
		"attn_bwd_delta_f32": "pppli",
		// misc.cu
		"embedding_f32":     "pppii",
		"embedding_bwd_f32": "pppii",
		"rand_uniform_f32":  "pluuff",
		"rand_normal_f32":   "pluuff",
		"adamw_f32":         "ppppl" + "ffffff",
		"lion_f32":          "pppl" + "ffff",
	}
	for _, d := range flashDims {
		m[fmt.Sprintf("attn_fwd_d%d", d)] = "pppppp" + "iiii" + "f"
		m[fmt.Sprintf("attn_bwd_dq_d%d", d)] = "pppppppp" + "iiii" + "f"
		m[fmt.Sprintf("attn_bwd_dkdv_d%d", d)] = "ppppppppp" + "iiii" + "f"
	}
	return m
}()

// KernelNames lists the kernels of the signature table, sorted.
func KernelNames() []string {
	out := make([]string, 0, len(kernelSigs))
	for k := range kernelSigs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var (
	ptxEntryRe = regexp.MustCompile(`\.visible\s+\.entry\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(([^)]*)\)`)
	ptxParamRe = regexp.MustCompile(`\.param\s+\.([a-z0-9]+)`)
)

// ParsePTXEntries returns each .entry of a PTX module with the PTX types of its parameters
// (e.g. "u64", "f32").
func ParsePTXEntries(ptx string) map[string][]string {
	out := map[string][]string{}
	for _, m := range ptxEntryRe.FindAllStringSubmatch(ptx, -1) {
		var types []string
		for _, p := range ptxParamRe.FindAllStringSubmatch(m[2], -1) {
			types = append(types, p[1])
		}
		out[m[1]] = types
	}
	return out
}

// sigMatchesPTX reports whether a declared signature fits the PTX parameter types.
func sigMatchesPTX(sig string, types []string) error {
	if len(sig) != len(types) {
		return fmt.Errorf("%d parameters declared, %d in PTX", len(sig), len(types))
	}
	for i, k := range []byte(sig) {
		t := types[i]
		ok := false
		switch k {
		case argPtr, argInt64, argU64:
			ok = t == "u64" || t == "s64" || t == "b64"
		case argInt:
			ok = t == "u32" || t == "s32" || t == "b32"
		case argF32:
			ok = t == "f32"
		}
		if !ok {
			return fmt.Errorf("parameter %d declared %q, PTX .%s", i, k, t)
		}
	}
	return nil
}
