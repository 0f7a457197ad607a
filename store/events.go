package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"simpletuner/internal/jsonx"
)

// StoredEvent is one event as the daemon keeps it.
//
// Every event gets a server-wide Index (1, 2, 3, … across all jobs, no gaps) when it is
// stored; a client follows every job by asking for the events after the last index it
// saw. Trainer events also carry the trainer's per-job Seq; events of daemon origin (job
// status changes, relayed log lines) have Seq 0.
type StoredEvent struct {
	JobID string `json:"job_id"`
	Seq   uint64 `json:"seq,omitempty"`
	// Index is assigned by Append and Record; what callers pass in is ignored.
	Index uint64 `json:"index"`
	// Stored is when the daemon stored the event (age-based retention uses it).
	Stored time.Time `json:"stored"`
	// Event is the event itself, as the producer encoded it.
	Event json.RawMessage `json:"event"`
}

// Key layout. Each event has a record under its index, a per-job entry under the index (to
// read one job's events, daemon events included) and, for trainer events, a per-job entry
// under its seq holding the index (to resume a trainer stream by seq).
//
//	evidx/<index %016x>        → StoredEvent (JSON)
//	evjob/<job>/<index %016x>  → empty
//	events/<job>/<seq %016x>   → index (8 bytes, big endian)
const (
	prefixEvIdx = "evidx/"
	prefixEvJob = "evjob/"
)

func eventKey(job string, seq uint64) []byte { return fmt.Appendf(nil, "events/%s/%016x", job, seq) }
func evIdxKey(idx uint64) []byte             { return fmt.Appendf(nil, "%s%016x", prefixEvIdx, idx) }
func evJobKey(job string, idx uint64) []byte {
	return fmt.Appendf(nil, "%s%s/%016x", prefixEvJob, job, idx)
}

// eventIndex is the allocator of server-wide indexes, kept in DB.
type eventIndex struct {
	// mu serialises every event write (append, record, trim) so indexes are assigned
	// without gaps and without transaction conflicts; it guards the fields below.
	mu     sync.Mutex
	loaded bool
	first  uint64 // oldest index still stored (0: none stored)
	last   uint64 // newest index assigned (0: none yet)
}

// loadLocked reads the index bounds from the database once. Called with mu held.
func (s *Events) loadLocked() error {
	st := &s.db.ev
	if st.loaded {
		return nil
	}
	err := s.db.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixEvIdx)})
		defer it.Close()
		it.Rewind()
		if !it.Valid() {
			return nil
		}
		first, err := parseIdxKey(it.Item().Key())
		if err != nil {
			return err
		}
		rit := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixEvIdx), Reverse: true})
		defer rit.Close()
		rit.Seek(append([]byte(prefixEvIdx), 0xff))
		if !rit.Valid() {
			return fmt.Errorf("%w: event index vanished while reading it", ErrCorrupt)
		}
		last, err := parseIdxKey(rit.Item().Key())
		if err != nil {
			return err
		}
		st.first, st.last = first, last
		return nil
	})
	if err != nil {
		return err
	}
	// The allocator never reuses an index, even after every event was trimmed.
	var hw uint64
	if _, err := s.db.Settings().Get(eventHighWater, &hw); err != nil {
		return err
	}
	st.last = max(st.last, hw)
	st.loaded = true
	return nil
}

// eventHighWater is the settings key that remembers the last index ever assigned, so a
// fully trimmed store does not hand out old indexes again (clients resume by index).
const eventHighWater = "events_last_index"

func parseIdxKey(k []byte) (uint64, error) {
	var idx uint64
	if _, err := fmt.Sscanf(string(k[len(prefixEvIdx):]), "%x", &idx); err != nil {
		return 0, fmt.Errorf("%w: event key %s", ErrCorrupt, k)
	}
	return idx, nil
}

// Events is the typed store of job events.
type Events struct{ db *DB }

// Events returns the event store.
func (d *DB) Events() *Events { return &Events{db: d} }

// appendStored appends e's record, byte for byte what json.Marshal(e) writes, without
// encoding/json's second pass over e.Event (which its producer encoded).
func appendStored(b []byte, e *StoredEvent) ([]byte, error) {
	b = append(b, `{"job_id":`...)
	b = jsonx.AppendString(b, e.JobID)
	if e.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = jsonx.AppendUint(b, e.Seq)
	}
	b = append(b, `,"index":`...)
	b = jsonx.AppendUint(b, e.Index)
	b = append(b, `,"stored":`...)
	b, err := jsonx.AppendTime(b, e.Stored)
	if err != nil {
		return b, err
	}
	b = append(b, `,"event":`...)
	if b, err = jsonx.AppendRaw(b, e.Event); err != nil {
		return b, err
	}
	return append(b, '}'), nil
}

