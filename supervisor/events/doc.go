// Package events is the daemon's event hub: it stores every job event (trainer events,
// job status changes, relayed trainer log lines) under a server-wide index, fans new
// events out to streaming clients over SSE and WebSocket, answers paged reads by index,
// and enforces retention.
//
// The store is the source of truth. An event is stored before it is published, so a
// client that joins (or falls behind) reads what it missed from the store and then
// continues live without a gap or a duplicate (events are deduplicated by index).
// Publishing never blocks: each client has a bounded buffer; a client whose buffer
// fills catches up from the store, and one that stops reading altogether is dropped
// when its write deadline passes. Trainers, and other clients, never wait for a client.
//
// Everything that reaches a client is sanitised once, before it is stored: control
// characters and ANSI escapes are stripped from titles, messages and log lines, long
// fields are truncated with a marker, and secrets (API keys, tokens, URLs with paths,
// *_TOKEN/*_KEY/*_SECRET assignments) are redacted. SSE frames are an id line, an
// event line whose name is restricted to a safe alphabet, and one data line of JSON,
// so no event content can forge a frame.
package events
