//go:build !cgo || nonvml

package gpu

import (
	"context"
	"errors"
	"testing"
)

// TestOpenWithoutNVML: the static build reports zero GPUs and says it was built without
// NVML, whatever library it is pointed at.
func TestOpenWithoutNVML(t *testing.T) {
	for _, lib := range []string{"", "libnvidia-ml.so.1", t.TempDir() + "/libnvidia-ml.so.1"} {
		inv := Open(NVMLOptions{Library: lib})
		none, ok := inv.(None)
		if !ok {
			t.Fatalf("Open(%q) = %T, want None", lib, inv)
		}
		if !errors.Is(none.Err, ErrNotBuiltIn) || errors.Is(none.Err, ErrNoDriver) {
			t.Errorf("Err = %v, want ErrNotBuiltIn (and not ErrNoDriver: no driver would help)", none.Err)
		}
		if info := inv.Info(); info.Backend != BackendCPU || info.Reason != ErrNotBuiltIn.Error() {
			t.Errorf("Info = %+v", info)
		}
		if gpus, err := inv.List(context.Background()); err != nil || len(gpus) != 0 {
			t.Errorf("List = %v, %v", gpus, err)
		}
	}
}
