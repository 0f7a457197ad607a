// Package daemon assembles and runs the simpletuner server: it opens the state, builds the
// services and the HTTP API, listens (plain or TLS), tells systemd when it is ready, and
// drains on shutdown. cmd/simpletuner parses flags into a Config and calls Run.
package daemon
