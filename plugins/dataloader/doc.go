// Package dataloader is the dataloader document — SimpleTuner's multidatabackend.json, a
// JSON list of dataset objects (docs/compatibility.md §13) — as both sides of the trainer contract read it. The
// daemon validates it when a dataloader is saved, when a configuration is validated and
// when a job starts (supervisor/configs adds what only the daemon can check: the folders
// on this machine); the trainer parses it to train (trainerproc/data). One parser gives
// one answer: a document the daemon accepts at start is one the trainer trains, and every
// problem reads the same on both sides.
//
// The schema is SimpleTuner's. A value SimpleTuner knows but this trainer does not
// implement (type "aws", caption_strategy "parquet", …) is a problem of its own kind,
// ErrUnsupported, so that a SimpleTuner document can still be stored; the daemon refuses
// to start it. Numbers may be written as numeric strings ("resolution": "64") and
// booleans as "true"/"false", as SimpleTuner's own readers convert them and form editors
// write them.
package dataloader
