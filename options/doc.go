// Package options is the one registry of training options the trainer understands:
// each option's canonical --flag name, aliases, type, default, allowed values or range,
// help text, the model families and model types it applies to, the permission needed
// to set it, whether it stays in the daemon, and its help category.
//
// Everything that touches a training configuration goes through it: coercion of form
// fields and JSON config maps into typed values, the merge of registry defaults, the
// active environment and submitted fields into a resolved Config (with the source of
// every value), validation with messages a person can act on (SimpleTuner's wording
// where it has one), path resolution for config-relative JSON files and the output
// directory, serialisation back to "--key" maps and "--key=value" argv, and the help
// text and option listing that the CLI and the OpenAPI description are rendered from.
//
// The package is data and parsing only: it serves no HTTP and imports neither the
// daemon nor the trainer.
package options
