// Package auth owns accounts, sessions, API keys, permissions and login throttling.
//
// It knows nothing of HTTP: the API layer turns requests into calls here and maps the
// sentinel errors below to status codes. Secrets never reach the store in clear: passwords
// are argon2id PHC strings, session tokens and API keys are kept as SHA-256 digests.
package auth
