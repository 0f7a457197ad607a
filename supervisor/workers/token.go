package workers

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
)

// idAlphabet is URL-safe base64's alphabet; worker ids are "worker-" and 11 of them
// (66 bits), as SimpleTuner's are.
const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// newWorkerID returns a fresh random worker id.
func newWorkerID() string {
	var b [11]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather than return short)
	id := make([]byte, 0, len("worker-")+len(b))
	id = append(id, "worker-"...)
	for _, c := range b {
		id = append(id, idAlphabet[c&63])
	}
	return string(id)
}

// newToken returns a fresh worker token (32 random bytes, URL-safe base64) and the hash
// that is all the registry keeps of it.
func newToken() (token, hash string) {
	var b [32]byte
	rand.Read(b[:])
	token = base64.RawURLEncoding.EncodeToString(b[:])
	return token, hashToken(token)
}

// hashToken is the SHA-256 (hex) of a token, as stored.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// sameHash compares two token hashes in constant time.
func sameHash(a, b string) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
