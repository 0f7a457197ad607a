// Package store keeps the daemon's durable state (users, sessions, API keys, settings, jobs,
// job events and hook runs) in badger, behind small typed stores.
//
// Layout of the state directory:
//
//	<state>/FORMAT      marker written once the database has been created; if it exists and
//	                    the database is missing or empty, Open refuses to start instead of
//	                    silently coming up empty (which would reopen first-admin setup)
//	<state>/badger/     the badger database (flock'd: a second daemon cannot open it)
//
// Every key is prefixed by its kind ("users/", "sessions/", …) so a store never sees another
// store's records. Values are JSON so an operator can inspect a dump. Secrets are never
// stored in clear: sessions and API keys are kept under the SHA-256 of the token.
package store
