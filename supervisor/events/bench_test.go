package events

import (
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
)

// BenchmarkIngest measures the daemon's ingestion path alone (sanitise, store in badger
// on disk, publish to no clients) in events per second, batches of 256 as the job
// manager hands them over.
func BenchmarkIngest(b *testing.B) {
	db, err := store.Open(filepath.Join(b.TempDir(), "state"), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Jobs().Create(&store.Job{ID: "j", Status: "running", Config: json.RawMessage(`{}`)}); err != nil {
		b.Fatal(err)
	}
	h := New(Config{Store: db, Log: slog.New(slog.DiscardHandler)})
	defer h.Close()
	data, _ := json.Marshal(plugins.Progress{Step: 1, TotalSteps: 100, Loss: 0.5, LearningRate: 1e-4})
	const batch = 256
	seq := uint64(0)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i += batch {
		evs := make([]plugins.Event, batch)
		for k := range evs {
			seq++
			evs[k] = plugins.Event{Seq: seq, Type: "training.progress", Severity: "info", Time: time.Now(), Data: data}
		}
		if _, err := h.Append("j", evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(seq)/time.Since(start).Seconds(), "events/s")
}
