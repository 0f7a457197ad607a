package workeragent

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"simpletuner/plugins/workerproto"
)

// jobSync reports one job to the orchestrator: its stored events in batches from the
// seq the orchestrator acknowledged, then its status once the events it follows are
// there. One goroutine runs it; wake asks it to look again.
type jobSync struct {
	id   string
	wake chan struct{} // capacity 1

	// mu guards the fields below.
	mu        sync.Mutex
	acked     uint64 // the last seq the orchestrator has stored
	posted    string // the last status the orchestrator accepted
	done      bool   // final status accepted, or the job was abandoned
	abandoned bool
}

func (s *jobSync) setAcked(seq uint64) {
	s.mu.Lock()
	s.acked = seq
	s.mu.Unlock()
}

func (s *jobSync) ackedSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked
}

func (s *jobSync) abandon() {
	s.mu.Lock()
	s.abandoned, s.done = true, true
	s.mu.Unlock()
	s.poke()
}

func (s *jobSync) isDone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

func (s *jobSync) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// syncFor returns the job's sync, starting it when there is none (and create is true,
// or the job is not reported yet).
func (a *Agent) syncFor(id string, create bool) *jobSync {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s := a.syncs[id]; s != nil {
		return s
	}
	if !create {
		return nil
	}
	s := &jobSync{id: id, wake: make(chan struct{}, 1)}
	a.syncs[id] = s
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.runSync(s)
	}()
	return s
}

// wakeJob asks the job's sync to report what is new, starting one for a job that is not
// reported yet.
func (a *Agent) wakeJob(id string) {
	s := a.syncFor(id, false)
	if s == nil {
		if a.ctx.Err() != nil || a.reported(id) {
			return
		}
		s = a.syncFor(id, true)
	}
	s.poke()
}

// runSync reports the job until its final status is accepted, it is abandoned, or the
// agent stops. Failures are retried with backoff; each registration and each new event
// or status wakes it.
func (a *Agent) runSync(s *jobSync) {
	defer a.checkExit()
	attempt := 0
	for {
		a.mu.Lock()
		reg, gen := a.registered, a.generation
		a.mu.Unlock()
		// Wait for a registration: before it the orchestrator may not know this worker
		// (or the seq it has stored for the job).
		select {
		case <-a.ctx.Done():
			return
		case <-reg:
		}
		if s.isDone() {
			return
		}
		err := a.syncOnce(s)
		switch {
		case err == nil && s.isDone():
			a.markReported(s.id)
			s.mu.Lock()
			status, acked := s.posted, s.acked
			s.mu.Unlock()
			a.log.Info("job reported", "job_id", s.id, "status", status, "last_seq", acked)
			return
		case errors.Is(err, ErrNotAssigned):
			a.abandon(a.ctx, s.id, err.Error())
			return
		case err != nil:
			attempt++
			d := backoff(attempt, a.cfg.RetryBase, min(a.cfg.RetryMax, uploadRetryMax))
			if a.ctx.Err() == nil {
				a.log.Warn("job report failed; retrying", "job_id", s.id, "err", err, "retry_in", d)
			}
			t := time.NewTimer(d)
			select {
			case <-a.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		attempt = 0
		a.mu.Lock()
		regen := a.generation != gen
		a.mu.Unlock()
		if regen {
			continue // re-registered meanwhile: the acknowledged seq may have changed
		}
		select {
		case <-a.ctx.Done():
			return
		case <-s.wake:
		}
	}
}

// uploadRetryMax caps the wait between upload retries lower than the reconnect backoff:
// a cut upload on a live connection should resume within seconds, and one worker runs
// few jobs, so retrying often costs the orchestrator little.
const uploadRetryMax = 5 * time.Second

// errResend asks syncOnce's caller to go round again at once: a 409 named the seq to
// resend from.
var errResend = errors.New("resend from the acknowledged seq")

// syncOnce uploads the job's events the orchestrator lacks, then its status when that
// changed; a terminal status carries the job's last seq and is retried until accepted.
func (a *Agent) syncOnce(s *jobSync) error {
	for range 100 { // bounded: each round either progresses or names an earlier seq
		err := a.syncRound(s)
		if !errors.Is(err, errResend) {
			return err
		}
	}
	return errors.New("the orchestrator keeps refusing the job's events")
}

func (a *Agent) syncRound(s *jobSync) error {
	// The job first: the events stored before its status changed are then in the
	// store, and go before the status.
	j, err := a.jm.Get(s.id)
	if err != nil {
		return err
	}
	// While one batch is on its way the next is read and encoded, so the orchestrator
	// stores batch after batch without waiting for this side (the two run on different
	// machines, or at least different cores).
	next := a.prepareBatch(s.id, s.ackedSeq())
	for next.err == nil && next.n > 0 {
		cur := next
		ahead := make(chan batch, 1)
		go func() { ahead <- a.prepareBatch(s.id, cur.last) }()
		var ack workerproto.EventAck
		ctx, cancel := context.WithTimeout(a.ctx, requestTimeout)
		err := a.cl.post(ctx, jobPath(s.id, "events"), cur.body, &ack)
		cancel()
		next = <-ahead
		if errors.Is(err, ErrConflict) {
			a.log.Info("orchestrator asks for events again", "job_id", s.id, "from_seq", ack.LastSeq+1)
			s.setAcked(ack.LastSeq)
			return errResend
		}
		if err != nil {
			return err
		}
		if ack.LastSeq < cur.last && ack.LastSeq <= cur.from {
			return errors.New("the orchestrator acknowledged none of the events sent")
		}
		s.setAcked(ack.LastSeq)
		if ack.LastSeq != cur.last {
			next = a.prepareBatch(s.id, ack.LastSeq) // it kept less (or has more): go on from its seq
		}
	}
	if next.err != nil {
		return next.err
	}
	status, terminal, ok := wireStatus(j.Status)
	s.mu.Lock()
	unchanged := status == s.posted
	s.mu.Unlock()
	if !ok || unchanged {
		return nil
	}
	st := workerproto.JobStatus{Status: status, Progress: j.Progress}
	if terminal {
		st.Error, st.LastSeq = j.Error, j.LastSeq
	}
	var ack workerproto.EventAck
	ctx, cancel := context.WithTimeout(a.ctx, requestTimeout)
	err = a.cl.post(ctx, jobPath(s.id, "status"), st, &ack)
	cancel()
	if errors.Is(err, ErrConflict) {
		s.setAcked(min(ack.LastSeq, s.ackedSeq()))
		return errResend
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.posted = status
	s.done = terminal
	s.mu.Unlock()
	return nil
}

// batch is one event upload: the job's stored events after from, up to last, as the
// request body.
type batch struct {
	from, last uint64
	n          int
	body       []byte
	err        error
}

// prepareBatch reads the job's stored events after seq from and encodes the next upload
// (n 0: nothing to send). The stored events are already JSON, so they are sent as stored.
func (a *Agent) prepareBatch(id string, from uint64) batch {
	stored, err := a.db.Events().List(id, from, maxBatchEvents)
	if err != nil {
		return batch{from: from, err: err}
	}
	n := cutBatch(stored, maxBatchEvents, maxBatchBytes)
	if n == 0 {
		return batch{from: from}
	}
	var body bytes.Buffer
	body.WriteString(`{"events":[`)
	for i, e := range stored[:n] {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(e.Event)
	}
	body.WriteString(`]}`)
	return batch{from: from, last: stored[n-1].Seq, n: n, body: body.Bytes()}
}
