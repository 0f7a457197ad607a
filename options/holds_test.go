package options

import "testing"

func TestHoldsHonoursWildcards(t *testing.T) {
	cases := []struct {
		perms []string
		want  bool
	}{
		{nil, false},
		{[]string{"job.submit"}, false},
		{[]string{PermHooks}, true},
		{[]string{"*"}, true},
		{[]string{"job.*"}, true},
		{[]string{"jobs.*"}, false},
	}
	for _, c := range cases {
		if got := holds(c.perms, PermHooks); got != c.want {
			t.Errorf("%v: got %v", c.perms, got)
		}
	}
}
