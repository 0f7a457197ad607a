package jobs

import (
	"errors"
	"time"

	"simpletuner/store"
)

// StatusPendingApproval is a job submitted for approval that no one has reviewed yet: it
// holds no slot and the queue does not start it until it is approved.
const StatusPendingApproval = "pending_approval"

// Approval statuses (store.Approval.Status).
const (
	ApprovalPending   = "pending"
	ApprovalApproved  = "approved"
	ApprovalRejected  = "rejected"
	ApprovalCancelled = "cancelled"
)

// ErrNotPending is returned when approving or rejecting a job that does not wait for
// approval (never submitted for it, or already reviewed or ended).
var ErrNotPending = errors.New("job is not waiting for approval")

// Review is an approver's decision on a pending job.
type Review struct {
	ReviewerID int64
	Reviewer   string
	// Notes are the approver's words: notes when approving, the reason when rejecting.
	Notes string
}

// ApprovalTransition is the status a job and its approval request move to when a review
// (approved true or false) or a cancellation (cancel true) meets a job in status from.
// ok is false when the move is not allowed. It is a pure function so the table of
// transitions can be tested on its own.
func ApprovalTransition(from string, approved, cancel bool) (jobStatus, approvalStatus string, ok bool) {
	if from != StatusPendingApproval {
		return from, "", false
	}
	switch {
	case cancel:
		return StatusCancelled, ApprovalCancelled, true
	case approved:
		return StatusQueued, ApprovalApproved, true
	default:
		return StatusCancelled, ApprovalRejected, true
	}
}

// Approve moves a pending job into the queue, which starts it as soon as it fits.
func (m *Manager) Approve(id string, r Review) (*store.Job, error) {
	return m.review(id, true, r)
}

// Reject ends a pending job; r.Notes is the reason, kept as the job's error.
func (m *Manager) Reject(id string, r Review) (*store.Job, error) {
	return m.review(id, false, r)
}

func (m *Manager) review(id string, approved bool, r Review) (*store.Job, error) {
	now := time.Now().UTC()
	j, err := m.db.Jobs().Update(id, func(j *store.Job) error {
		st, ast, ok := ApprovalTransition(j.Status, approved, false)
		if !ok || j.Approval == nil {
			return ErrNotPending
		}
		j.Status = st
		j.Approval.Status, j.Approval.ReviewerID, j.Approval.Reviewer = ast, r.ReviewerID, r.Reviewer
		j.Approval.ReviewedAt, j.Approval.ReviewNotes = &now, r.Notes
		if !approved {
			j.Error, j.FinishedAt = "rejected by "+r.Reviewer+": "+r.Notes, &now
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	m.statusChanged(j)
	m.log.Info("job reviewed", "job_id", id, "approved", approved, "reviewer", r.Reviewer)
	if approved {
		m.advance()
		if cur, err := m.db.Jobs().Get(id); err == nil {
			j = cur
		}
	}
	return j, nil
}

// ByApprovalID returns the job whose approval request has this ID (its Seq).
func (m *Manager) ByApprovalID(approvalID int64) (*store.Job, error) {
	all, err := m.db.Jobs().List()
	if err != nil {
		return nil, err
	}
	for _, j := range all {
		if j.Approval != nil && j.Seq == approvalID {
			return j, nil
		}
	}
	return nil, ErrNotFound
}
