// Package events is the daemon's event hub: it stores every job event (trainer events,
// job status changes, relayed trainer log lines) under a server-wide index, fans new
// events out to streaming clients over SSE and WebSocket, answers paged reads by index,
// and enforces retention.
//
// The store is the source of truth. An event is stored before it is published, so a
// client that joins (or falls behind) reads what it missed from the store and then
// continues live without a gap or a duplicate (events are deduplicated by index).
//
// Publishing encodes each event once and appends it to a ring of recent frames that
// every stream reads at its own pace, by index; nothing is queued per client, so
// publishing never blocks. A stream writes at most once per flush interval (events that
// arrive meanwhile go out together, which bounds the system calls per client whatever
// the event rate); a client further behind than the ring holds reads the store, and
// one that stops reading altogether is dropped when its write deadline passes.
// Trainers, and other clients, never wait for a client.
//
// Everything that reaches a client is sanitised once, before it is stored: control
// characters and ANSI escapes are stripped from titles, messages and log lines, long
// fields are truncated with a marker, and secrets (API keys, tokens, URLs with paths,
// *_TOKEN/*_KEY/*_SECRET assignments) are redacted. SSE frames are an id line, an
// event line whose name is restricted to a safe alphabet, and one data line of JSON,
// so no event content can forge a frame.
package events
