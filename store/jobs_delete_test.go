package store

import (
	"errors"
	"testing"
)

// TestJobsDelete: Delete removes the record and its LastSeq key (a job created again under
// the same id starts from seq 0), and leaves the job alone when check refuses.
func TestJobsDelete(t *testing.T) {
	db := memDB(t)
	if err := db.Jobs().Create(&Job{ID: "j", Status: "running"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Events().Append("j", []StoredEvent{{JobID: "j", Seq: 1, Event: []byte(`{"seq":1}`)}}); err != nil {
		t.Fatal(err)
	}
	refuse := errors.New("still running")
	if err := db.Jobs().Delete("j", func(j *Job) error {
		if j.Status != "running" || j.LastSeq != 1 {
			t.Errorf("check saw %+v", j)
		}
		return refuse
	}); err != refuse {
		t.Fatalf("refused delete: %v", err)
	}
	if _, err := db.Jobs().Get("j"); err != nil {
		t.Fatalf("refused delete removed the job: %v", err)
	}
	if err := db.Jobs().Delete("j", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Jobs().Get("j"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := db.Jobs().Delete("j", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if err := db.Jobs().Create(&Job{ID: "j"}); err != nil {
		t.Fatal(err)
	}
	if j, err := db.Jobs().Get("j"); err != nil || j.LastSeq != 0 {
		t.Fatalf("job created again: %+v %v, want LastSeq 0", j, err)
	}
}
