// Package clihelp decides whether a command line asks for help. Every command of the
// simpletuner binary and of the trainer binaries asks it before parsing anything else, so
// that --help and -h answer with the command's usage (on stdout, exit 0) wherever they
// stand on the line: before a required flag is checked, between training options, after
// a positional argument.
package clihelp

import "strings"

// Asked reports whether args ask for help: an argument -h, --h, -help or --help, with or
// without "=value" (the spellings Go's flag package takes for help), anywhere before a
// "--" that ends the options. The word "help" is a subcommand, not a flag: callers that
// take it check for it themselves.
func Asked(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		name, _, _ = strings.Cut(name, "=")
		if name == "h" || name == "help" {
			return true
		}
	}
	return false
}
