package api

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// loopbackHost reports whether host, a request's Host header with or without a port,
// names this machine: "localhost", an address in 127.0.0.0/8 or ::1, or one of the names
// the operator allowed (--allowed-host). Before setup, a loopback peer is the implicit
// administrator only when it also names the server this way: a web page on
// http://attacker.example:PORT whose name the attacker re-points at 127.0.0.1 (DNS
// rebinding) reaches us from a loopback peer, same-origin as far as the browser knows,
// but with its own name in Host. Other spellings (*.localhost, 127.1, decimal addresses)
// are refused: browsers send loopback addresses in the canonical form, and anything else
// can be allowed by name. See docs/security.md.
func loopbackHost(host string, allowed []string) bool {
	name := hostName(host)
	if name == "" {
		return false
	}
	if name == "localhost" {
		return true
	}
	if a, err := netip.ParseAddr(name); err == nil {
		if a.Zone() == "" && a.Unmap().IsLoopback() {
			return true
		}
	}
	for _, n := range allowed {
		if hostName(n) == name {
			return true
		}
	}
	return false
}

// hostName is the name part of a Host header, lower-cased, without port, IPv6 brackets
// or a trailing dot; "" when it cannot be parsed.
func hostName(host string) string {
	host = strings.TrimSpace(host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// localBeforeSetup reports whether, before the first administrator exists, r acts as the
// local administrator: a caller on this machine (isLocal) that names it by a loopback
// name or an allowed one.
func (s *Server) localBeforeSetup(r *http.Request) bool {
	return s.isLocal(r) && loopbackHost(r.Host, s.cfg.AllowedHosts)
}

// errForeignHost answers a caller on this machine that named the server by another name
// before setup.
var errForeignHost = errorf(http.StatusForbidden, "No administrator exists yet, and this request names the server by a host that is not a loopback name, as a web page using DNS rebinding would. "+
	"Send it to http://localhost:PORT or http://127.0.0.1:PORT, start the server with --allowed-host NAME to accept that name, "+
	"or send the contents of the bootstrap token file in the state directory as the X-Setup-Token header to create the first administrator")
