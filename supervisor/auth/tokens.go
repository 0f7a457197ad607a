package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

const (
	// APIKeyPrefix starts every API key, so keys are recognisable in leaks and by scanners.
	APIKeyPrefix = "st_"
	apiKeyBody   = 32
	alnum        = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// NewAPIKey returns a fresh key: "st_" and 32 characters of [A-Za-z0-9] (about 190 bits).
func NewAPIKey() string {
	var b strings.Builder
	b.WriteString(APIKeyPrefix)
	buf := make([]byte, 64)
	for b.Len() < len(APIKeyPrefix)+apiKeyBody {
		_, _ = rand.Read(buf)
		for _, c := range buf {
			// 248 = 4×62: rejection sampling keeps every character equally likely.
			if c < 248 && b.Len() < len(APIKeyPrefix)+apiKeyBody {
				b.WriteByte(alnum[int(c)%len(alnum)])
			}
		}
	}
	return b.String()
}

// LooksLikeAPIKey reports whether s has the shape of a key (not whether it is valid).
func LooksLikeAPIKey(s string) bool {
	if len(s) != len(APIKeyPrefix)+apiKeyBody || !strings.HasPrefix(s, APIKeyPrefix) {
		return false
	}
	for _, c := range s[len(APIKeyPrefix):] {
		if !strings.ContainsRune(alnum, c) {
			return false
		}
	}
	return true
}

// NewSessionToken returns 32 random bytes, base64url-encoded.
func NewSessionToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// HashToken is the SHA-256 (hex) under which sessions and API keys are stored. Tokens are
// high-entropy, so a fast hash suffices.
func HashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}
