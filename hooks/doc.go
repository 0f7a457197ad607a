// Package hooks runs external scripts for the daemon and the trainer: placeholder
// expansion into argv, exec without a shell, timeouts and capped output.
//
// A hook is a command template such as
//
//	/opt/hooks/upload.sh --ckpt {local_checkpoint_path} --step={global_step}
//
// Expand splits the template once into words (POSIX-shell-like quoting of the template
// itself: '…', "…" and backslash escapes), then substitutes {placeholder} fields inside
// each word. A placeholder value therefore always lands in exactly one argv element, whatever
// spaces, quotes or shell metacharacters it holds, and nothing is ever expanded a second
// time: no $VAR, no ~, no globbing, no shell. This is stricter than SimpleTuner, which
// formats first and then runs expandvars/expanduser and shlex.split over the result, so a
// value with a space in it became two arguments there.
//
// Run executes an expanded argv in its own process group with a minimal environment
// (PATH, HOME, LANG and ST_<PLACEHOLDER> for every placeholder value), a timeout that kills
// the whole group, and output capped in memory.
package hooks