// putLocked writes one event's keys. Called with mu held.
func putLocked(txn *badger.Txn, e StoredEvent) error {
	if !json.Valid(e.Event) {
		return fmt.Errorf("event %d of job %s is not valid JSON", e.Seq, e.JobID)
	}
	rec, err := appendStored(make([]byte, 0, len(e.Event)+128), &e)
	if err != nil {
		return err
	}
	if err := txn.Set(evIdxKey(e.Index), rec); err != nil {
		return err
	}
	if err := txn.Set(evJobKey(e.JobID, e.Index), nil); err != nil {
		return err
	}
	if e.Seq > 0 {
		return txn.Set(eventKey(e.JobID, e.Seq), be64(e.Index))
	}
	return nil
}

// Append stores trainer events of one job and advances the job's LastSeq in the same
// transaction, so a restarted daemon resumes exactly after what it stored. Events at or
// below the stored LastSeq are skipped (replays after a reattach are idempotent). Every
// stored event gets its server-wide Index written into evs[i]; skipped ones get Index 0.
// It returns the job's new LastSeq.
func (s *Events) Append(jobID string, evs []StoredEvent) (uint64, error) {
	st := &s.db.ev
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := s.loadLocked(); err != nil {
		return 0, err
	}
	// Large batches go in chunks: a badger transaction is bounded by the memtable size.
	// Each chunk advances LastSeq with its events, so a failure midway loses nothing.
	var last uint64
	for start := 0; start == 0 || start < len(evs); start += appendChunk {
		l, err := s.appendLocked(jobID, evs[start:min(start+appendChunk, len(evs))])
		if err != nil {
			for i := start; i < len(evs); i++ {
				evs[i].Index = 0
			}
			return 0, err
		}
		last = l
	}
	return last, nil
}

// appendChunk is how many events one transaction stores at most.
const appendChunk = 256

func (s *Events) appendLocked(jobID string, evs []StoredEvent) (uint64, error) {
	st := &s.db.ev
	var last, next uint64
	now := time.Now().UTC()
	err := s.db.update(func(txn *badger.Txn) error {
		var err error
		if last, err = jobLastSeq(txn, jobID); err != nil {
			return err
		}
		next = st.last
		for i := range evs {
			e := &evs[i]
			e.Index = 0
			if e.Seq <= last {
				continue
			}
			next++
			e.JobID, e.Index, e.Stored = jobID, next, now
			if err := putLocked(txn, *e); err != nil {
				return err
			}
			last = e.Seq
		}
		return setJobSeq(txn, jobID, last)
	})
	if err != nil {
		for i := range evs {
			evs[i].Index = 0
		}
		return 0, err
	}
	s.advanceLocked(next)
	return last, nil
}

// Record stores events of daemon origin (Seq 0: job status changes, relayed log lines),
// each for the job named in its JobID, and writes their indexes into evs[i].Index.
func (s *Events) Record(evs []StoredEvent) error {
	st := &s.db.ev
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := s.loadLocked(); err != nil {
		return err
	}
	for start := 0; start < len(evs); start += appendChunk {
		if err := s.recordLocked(evs[start:min(start+appendChunk, len(evs))]); err != nil {
			for i := start; i < len(evs); i++ {
				evs[i].Index = 0
			}
			return err
		}
	}
	return nil
}

