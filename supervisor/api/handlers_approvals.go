package api

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"simpletuner/store"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/jobs"
)

// permApprove approves and rejects jobs held for approval (lead and admin), as in
// SimpleTuner.
const permApprove = "admin.approve"

// submittedForApproval is the reason of a request made by submitting with for_approval;
// this server has no approval rules, so it is the only reason there is.
const submittedForApproval = "Submitted for approval"

// approvalBody is one approval request, SimpleTuner's fields plus requested_at, which its
// command-line client prints. Its id is the job's queue sequence number.
type approvalBody struct {
	ID     int64  `json:"id"`
	JobID  string `json:"job_id"`
	UserID int64  `json:"user_id"`
	// RuleID is 0: requests come from for_approval submissions, not from rules.
	RuleID int64 `json:"rule_id"`
	// Status is pending, approved, rejected or cancelled (the job was cancelled while it
	// waited).
	Status        string   `json:"status"`
	Reason        string   `json:"reason"`
	Provider      string   `json:"provider"`
	ConfigName    string   `json:"config_name"`
	EstimatedCost float64  `json:"estimated_cost"`
	HardwareType  *string  `json:"hardware_type"`
	ReviewedBy    *int64   `json:"reviewed_by"`
	Reviewer      *string  `json:"reviewer"`
	ReviewedAt    *string  `json:"reviewed_at"`
	ReviewNotes   *string  `json:"review_notes"`
	CreatedAt     string   `json:"created_at"`
	RequestedAt   string   `json:"requested_at"`
	ExpiresAt     *string  `json:"expires_at"`
	JobStatus     string   `json:"job_status"`
	Owner         string   `json:"owner"`
	GPUs          []string `json:"gpus"`
}

func toApprovalBody(j *store.Job) approvalBody {
	a := j.Approval
	b := approvalBody{ID: j.Seq, JobID: j.ID, UserID: j.OwnerID, Status: a.Status, Reason: a.Reason, Provider: "local",
		ConfigName: j.EnvName, CreatedAt: isoTime(a.RequestedAt), RequestedAt: isoTime(a.RequestedAt), ReviewedAt: isoPtr(a.ReviewedAt),
		JobStatus: j.Status, Owner: j.Owner, GPUs: j.GPUs}
	if b.GPUs == nil {
		b.GPUs = []string{}
	}
	if a.ReviewedAt != nil {
		id, name := a.ReviewerID, a.Reviewer
		b.ReviewedBy, b.Reviewer = &id, &name
		if a.ReviewNotes != "" {
			notes := a.ReviewNotes
			b.ReviewNotes = &notes
		}
	}
	return b
}

// approvalsBody is GET /api/approvals: the requests under both names SimpleTuner uses
// (approvals, which its client reads; requests, which its server's /requests answers).
type approvalsBody struct {
	Approvals    []approvalBody `json:"approvals"`
	Requests     []approvalBody `json:"requests"`
	PendingCount int            `json:"pending_count"`
	Total        int            `json:"total"`
}

// approvalStatuses are the values of GET /api/approvals?status=.
var approvalStatuses = []string{jobs.ApprovalPending, jobs.ApprovalApproved, jobs.ApprovalRejected, jobs.ApprovalCancelled}

// listApprovals lists approval requests, newest first: every job's with admin.approve,
// else those of the jobs the caller may see (their own; everyone's with job.view.all).
func (s *Server) listApprovals(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	q := r.URL.Query()
	status := q.Get("status")
	if status != "" && !slices.Contains(approvalStatuses, status) {
		return &validationError{fieldError{Type: "enum", Loc: []string{"query", "status"}, Msg: "status must be one of " + strings.Join(approvalStatuses, ", ")}}
	}
	limit, err := intParam(q.Get("limit"), 50, 1, 200, "limit")
	if err != nil {
		return err
	}
	offset, err := intParam(q.Get("offset"), 0, 0, 1<<30, "offset")
	if err != nil {
		return err
	}
	all, err := s.cfg.Jobs.List()
	if err != nil {
		return err
	}
	out := approvalsBody{Approvals: []approvalBody{}}
	matched := 0
	for i := len(all) - 1; i >= 0; i-- {
		j := all[i]
		if j.Approval == nil || !(p.Can(permApprove) || visible(p, j)) {
			continue
		}
		if j.Approval.Status == jobs.ApprovalPending {
			out.PendingCount++
		}
		if status != "" && j.Approval.Status != status {
			continue
		}
		matched++
		if matched > offset && len(out.Approvals) < limit {
			out.Approvals = append(out.Approvals, toApprovalBody(j))
		}
	}
	out.Requests, out.Total = out.Approvals, matched
	writeJSON(w, http.StatusOK, out)
	return nil
}

