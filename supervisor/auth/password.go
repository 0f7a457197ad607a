package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters: OWASP's minimum profile (19 MiB, 2 passes, 1 lane). They are stored
// in every hash (PHC format), so raising them later only affects new hashes.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
	argonSaltLen   = 16

	// MinPasswordLen and MaxPasswordLen bound accepted passwords. The upper bound keeps
	// hashing cheap to refuse; the lower one matches SimpleTuner's.
	MinPasswordLen = 8
	MaxPasswordLen = 1024
)

// Hasher hashes and verifies passwords with argon2id. Each hash takes 19 MiB, so it bounds
// how many run at once: a flood of logins must not take the daemon's memory.
type Hasher struct {
	sem   chan struct{} // one token per hash allowed to run
	dummy string        // a real hash to verify against for unknown users (equal timing)

	// returning is set while a memory return is scheduled (see release).
	returning atomic.Bool
}

// NewHasher returns a Hasher allowing `parallel` concurrent hashes.
func NewHasher(parallel int) *Hasher {
	if parallel < 1 {
		parallel = 1
	}
	h := &Hasher{sem: make(chan struct{}, parallel)}
	h.dummy = h.hash([]byte("dummy password for timing equality"))
	debug.FreeOSMemory()
	return h
}

// Hash returns the PHC string of password. It waits for a free slot until ctx is done,
// then fails with ErrBusy.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	return h.hash([]byte(password)), nil
}

func (h *Hasher) hash(pw []byte) string {
	salt := make([]byte, argonSaltLen)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails on Linux (Go ≥1.24 panics instead)
	key := argon2.IDKey(pw, salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemoryKiB, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key))
}

// Verify reports whether password matches the PHC string. An empty phc verifies against a
// dummy hash and returns false, so unknown users cost the same time as known ones.
func (h *Hasher) Verify(ctx context.Context, phc, password string) (bool, error) {
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	if phc == "" {
		_, _ = verifyPHC(h.dummy, []byte(password))
		return false, nil
	}
	return verifyPHC(phc, []byte(password))
}

func (h *Hasher) acquire(ctx context.Context) error {
	// A free slot is taken even when ctx is already done: select picks at random among
	// ready cases, and a caller descheduled past its deadline must not be told "busy"
	// by an idle hasher.
	select {
	case h.sem <- struct{}{}:
		return nil
	default:
	}
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ErrBusy
	}
}

// release frees the slot. When the last running hash ends, the 19 MiB buffers it used are
// handed back to the OS shortly after: logins are rare, and without this an idle daemon
// would keep tens of megabytes of argon2 garbage resident until the scavenger gets to it.
func (h *Hasher) release() {
	<-h.sem
	if len(h.sem) == 0 && h.returning.CompareAndSwap(false, true) {
		time.AfterFunc(200*time.Millisecond, func() {
			h.returning.Store(false)
			if len(h.sem) == 0 {
				debug.FreeOSMemory()
			}
		})
	}
}

// verifyPHC checks pw against an argon2id PHC string.
func verifyPHC(phc string, pw []byte) (bool, error) {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, fmt.Errorf("unsupported password hash format")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, fmt.Errorf("unsupported argon2 version %q", parts[2])
	}
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false, fmt.Errorf("bad argon2 parameters %q: %w", parts[3], err)
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, fmt.Errorf("bad salt: %w", err)
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil {
		return false, fmt.Errorf("bad key: %w", err)
	}
	got := argon2.IDKey(pw, salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
