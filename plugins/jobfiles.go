package plugins

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"simpletuner/internal/atomicfile"
	"strconv"
	"time"
)

// Files a trainer keeps in its job directory. They are part of the contract because the
// daemon reads them when the trainer is no longer there to ask.
const (
	// SpoolFile holds every event of the job, one JSON object per line, seq ascending.
	SpoolFile = "events.ndjson"
	// ExitFile is the exit record, written atomically once the job has ended.
	ExitFile = "exit.json"
	// LogFile is the trainer's own log (never stdout/stderr: those die with the daemon).
	LogFile = "trainer.log"
	// EnvJobDir tells a freshly launched trainer where its job directory is, so it can log
	// there before Start arrives.
	EnvJobDir = "SIMPLETUNER_JOB_DIR"
	// EnvSeqBase is the last seq the daemon has stored for the job: a trainer numbers its
	// events after it, so a job's events stay one gapless sequence across attempts (a
	// crash retry, a job requeued from a lost worker) and none is taken for a replay.
	EnvSeqBase = "SIMPLETUNER_SEQ_BASE"
)

// ExitRecord is how a job ended.
type ExitRecord struct {
	JobID      string    `json:"job_id"`
	Nonce      string    `json:"nonce"`
	State      string    `json:"state"` // a terminal state
	Error      string    `json:"error,omitempty"`
	LastSeq    uint64    `json:"last_seq"`
	Progress   Progress  `json:"progress"`
	PID        int       `json:"pid"`
	FinishedAt time.Time `json:"finished_at"`
}

// WriteExitRecord writes rec into dir atomically: temp file, fsync, rename, fsync of dir.
func WriteExitRecord(dir string, rec ExitRecord) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, ExitFile), append(b, '\n'))
}

// ReadExitRecord reads the exit record; fs.ErrNotExist when the job has not ended (or the
// trainer died before it could write one).
func ReadExitRecord(dir string) (ExitRecord, error) {
	var rec ExitRecord
	b, err := os.ReadFile(filepath.Join(dir, ExitFile))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("exit record %s: %w", filepath.Join(dir, ExitFile), err)
	}
	return rec, nil
}

// writeAtomic replaces path with b (internal/atomicfile: temp file, fsync, rename, fsync
// of the directory), so a reader never sees half an exit record.
func writeAtomic(path string, b []byte) error {
	return atomicfile.Write(path, b, 0o600)
}

// leadingSeq reads the seq of a spool line as Event's encoding starts it, {"seq":N, —
// ok is false for any other start, and the caller decodes the line.
func leadingSeq(line []byte) (uint64, bool) {
	const head = `{"seq":`
	if !bytes.HasPrefix(line, []byte(head)) {
		return 0, false
	}
	var n uint64
	i := len(head)
	for ; i < len(line) && line[i] >= '0' && line[i] <= '9'; i++ {
		d := uint64(line[i] - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	if i == len(head) || i >= len(line) || (line[i] != ',' && line[i] != '}') {
		return 0, false
	}
	return n, true
}

// ReadSpool calls fn for each event in the spool at path with Seq > since, starting at
// byte offset off (0 for the beginning), reading at most up to limit bytes (-1 for the
// whole file). It returns the offset after the last complete line read, so a follower can
// continue from there. A torn last line (a crash mid-write) is ignored.
func ReadSpool(path string, off, limit int64, since uint64, fn func(Event) error) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return off, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return off, err
	}
	var r io.Reader = f
	if limit >= 0 {
		r = io.LimitReader(f, limit-off)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return off, nil // a partial line stays unread until it is complete
		}
		if err != nil {
			return off, err
		}
		off += int64(len(line))
		if seq, ok := leadingSeq(line); ok && seq <= since {
			continue // delivered before: skipped without decoding the rest
		}
		var e Event
		if jerr := json.Unmarshal(line, &e); jerr != nil {
			return off, fmt.Errorf("spool %s: bad line at byte %d: %w", path, off-int64(len(line)), jerr)
		}
		if e.Seq <= since {
			continue
		}
		if err := fn(e); err != nil {
			return off, err
		}
	}
}

// SeqBase reads EnvSeqBase through getenv (0 when unset or not a number).
func SeqBase(getenv func(string) string) uint64 {
	n, err := strconv.ParseUint(getenv(EnvSeqBase), 10, 64)
	if err != nil {
		return 0
	}
	return n
}
