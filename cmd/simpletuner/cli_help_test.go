package main

import (
	"strings"
	"testing"
)

// TestEveryCommandAnswersHelp runs the real binary: every command and subcommand answers
// --help, -h and help asked after other flags with its usage on stdout and exit 0, and
// train's usage lists the training options the README points to.
func TestEveryCommandAnswersHelp(t *testing.T) {
	home := t.TempDir()
	commands := []struct {
		args []string
		want []string
	}{
		{nil, []string{"Usage:", "simpletuner server", "simpletuner workers <command>", "simpletuner help [COMMAND]", "--help"}},
		{[]string{"server"}, []string{"Usage: simpletuner server [flags]", "--port", "--config-dir", home}},
		{[]string{"train"}, []string{"Usage: simpletuner train --env NAME", "--env NAME", "--trainer-env", "Training options.", "\n  --learning_rate=FLOAT\n", "\n  --resolution=", "\n  --model_family="}},
		{[]string{"jobs"}, []string{"Usage: simpletuner jobs <command>", "submit NAME", "logs ID"}},
		{[]string{"jobs", "submit"}, []string{"Usage: simpletuner jobs submit NAME [flags]", "--no-wait", "--dry-run", "SIMPLETUNER_API_KEY", "--target", "slurm", "--label KEY=GLOB", "--priority N"}},
		{[]string{"jobs", "list"}, []string{"Usage: simpletuner jobs list [flags]", "--status", "--format"}},
		{[]string{"jobs", "status"}, []string{"Usage: simpletuner jobs status ID"}},
		{[]string{"jobs", "cancel"}, []string{"Usage: simpletuner jobs cancel ID"}},
		{[]string{"jobs", "logs"}, []string{"Usage: simpletuner jobs logs ID [flags]", "--follow"}},
		{[]string{"schedules"}, []string{"Usage: simpletuner schedules <command>", "create", "CRON_TZ="}},
		{[]string{"schedules", "list"}, []string{"Usage: simpletuner schedules list [flags]", "--format"}},
		{[]string{"schedules", "create"}, []string{"Usage: simpletuner schedules create NAME --cron SPEC", "--submit", "--target", "--missed", "--cleanup"}},
		{[]string{"schedules", "delete"}, []string{"Usage: simpletuner schedules delete ID"}},
		{[]string{"schedules", "run"}, []string{"Usage: simpletuner schedules run ID"}},
		{[]string{"workers"}, []string{"Usage: simpletuner workers <command>", "list [flags]", "create NAME", "drain ID", "delete ID", "token ID"}},
		{[]string{"workers", "list"}, []string{"Usage: simpletuner workers list [flags]", "--json", "--status", "SIMPLETUNER_API_KEY"}},
		{[]string{"workers", "create"}, []string{"Usage: simpletuner workers create NAME [flags]", "--ephemeral", "--label KEY=VALUE", "shown once"}},
		{[]string{"workers", "drain"}, []string{"Usage: simpletuner workers drain ID"}},
		{[]string{"workers", "delete"}, []string{"Usage: simpletuner workers delete ID [flags]", "--force"}},
		{[]string{"workers", "token"}, []string{"Usage: simpletuner workers token ID", "shown once"}},
		{[]string{"admin"}, []string{"Usage: simpletuner admin reset [flags]", "--password-stdin"}},
		{[]string{"admin", "reset"}, []string{"Usage: simpletuner admin reset [flags]", "--password-stdin", "--state-dir"}},
		{[]string{"version"}, []string{"Usage: simpletuner version"}},
	}
	// `simpletuner help COMMAND` is `simpletuner COMMAND --help`.
	commands = append(commands, struct {
		args []string
		want []string
	}{[]string{"help", "train"}, commands[2].want})
	for _, c := range commands {
		t.Run(strings.Join(append([]string{"simpletuner"}, c.args...), " "), func(t *testing.T) {
			t.Parallel() // each case starts processes: overlap their start-up
			for _, help := range [][]string{{"--help"}, {"-h"}, {"--env", "x", "--help"}} {
				args := append(append([]string{}, c.args...), help...)
				stdout, stderr, code := runCLI(t, home, "", args...)
				if code != 0 || stderr != "" {
					t.Errorf("simpletuner %s: exit %d, stderr %q", strings.Join(args, " "), code, stderr)
					continue
				}
				for _, w := range c.want {
					if !strings.Contains(stdout, w) {
						t.Errorf("simpletuner %s: usage lacks %q:\n%.600s", strings.Join(args, " "), w, stdout)
					}
				}
			}
		})
	}
	t.Run("the word help", func(t *testing.T) {
		t.Parallel()
		for _, c := range []struct{ args, want []string }{
			{[]string{"help"}, commands[0].want},
			{[]string{"help", "train"}, commands[2].want},
			{[]string{"jobs", "help"}, commands[3].want},
			{[]string{"schedules", "help"}, commands[9].want},
			{[]string{"workers", "help"}, commands[14].want},
			{[]string{"admin", "help"}, commands[20].want},
		} {
			stdout, stderr, code := runCLI(t, home, "", c.args...)
			if code != 0 || stderr != "" {
				t.Errorf("simpletuner %s: exit %d, stderr %q", strings.Join(c.args, " "), code, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("simpletuner %s: usage lacks %q", strings.Join(c.args, " "), w)
				}
			}
		}
	})
}

// TestUnknownOptionsStillFail: help is no catch-all, a mistyped option or command still
// exits non-zero with a message that names it.
func TestUnknownOptionsStillFail(t *testing.T) {
	home := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"server", "--bogus"}, "-bogus"},
		{[]string{"train", "--env", "x", "--bogus_option=1"}, "--bogus_option"},
		{[]string{"train"}, "--env NAME is required"},
		{[]string{"jobs", "bogus"}, `unknown command "bogus"`},
		{[]string{"jobs", "list", "--bogus"}, "-bogus"},
		{[]string{"jobs", "list", "extra"}, `unexpected argument "extra"`},
		{[]string{"jobs", "submit"}, "want exactly one environment name"},
		{[]string{"workers", "bogus"}, `unknown command "bogus"`},
		{[]string{"workers", "list", "--bogus"}, "-bogus"},
		{[]string{"workers", "token"}, "want exactly one worker id"},
		{[]string{"admin", "bogus"}, `unknown command "bogus"`},
		{[]string{"admin", "reset", "--bogus"}, "-bogus"},
	}
	for _, c := range cases {
		stdout, stderr, code := runCLI(t, home, "", c.args...)
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("simpletuner %s: exit %d, stderr %q (want a message with %q); stdout %.200q", strings.Join(c.args, " "), code, stderr, c.want, stdout)
		}
		if strings.Count(stderr, "flag provided but not defined") > 1 {
			t.Errorf("simpletuner %s: the flag error is printed twice: %q", strings.Join(c.args, " "), stderr)
		}
	}
}
