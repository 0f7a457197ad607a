package auth

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"simpletuner/store"
)

// LoginLimits configures login throttling.
type LoginLimits struct {
	// PerIPBurst attempts are allowed per client address, refilled at PerIPRate per second.
	PerIPBurst int
	PerIPRate  float64
	// FreeFailures per account before the account is soft-locked; each further failure
	// doubles the lock, starting at BaseLock and capped at MaxLock. A lock always expires:
	// a permanent lockout would let anyone lock the administrator out.
	FreeFailures int
	BaseLock     time.Duration
	MaxLock      time.Duration
}

// DefaultLoginLimits are 15 attempts per minute per address (as SimpleTuner) and a
// per-account lock after 5 failures, 1 s doubling to 15 min.
func DefaultLoginLimits() LoginLimits {
	return LoginLimits{PerIPBurst: 15, PerIPRate: 15.0 / 60, FreeFailures: 5, BaseLock: time.Second, MaxLock: 15 * time.Minute}
}

// LoginLimiter throttles login attempts per client address and per account. It is safe for
// concurrent use; mu guards both maps.
type LoginLimiter struct {
	limits LoginLimits
	now    func() time.Time

	mu       sync.Mutex
	buckets  map[string]*bucket // by client address
	accounts map[string]*accountState
}

type bucket struct {
	tokens float64
	last   time.Time
}

type accountState struct {
	failures    int
	lockedUntil time.Time
	last        time.Time
}

// NewLoginLimiter returns a limiter using clock now (time.Now in production).
func NewLoginLimiter(l LoginLimits, now func() time.Time) *LoginLimiter {
	if now == nil {
		now = time.Now
	}
	return &LoginLimiter{limits: l, now: now, buckets: map[string]*bucket{}, accounts: map[string]*accountState{}}
}

// Allow charges one attempt to addr and checks the account's lock. It returns a
// *RateLimitError when the caller must wait.
func (l *LoginLimiter) Allow(addr, account string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.gc(now)
	b := l.buckets[addr]
	if b == nil {
		b = &bucket{tokens: float64(l.limits.PerIPBurst), last: now}
		l.buckets[addr] = b
	}
	b.tokens = min(float64(l.limits.PerIPBurst), b.tokens+now.Sub(b.last).Seconds()*l.limits.PerIPRate)
	b.last = now
	if b.tokens < 1 {
		wait := time.Duration((1 - b.tokens) / l.limits.PerIPRate * float64(time.Second))
		return &RateLimitError{RetryAfter: wait}
	}
	if a := l.accounts[normAccount(account)]; a != nil && now.Before(a.lockedUntil) {
		return &RateLimitError{RetryAfter: a.lockedUntil.Sub(now)}
	}
	b.tokens--
	return nil
}

// Failed records a failed password check for the account.
func (l *LoginLimiter) Failed(account string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	key := normAccount(account)
	a := l.accounts[key]
	if a == nil {
		a = &accountState{}
		l.accounts[key] = a
	}
	a.failures++
	a.last = now
	if over := a.failures - l.limits.FreeFailures; over > 0 {
		lock := l.limits.BaseLock
		for i := 1; i < over && lock < l.limits.MaxLock; i++ {
			lock *= 2
		}
		a.lockedUntil = now.Add(min(lock, l.limits.MaxLock))
	}
}

// Succeeded clears the account's failures.
func (l *LoginLimiter) Succeeded(account string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.accounts, normAccount(account))
}

// gc drops state that no longer limits anyone, so the maps stay bounded by recent
// activity. Called with mu held.
func (l *LoginLimiter) gc(now time.Time) {
	if len(l.buckets)+len(l.accounts) < 4096 {
		return
	}
	for k, b := range l.buckets {
		if now.Sub(b.last).Seconds()*l.limits.PerIPRate >= float64(l.limits.PerIPBurst) {
			delete(l.buckets, k)
		}
	}
	for k, a := range l.accounts {
		if now.After(a.lockedUntil) && now.Sub(a.last) > l.limits.MaxLock {
			delete(l.accounts, k)
		}
	}
}

func normAccount(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// accountKey is the limiter's account for a login attempt: the resolved user, so that its
// username and e-mail share one failure count, or, for a login that names no account, the
// login string itself (unknown logins are throttled as a real account would be).
func accountKey(u *store.User, login string) string {
	if u != nil {
		return "user:" + strconv.FormatInt(u.ID, 10)
	}
	return "login:" + normAccount(login)
}
