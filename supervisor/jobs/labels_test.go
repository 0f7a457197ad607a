package jobs

import (
	"strings"
	"testing"
)

func TestLabelsMatch(t *testing.T) {
	worker := map[string]string{"gpu_type": "a100-80gb", "team": "nlp", "region": "eu/west"}
	for _, tc := range []struct {
		name string
		want map[string]string
		have map[string]string
		ok   bool
	}{
		{"no labels match any worker", nil, worker, true},
		{"no labels match a worker without labels", map[string]string{}, nil, true},
		{"the tutorial's selector", map[string]string{"gpu_type": "a100*", "team": "nlp"}, worker, true},
		{"exact value", map[string]string{"team": "nlp"}, worker, true},
		{"glob does not match", map[string]string{"gpu_type": "h100*"}, worker, false},
		{"one of two labels fails", map[string]string{"gpu_type": "a100*", "team": "cv"}, worker, false},
		{"label absent on the worker", map[string]string{"zone": "*"}, worker, false},
		{"star requires the label to exist", map[string]string{"team": "*"}, worker, true},
		{"star matches an empty value", map[string]string{"team": "*"}, map[string]string{"team": ""}, true},
		{"star does not cross a slash", map[string]string{"region": "*"}, worker, false},
		{"slash spelled out", map[string]string{"region": "eu/*"}, worker, true},
		{"character class", map[string]string{"gpu_type": "[ab]100-??gb"}, worker, true},
		{"match is case-sensitive", map[string]string{"team": "NLP"}, worker, false},
		{"escaped star is literal", map[string]string{"team": `nl\*`}, map[string]string{"team": "nl*"}, true},
		{"malformed pattern matches nothing", map[string]string{"team": "[nlp"}, worker, false},
		{"worker without labels", map[string]string{"team": "nlp"}, nil, false},
	} {
		if got := LabelsMatch(tc.want, tc.have); got != tc.ok {
			t.Errorf("%s: LabelsMatch(%v, %v) = %v, want %v", tc.name, tc.want, tc.have, got, tc.ok)
		}
	}
}

func TestValidateLabels(t *testing.T) {
	many := map[string]string{}
	for i := range maxLabels + 1 {
		many[strings.Repeat("k", i+1)] = "*"
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		err    string // "" for valid
	}{
		{"nil", nil, ""},
		{"the tutorial's selector", map[string]string{"gpu_type": "a100*", "team": "nlp"}, ""},
		{"empty pattern", map[string]string{"team": ""}, ""},
		{"empty name", map[string]string{"": "x"}, "empty name"},
		{"long name", map[string]string{strings.Repeat("n", maxLabelKey+1): "x"}, "longer than 63"},
		{"long pattern", map[string]string{"k": strings.Repeat("*", maxLabelGlob+1)}, "longer than 256"},
		{"malformed class", map[string]string{"gpu_type": "[a100"}, `pattern "[a100" of "gpu_type" is not a valid glob`},
		{"trailing escape", map[string]string{"t": `a\`}, "not a valid glob"},
		{"too many", many, "at most 32"},
	} {
		err := ValidateLabels(tc.labels)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: got %v, want an error with %q", tc.name, err, tc.err)
		}
	}
}
