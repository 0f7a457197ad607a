//go:build linux && (amd64 || arm64) && !nonvml

package gpu

import "github.com/ebitengine/purego"

// loadNVML dlopens the library and binds the function table. RTLD_LAZY|RTLD_GLOBAL is
// what go-nvml uses. A failed dlopen is reported as NVML_ERROR_LIBRARY_NOT_FOUND, the
// code NVML's own loader uses for the same case.
func loadNVML(path string) (*nvmlLib, error) {
	h, err := purego.Dlopen(path, purego.RTLD_LAZY|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, &NVMLError{Op: "dlopen " + path, Code: int(nvmlErrorLibraryNotFound), Detail: err.Error()}
	}
	lib, err := bindNVML(func(name string) (uintptr, error) { return purego.Dlsym(h, name) }, purego.RegisterFunc)
	if err != nil {
		_ = purego.Dlclose(h) // nothing was initialised; unloading is safe here
		return nil, err
	}
	return lib, nil
}
