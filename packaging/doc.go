// Package packaging holds the files that deploy simpletuner: the systemd
// unit, the Dockerfile, reverse-proxy snippets for nginx and Caddy, and a Grafana
// dashboard over the daemon's GET /metrics (see README.md in this directory).
//
// The package has no code of its own. Its tests parse those files and
// assert the settings the daemon depends on (Type=notify, KillMode=process
// so trainers survive restarts, no PrivateTmp, unbuffered event streams),
// and run systemd-analyze, nginx and caddy on them when those are installed. The
// dashboard's test checks that each of its queries names only series the daemon exports.
package packaging
