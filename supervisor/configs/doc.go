// Package configs stores training environments on disk, laid out as SimpleTuner's config
// store does (docs/compatibility.md §4): an environment <name> is <root>/<name>/config.json, the
// metadata sidecar <root>/<name>/.metadata.json and, normally, the dataloader
// <root>/<name>/multidatabackend.json. Legacy root-level <root>/<name>.json files are
// still read. Webhook configs live under <root>/webhooks/.
//
// The service validates names, coerces and checks configs with the options registry,
// validates dataloader JSON (ValidateDataloader: the trainer's parser, plugins/dataloader,
// plus the folders on this machine), writes every file atomically (temp
// file, fsync, rename, fsync of the directory) and serialises writers, so two concurrent
// PUTs never interleave. It knows no HTTP: the API layer maps its sentinel errors and
// *ValidationError to statuses.
package configs
