package checkpoint

import (
	"errors"
	"reflect"
	"testing"

	"simpletuner/plugins"
)

func TestParseResumeSpec(t *testing.T) {
	cases := []struct {
		in   string
		want ResumeSpec
		err  error
	}{
		{"", ResumeSpec{Kind: ResumeNone}, nil},
		{"None", ResumeSpec{Kind: ResumeNone}, nil},
		{"latest", ResumeSpec{Kind: ResumeLatest}, nil},
		{" LATEST ", ResumeSpec{Kind: ResumeLatest}, nil},
		{"checkpoint-500", ResumeSpec{Kind: ResumeName, Name: "checkpoint-500"}, nil},
		{"checkpoint-300-rolling", ResumeSpec{Kind: ResumeName, Name: "checkpoint-300-rolling"}, nil},
		{"/out/run/checkpoint-500/", ResumeSpec{Kind: ResumePath, Path: "/out/run/checkpoint-500"}, nil},
		{"/backups/my-ckpt", ResumeSpec{Kind: ResumePath, Path: "/backups/my-ckpt"}, nil},
		{"s3://bucket/run/checkpoint-5", ResumeSpec{}, ErrInvalid},
		{"checkpoint-abc", ResumeSpec{}, ErrInvalid},
		{"out/checkpoint-5", ResumeSpec{}, ErrInvalid},
		{"../checkpoint-5", ResumeSpec{}, ErrInvalid},
	}
	for _, c := range cases {
		got, err := ParseResumeSpec(c.in)
		if !errors.Is(err, c.err) || (c.err == nil && err != nil) {
			t.Errorf("ParseResumeSpec(%q) err = %v, want %v", c.in, err, c.err)
			continue
		}
		if got != c.want {
			t.Errorf("ParseResumeSpec(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

func refs(specs ...string) []Ref {
	var out []Ref
	for _, s := range specs {
		complete := true
		if s[0] == '!' { // "!" marks an incomplete checkpoint
			complete, s = false, s[1:]
		}
		step, rolling, ok := plugins.ParseCheckpointName(s)
		if !ok {
			panic(s)
		}
		out = append(out, Ref{Name: s, Step: step, Rolling: rolling, Complete: complete})
	}
	return out
}

func names(rs []Ref) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func TestPlanPrune(t *testing.T) {
	leased := func(ns ...string) func(string) bool {
		return func(n string) bool {
			for _, x := range ns {
				if x == n {
					return true
				}
			}
			return false
		}
	}
	cases := []struct {
		name   string
		refs   []Ref
		just   string
		r      Retention
		leased func(string) bool
		want   []string
	}{
		{"unlimited", refs("checkpoint-100", "checkpoint-200", "checkpoint-300"), "checkpoint-300", Retention{}, nil, []string{}},
		{"keep 2", refs("checkpoint-100", "checkpoint-200", "checkpoint-300"), "checkpoint-300", Retention{TotalLimit: 2}, nil, []string{"checkpoint-100"}},
		{"keep 1", refs("checkpoint-300", "checkpoint-100", "checkpoint-200"), "checkpoint-300", Retention{TotalLimit: 1}, nil, []string{"checkpoint-100", "checkpoint-200"}},
		{"under limit", refs("checkpoint-100"), "checkpoint-100", Retention{TotalLimit: 1}, nil, []string{}},
		{"numeric not lexical order", refs("checkpoint-900", "checkpoint-1000"), "checkpoint-1000", Retention{TotalLimit: 1}, nil, []string{"checkpoint-900"}},
		{"just saved is older", refs("checkpoint-100", "checkpoint-200", "checkpoint-500"), "checkpoint-200", Retention{TotalLimit: 1}, nil, []string{"checkpoint-100"}},
		{"leased survives", refs("checkpoint-100", "checkpoint-200", "checkpoint-300"), "checkpoint-300", Retention{TotalLimit: 1}, leased("checkpoint-100"), []string{"checkpoint-200"}},
		{"all leased", refs("checkpoint-100", "checkpoint-200", "checkpoint-300"), "checkpoint-300", Retention{TotalLimit: 1}, leased("checkpoint-100", "checkpoint-200"), []string{}},
		{"incomplete neither counted nor pruned", refs("checkpoint-100", "!checkpoint-200", "checkpoint-300"), "checkpoint-300", Retention{TotalLimit: 2}, nil, []string{}},
		{"incomplete newest does not push out a complete one", refs("checkpoint-100", "!checkpoint-400"), "checkpoint-100", Retention{TotalLimit: 1}, nil, []string{}},
		{"rolling counted separately", refs("checkpoint-100", "checkpoint-150-rolling", "checkpoint-200", "checkpoint-250-rolling", "checkpoint-300"), "checkpoint-300",
			Retention{TotalLimit: 2, RollingTotalLimit: 1}, nil, []string{"checkpoint-100", "checkpoint-150-rolling"}},
		{"rolling unlimited", refs("checkpoint-150-rolling", "checkpoint-250-rolling", "checkpoint-300"), "checkpoint-300", Retention{TotalLimit: 1}, nil, []string{}},
		{"negative is unlimited", refs("checkpoint-1", "checkpoint-2"), "checkpoint-2", Retention{TotalLimit: -1}, nil, []string{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := names(PlanPrune(c.refs, c.just, c.r, c.leased))
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("PlanPrune = %v, want %v", got, c.want)
			}
		})
	}
}

func TestResumeOrder(t *testing.T) {
	got := names(ResumeOrder(refs("checkpoint-100", "checkpoint-300-rolling", "checkpoint-1000", "checkpoint-300", "checkpoint-20")))
	want := []string{"checkpoint-1000", "checkpoint-300", "checkpoint-300-rolling", "checkpoint-100", "checkpoint-20"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ResumeOrder = %v, want %v", got, want)
	}
}
