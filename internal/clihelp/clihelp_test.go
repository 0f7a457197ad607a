package clihelp

import "testing"

func TestAsked(t *testing.T) {
	cases := []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{}, false},
		{[]string{"--help"}, true},
		{[]string{"-h"}, true},
		{[]string{"-help"}, true},
		{[]string{"--h"}, true},
		{[]string{"--help=true"}, true},
		{[]string{"--env", "x", "--help"}, true},
		{[]string{"--env", "x", "--learning_rate=1e-4", "-h"}, true},
		{[]string{"submit", "demo", "--help"}, true},
		{[]string{"help"}, false}, // a subcommand word, not a flag
		{[]string{"--env", "help"}, false},
		{[]string{"---help"}, false},
		{[]string{"--helpful"}, false},
		{[]string{"-hx"}, false},
		{[]string{"--validation_prompt=--help"}, false},
		{[]string{"--", "--help"}, false}, // after "--" it is an argument
		{[]string{"-h", "--"}, true},
		{[]string{"-"}, false},
	}
	for _, c := range cases {
		if got := Asked(c.args); got != c.want {
			t.Errorf("Asked(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}
