package gpu

import (
	"context"
	"slices"
	"testing"
)

func TestCUDAVisibleDevices(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{FakeUUID(0)}, FakeUUID(0)},
		{[]string{FakeUUID(3), FakeUUID(1)}, FakeUUID(3) + "," + FakeUUID(1)},
		{[]string{"3c1d7a00-5e2b-4f0c-9a6d-b4e85f2c0000"}, "GPU-3c1d7a00-5e2b-4f0c-9a6d-b4e85f2c0000"},
		{[]string{"MIG-1234"}, "MIG-1234"},
	} {
		if got := CUDAVisibleDevices(tc.in); got != tc.want {
			t.Errorf("CUDAVisibleDevices(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLaunchEnv(t *testing.T) {
	d := Decide(Request{NumProcesses: 2}, FakeH100(4), nil, Limits{})
	want := []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=" + FakeUUID(0) + "," + FakeUUID(1)}
	if got := LaunchEnv(d); !slices.Equal(got, want) {
		t.Errorf("LaunchEnv = %q, want %q", got, want)
	}
	cpu := Decide(Request{}, nil, nil, Limits{})
	if got := LaunchEnv(cpu); !slices.Equal(got, []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES="}) {
		t.Errorf("CPU LaunchEnv = %q", got)
	}
}

func TestFilterVisible(t *testing.T) {
	gpus := FakeH100(4)
	idx := func(gs []GPU) []int {
		out := []int{}
		for _, g := range gs {
			out = append(out, g.Index)
		}
		return out
	}
	for _, tc := range []struct {
		spec string
		want []int
	}{
		{"", []int{}},
		{"0,1", []int{0, 1}},
		{"2, 0", []int{2, 0}},
		{"1,1,3", []int{1, 3}},
		{"1,9,2", []int{1}},        // CUDA stops at the first invalid entry
		{"-1", []int{}},            // the usual way to hide every GPU
		{FakeUUID(2), []int{2}},    // full UUID
		{"GPU-3c1d7a33", []int{3}}, // unique prefix
		{"3c1d7a22", []int{2}},     // prefix without GPU-
		{"GPU-3c1d7a", []int{}},    // ambiguous prefix
		{"3,GPU-ffff,0", []int{3}},
	} {
		if got := idx(FilterVisible(gpus, tc.spec)); !slices.Equal(got, tc.want) {
			t.Errorf("FilterVisible(%q) = %v, want %v", tc.spec, got, tc.want)
		}
	}
}

func TestVisibleInventory(t *testing.T) {
	inv := Visible{Inventory: NewFake(FakeH100(4)...), Spec: "3,1"}
	gpus, err := inv.List(context.Background())
	if err != nil || len(gpus) != 2 || gpus[0].Index != 3 || gpus[1].Index != 1 {
		t.Fatalf("List = %+v, %v", gpus, err)
	}
	// Decide takes the lowest index among what is visible.
	if d := Decide(Request{}, gpus, nil, Limits{}); d.Outcome != Start || d.Indexes[0] != 1 {
		t.Errorf("Decide = %+v", d)
	}
	f := NewFake(FakeH100(1)...)
	f.SetError(ErrClosed)
	if _, err := (Visible{Inventory: f}).List(context.Background()); err != ErrClosed {
		t.Errorf("error not passed through: %v", err)
	}
}