func (s *Events) recordLocked(evs []StoredEvent) error {
	st := &s.db.ev
	var next uint64
	now := time.Now().UTC()
	err := s.db.update(func(txn *badger.Txn) error {
		next = st.last
		for i := range evs {
			next++
			evs[i].Seq, evs[i].Index, evs[i].Stored = 0, next, now
			if evs[i].JobID == "" {
				return errors.New("store: event without a job id")
			}
			if err := putLocked(txn, evs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for i := range evs {
			evs[i].Index = 0
		}
		return err
	}
	s.advanceLocked(next)
	return nil
}

// advanceLocked records that indexes up to next are assigned. Called with mu held.
func (s *Events) advanceLocked(next uint64) {
	st := &s.db.ev
	if next > st.last {
		if st.first == 0 {
			st.first = st.last + 1
		}
		st.last = next
	}
}

// Bounds returns the oldest stored index and the newest assigned one (0, 0 before the
// first event; first > last when every event was trimmed).
func (s *Events) Bounds() (first, last uint64, err error) {
	st := &s.db.ev
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := s.loadLocked(); err != nil {
		return 0, 0, err
	}
	if st.first == 0 {
		return st.last + 1, st.last, nil
	}
	return st.first, st.last, nil
}

// List returns a job's trainer events with Seq > since, at most limit (0 = all).
func (s *Events) List(jobID string, since uint64, limit int) ([]StoredEvent, error) {
	var out []StoredEvent
	err := s.db.view(func(txn *badger.Txn) error {
		prefix := []byte("events/" + jobID + "/")
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Seek(eventKey(jobID, since+1)); it.Valid(); it.Next() {
			var seq uint64
			if _, err := fmt.Sscanf(string(it.Item().Key()[len(prefix):]), "%x", &seq); err != nil {
				return fmt.Errorf("%w: event key %s", ErrCorrupt, it.Item().Key())
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if len(v) != 8 {
				// A record from before the server-wide index: the event itself.
				out = append(out, StoredEvent{JobID: jobID, Seq: seq, Event: v})
			} else {
				e, err := getEvent(txn, binary.BigEndian.Uint64(v))
				if errors.Is(err, ErrNotFound) {
					continue // trimmed meanwhile
				}
				if err != nil {
					return err
				}
				out = append(out, e)
			}
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		return nil
	})
	return out, err
}

func getEvent(txn *badger.Txn, idx uint64) (StoredEvent, error) {
	var e StoredEvent
	err := getJSON(txn, evIdxKey(idx), &e)
	return e, err
}

// Since returns stored events with Index > since in index order: at most limit of them
// (limit ≤ 0: 1000) for which keep returns true (nil keeps all), looking at no more than
// scan records (scan ≤ 0: 20×limit) so a narrow filter cannot make one call unbounded.
// next is the index to pass as since to continue after what this call examined.
func (s *Events) Since(since uint64, limit, scan int, keep func(*StoredEvent) bool) (out []StoredEvent, next uint64, err error) {
	if limit <= 0 {
		limit = 1000
	}
	if scan <= 0 {
		scan = 20 * limit
	}
	next = since
	err = s.db.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixEvIdx), PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		n := 0
		for it.Seek(evIdxKey(since + 1)); it.Valid() && n < scan && len(out) < limit; it.Next() {
			n++
			var e StoredEvent
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &e) }); err != nil {
				return fmt.Errorf("%w: event record %s: %w", ErrCorrupt, it.Item().Key(), err)
			}
			next = e.Index
			if keep == nil || keep(&e) {
				out = append(out, e)
			}
		}
		return nil
	})
	return out, next, err
}

// ByJob returns one job's stored events (trainer and daemon origin) with Index > since,
// at most limit (limit ≤ 0: 1000).
func (s *Events) ByJob(jobID string, since uint64, limit int, keep func(*StoredEvent) bool) (out []StoredEvent, next uint64, err error) {
	if limit <= 0 {
		limit = 1000
	}
	next = since
	err = s.db.view(func(txn *badger.Txn) error {
		prefix := []byte(prefixEvJob + jobID + "/")
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(evJobKey(jobID, since+1)); it.Valid() && len(out) < limit; it.Next() {
			var idx uint64
			if _, err := fmt.Sscanf(string(it.Item().Key()[len(prefix):]), "%x", &idx); err != nil {
				return fmt.Errorf("%w: event key %s", ErrCorrupt, it.Item().Key())
			}
			e, err := getEvent(txn, idx)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			next = idx
			if keep == nil || keep(&e) {
				out = append(out, e)
			}
		}
		return nil
	})
	return out, next, err
}

// Trim enforces retention: it deletes the oldest events until at most maxCount remain
// (maxCount ≤ 0: no count limit) and none is older than maxAge (maxAge ≤ 0: no age
// limit). It returns how many events it deleted. Deletion runs in bounded transactions.
func (s *Events) Trim(maxCount int, maxAge time.Duration, now time.Time) (int, error) {
	st := &s.db.ev
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := s.loadLocked(); err != nil {
		return 0, err
	}
	deleted := 0
	for st.first != 0 && st.first <= st.last {
		var excess uint64
		if count := st.last - st.first + 1; maxCount > 0 && count > uint64(maxCount) {
			excess = count - uint64(maxCount)
		}
		batch := 0
		stop := false
		from := st.first
		err := s.db.update(func(txn *badger.Txn) error {
			batch, stop = 0, false
			for idx := from; idx <= st.last && batch < 1000; idx++ {
				e, err := getEvent(txn, idx)
				switch {
				case errors.Is(err, ErrNotFound):
				case err != nil:
					return err
				case uint64(batch) >= excess && (maxAge <= 0 || now.Sub(e.Stored) <= maxAge):
					stop = true
					return nil
				default:
					if err := txn.Delete(evIdxKey(idx)); err != nil {
						return err
					}
					if err := txn.Delete(evJobKey(e.JobID, idx)); err != nil {
						return err
					}
					if e.Seq > 0 {
						if err := txn.Delete(eventKey(e.JobID, e.Seq)); err != nil {
							return err
						}
					}
				}
				batch++
			}
			return nil
		})
		if err != nil {
			return deleted, err
		}
		if batch > 0 {
			// Remember the high-water mark before the last records can disappear.
			if err := s.db.Settings().Put(eventHighWater, st.last); err != nil {
				return deleted, err
			}
		}
		deleted += batch
		st.first += uint64(batch)
		if stop || batch == 0 {
			break
		}
	}
	if st.first > st.last {
		st.first = 0
	}
	return deleted, nil
}
