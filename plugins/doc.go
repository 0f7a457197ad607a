// Package plugins is the trainer plugin contract shared by the daemon (supervisor/jobs) and
// the trainer processes (trainerproc): the Trainer interface, the versioned go-plugin
// handshake, the thin gRPC client and server shims (proto/ holds the protocol and its
// generated code), the files a trainer leaves in its job directory for a daemon that was
// not there to see it finish (the event spool and the exit record), and every format both
// sides read: the event types (Event*) and the checkpoint event's data (CheckpointData),
// the checkpoint folders' names (CheckpointName, ParseCheckpointName), and the dataloader
// document (package plugins/dataloader). Nothing else lives here, and it imports neither
// side.
//
// A trainer binary serves one job:
//
//	daemon                                   trainer (setsid, logs to files only)
//	  │ go-plugin launch (unix socket in <home>/run) ─▶ plugins.Serve(impl)
//	  │ Status ─────────────────────────────────────▶ identity: pid, nonce, state
//	  │ Start(job) ─────────────────────────────────▶ trains; spools events.ndjson
//	  │ Events(since_seq) ◀── stream ───────────────  replay from the spool, then live
//	  │ Command(checkpoint|validation|stop|cancel) ─▶ acts after the next gradient sync
//	  ✕ daemon dies: the trainer keeps running
//	  │ new daemon: Reattach(socket, pid) → Status (nonce must match) → Events(last seq)
//	                                               exit.json written atomically at the end
//
//go:generate ./generate.sh
package plugins
