//go:build !unix

package hfhub

// lockFile is a no-op where flock does not exist; the .incomplete/rename scheme still keeps
// blobs whole, at worst two processes download the same blob.
func lockFile(string) (func(), error) { return func() {}, nil }
