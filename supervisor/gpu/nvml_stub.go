//go:build !(linux && (amd64 || arm64)) || nonvml

package gpu

// loadNVML: this build cannot load NVML (purego's cgo-free loader covers linux/amd64
// and linux/arm64; the "nonvml" tag drops it to get a fully static binary), so the host
// is treated as having no GPUs.
func loadNVML(path string) (*nvmlLib, error) {
	return nil, &NVMLError{Op: "dlopen " + path, Code: int(nvmlErrorLibraryNotFound), Detail: "NVML support not built in"}
}
