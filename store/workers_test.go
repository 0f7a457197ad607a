package store

import (
	"errors"
	"testing"
	"time"

	"simpletuner/plugins/workerproto"
)

func TestWorkersPutGetListDelete(t *testing.T) {
	db := memDB(t)
	ws := db.Workers()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, id := range []string{"worker-b", "worker-a"} {
		if err := ws.Put(&Worker{ID: id, Name: id, Type: "persistent", Status: "connecting", CreatedAt: now, TokenHash: "h-" + id,
			Labels: map[string]string{"gpu_type": "a100"}, GPU: workerproto.GPUInfo{Name: "A100", Count: 2}}); err != nil {
			t.Fatal(err)
		}
	}
	w, err := ws.Get("worker-a")
	if err != nil || w.TokenHash != "h-worker-a" || w.GPU.Count != 2 || w.Labels["gpu_type"] != "a100" || !w.CreatedAt.Equal(now) {
		t.Fatalf("Get = %+v, %v", w, err)
	}
	list, err := ws.List()
	if err != nil || len(list) != 2 || list[0].ID != "worker-a" || list[1].ID != "worker-b" {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if err := ws.Delete("worker-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Get("worker-a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if err := ws.Delete("worker-a"); err != nil {
		t.Fatalf("Delete of an absent worker: %v", err)
	}
}
