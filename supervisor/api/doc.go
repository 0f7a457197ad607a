// Package api is the daemon's HTTP API: one route table (routes.go), the middleware that
// authenticates every request before its body is read, the OpenAPI document generated
// from that same table, and the handlers, one file per area.
//
// Every route is listed once in routes.go with its method, path, aliases, tag, access rule
// and request/response types; nothing registers routes anywhere else, so the table, the
// router and /openapi.json cannot drift apart (a test walks the router to prove it).
package api
