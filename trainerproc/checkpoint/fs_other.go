//go:build !unix

package checkpoint

// noFollow is unavailable here; verification still rejects symlinks found by ReadDir.
const noFollow = 0
