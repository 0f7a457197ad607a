// Package plugins holds the trainer plugin contract shared by the daemon and the trainer:
// the protocol definition, its generated code, the handshake and the thin gRPC shims.
// Nothing else lives here, and it imports neither side.
package plugins
