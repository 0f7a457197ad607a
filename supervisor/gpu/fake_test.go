package gpu

import (
	"context"
	"errors"
	"regexp"
	"testing"
)

func TestFakeFixtures(t *testing.T) {
	uuidRE := regexp.MustCompile(`^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	for _, n := range []int{0, 1, 2, 8, 10} {
		gpus := FakeH100(n)
		seen := map[string]bool{}
		for i, g := range gpus {
			if g.Index != i || !uuidRE.MatchString(g.UUID) || seen[g.UUID] || !g.Healthy || g.Name != H100Name ||
				g.MemoryTotal != 85520809984 || g.PCIBusID == "" {
				t.Errorf("FakeH100(%d)[%d] = %+v", n, i, g)
			}
			seen[g.UUID] = true
		}
		if len(gpus) != n {
			t.Errorf("FakeH100(%d) has %d GPUs", n, len(gpus))
		}
	}
}

func TestFakeInventory(t *testing.T) {
	ctx := context.Background()
	if info := NewFake().Info(); info.Backend != BackendCPU {
		t.Errorf("empty fake backend %q", info.Backend)
	}
	f := NewFake(FakeH100(2)...)
	if info := f.Info(); info.Backend != BackendCUDA {
		t.Errorf("backend %q", info.Backend)
	}
	gpus, err := f.List(ctx)
	if err != nil || len(gpus) != 2 {
		t.Fatalf("List = %v, %v", gpus, err)
	}
	gpus[0].Name = "mutated"
	if again, _ := f.List(ctx); again[0].Name != H100Name {
		t.Error("List returned the fake's own slice")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.List(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled List: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.List(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("List after Close: %v", err)
	}
	if f.Lists() != 3 {
		t.Errorf("Lists = %d, want 3", f.Lists())
	}
	if _, err := (None{}).List(ctx); err != nil {
		t.Error(err)
	}
}
