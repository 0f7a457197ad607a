package safetensors

import (
	"errors"
	"os"
	"testing"
)

// OpenCheckpoint prefers the single file, falls back to the index, and reports absence as
// os.ErrNotExist.
func TestOpenCheckpoint(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenCheckpoint(dir, "model", ShardOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("empty dir: %v", err)
	}
	w, err := CreateSharded(dir, "model", []Spec{{"a", F32, []int{2}}}, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFloat32("a", []float32{1, 2}); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, mapped := range []bool{false, true} {
		c, err := OpenCheckpoint(dir, "model", ShardOptions{Map: mapped})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.(*Sharded); !ok {
			t.Fatalf("got %T, want the sharded reader", c)
		}
		if v, _, err := ReadFloat32(c, "a"); err != nil || v[1] != 2 {
			t.Fatalf("a = %v, %v", v, err)
		}
		c.Close()
	}
	writeShard(t, dir, "model.safetensors", "b")
	for _, c := range []struct {
		mapped bool
		want   string
	}{{false, "*safetensors.File"}, {true, "*safetensors.Mapped"}} {
		ck, err := OpenCheckpoint(dir, "model", ShardOptions{Map: c.mapped})
		if err != nil {
			t.Fatal(err)
		}
		if got := typeName(ck); got != c.want {
			t.Fatalf("got %s, want %s", got, c.want)
		}
		if _, ok := ck.Info("b"); !ok {
			t.Fatal("single file not used")
		}
		ck.Close()
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *File:
		return "*safetensors.File"
	case *Mapped:
		return "*safetensors.Mapped"
	case *Sharded:
		return "*safetensors.Sharded"
	}
	return "?"
}
