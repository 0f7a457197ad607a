package jobs

import (
	"fmt"
	"path"
	"sort"
	"unicode/utf8"
)

// Limits on a job's worker labels: a selector names a few properties of a machine, and
// the whole map is stored with the job.
const (
	maxLabels    = 32
	maxLabelKey  = 63
	maxLabelGlob = 256
)

// LabelsHelp says what worker_labels looks like, for messages that refuse another shape.
const LabelsHelp = `worker_labels is an object of label name to glob pattern, e.g. {"gpu_type":"a100*","team":"nlp"}`

// ValidateLabels checks a job's worker selector (label name → glob pattern, path.Match
// syntax: * ? [a-z] and \ escapes): at most 32 labels, non-empty names of at most 63
// characters, patterns of at most 256 that path.Match accepts. The error says which
// label is wrong and how; nil or empty labels are valid (no constraint).
func ValidateLabels(labels map[string]string) error {
	if len(labels) > maxLabels {
		return fmt.Errorf("%d labels, where at most %d are allowed", len(labels), maxLabels)
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the same label first every time
	for _, k := range keys {
		glob := labels[k]
		switch {
		case k == "":
			return fmt.Errorf("a label has an empty name (%s)", LabelsHelp)
		case utf8.RuneCountInString(k) > maxLabelKey:
			return fmt.Errorf("label name %.20q… is longer than %d characters", k, maxLabelKey)
		case utf8.RuneCountInString(glob) > maxLabelGlob:
			return fmt.Errorf("the pattern of %q is longer than %d characters", k, maxLabelGlob)
		}
		// path.Match checks the whole pattern, whatever it is matched against.
		if _, err := path.Match(glob, ""); err != nil {
			return fmt.Errorf("the pattern %q of %q is not a valid glob (use * ? [a-z], and \\ to escape)", glob, k)
		}
	}
	return nil
}

// LabelsMatch decides whether a worker whose labels are have may run a job that asks for
// want: every wanted label must be present on the worker and its value must match the
// wanted glob with path.Match semantics (so "a100*" matches "a100-80gb", and "*" only
// requires the label to exist). Labels the job does not name do not matter, and a job
// with no labels matches every worker. A malformed pattern matches nothing; ValidateLabels
// refuses it at submission.
func LabelsMatch(want, have map[string]string) bool {
	for k, glob := range want {
		v, ok := have[k]
		if !ok {
			return false
		}
		if m, err := path.Match(glob, v); err != nil || !m {
			return false
		}
	}
	return true
}