// reviewRequest is the optional body of approve and reject (SimpleTuner's): reject needs
// reason; approve keeps notes, or else reason, as the review notes.
type reviewRequest struct {
	Notes  *string `json:"notes"`
	Reason *string `json:"reason"`
}

// reviewBody answers approve and reject (SimpleTuner's fields; the client reads success
// and job_id).
type reviewBody struct {
	Success    bool   `json:"success"`
	RequestID  int64  `json:"request_id"`
	JobID      string `json:"job_id"`
	Status     string `json:"status"`
	JobStatus  string `json:"job_status"`
	ApprovedBy *int64 `json:"approved_by,omitempty"`
	RejectedBy *int64 `json:"rejected_by,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// reviewApproval approves (approve true) or rejects an approval request.
func (s *Server) reviewApproval(approve bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
		id, err := pathID(r, "approval_id")
		if err != nil {
			return errorf(http.StatusNotFound, "Approval request not found: ids are the id field of GET /api/approvals")
		}
		var req reviewRequest
		if err := decodeOptionalJSON(r, &req); err != nil {
			return err
		}
		j, err := s.cfg.Jobs.ByApprovalID(id)
		if errors.Is(err, jobs.ErrNotFound) {
			return errorf(http.StatusNotFound, "Approval request not found: %d (ids are the id field of GET /api/approvals)", id)
		}
		if err != nil {
			return err
		}
		rv := jobs.Review{ReviewerID: p.User.ID, Reviewer: p.User.Username}
		switch {
		case approve && req.Notes != nil:
			rv.Notes = *req.Notes
		case approve && req.Reason != nil:
			rv.Notes = *req.Reason
		case !approve:
			if req.Reason == nil || strings.TrimSpace(*req.Reason) == "" {
				// 400 with a plain detail, as SimpleTuner answers: its client prints a string
				// detail and fails on a list of field errors.
				return errorf(http.StatusBadRequest, "Rejection reason is required: send {\"reason\": \"…\"} (simpletuner jobs approval reject ID --reason …); the submitter sees it as the job's error")
			}
			rv.Notes = strings.TrimSpace(*req.Reason)
		}
		var done *store.Job
		if approve {
			done, err = s.cfg.Jobs.Approve(j.ID, rv)
		} else {
			done, err = s.cfg.Jobs.Reject(j.ID, rv)
		}
		if errors.Is(err, jobs.ErrNotPending) {
			return errorf(http.StatusConflict, "Approval request %d is %s, not pending: only pending requests can be approved or rejected", id, j.Approval.Status)
		}
		if errors.Is(err, jobs.ErrNotFound) {
			return errorf(http.StatusNotFound, "Approval request not found: %d", id)
		}
		if err != nil {
			return err
		}
		out := reviewBody{Success: true, RequestID: id, JobID: done.ID, Status: done.Approval.Status, JobStatus: done.Status}
		uid := p.User.ID
		if approve {
			out.ApprovedBy = &uid
		} else {
			out.RejectedBy, out.Reason = &uid, rv.Notes
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
}

// approvalRuleBody is an approval rule in SimpleTuner's shape. This server evaluates no
// rules (jobs wait for approval only when submitted with for_approval), so the list is
// always empty; the type documents the shape.
type approvalRuleBody struct {
	ID                    int64    `json:"id"`
	Name                  string   `json:"name"`
	Description           string   `json:"description"`
	Condition             string   `json:"condition"`
	Threshold             string   `json:"threshold"`
	IsActive              bool     `json:"is_active"`
	Priority              int      `json:"priority"`
	AppliesToProvider     *string  `json:"applies_to_provider"`
	AppliesToLevel        *string  `json:"applies_to_level"`
	ExemptLevels          []string `json:"exempt_levels"`
	RequiredApproverLevel string   `json:"required_approver_level"`
	CreatedAt             string   `json:"created_at"`
	CreatedBy             *int64   `json:"created_by"`
}

type approvalRulesBody struct {
	Rules []approvalRuleBody `json:"rules"`
}

// listApprovalRules answers the rules this server applies: none.
func (s *Server) listApprovalRules(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) error {
	writeJSON(w, http.StatusOK, approvalRulesBody{Rules: []approvalRuleBody{}})
	return nil
}
