// Package buildinfo carries the version stamped into the binaries at link time.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// Version and Commit are set with -ldflags -X by the Makefile. They are variables only
// because the linker can set nothing else; nothing in the program assigns them.
var (
	Version = "dev"
	Commit  = ""
)

// Info describes the running build, in the shape of GET /api/version.
type Info struct {
	Version    string  `json:"version"`
	Major      int     `json:"major"`
	GitInstall bool    `json:"git_install"`
	GitCommit  *string `json:"git_commit"`
	GitDirty   *bool   `json:"git_dirty"`
	GoVersion  string  `json:"go_version"`
}

// Get returns the build information of this binary.
func Get() Info {
	info := Info{Version: Version, GoVersion: "unknown"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		info.GoVersion = bi.GoVersion
	}
	v := strings.TrimPrefix(Version, "v")
	for _, c := range v {
		if c < '0' || c > '9' {
			break
		}
		info.Major = info.Major*10 + int(c-'0')
	}
	if Commit != "" {
		c := Commit
		info.GitCommit = &c
		dirty := strings.HasSuffix(Version, "-dirty")
		info.GitDirty = &dirty
	}
	return info
}
