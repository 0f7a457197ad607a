// Package hfhub resolves files of Hugging Face Hub repositories through the standard local
// Hugging Face cache (HF_HOME / HF_HUB_CACHE, models--org--name/{refs,snapshots,blobs}) and
// downloads missing ones over the Hub's HTTP API. The cache layout is the one Python's
// huggingface_hub uses, so files downloaded by Python tools are reused here and files
// downloaded here are reused by them.
package hfhub

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultEndpoint is the Hub used when HF_ENDPOINT is not set.
const DefaultEndpoint = "https://huggingface.co"

// ModelIndexFile is the file at the top of a diffusers pipeline naming its components.
const ModelIndexFile = "model_index.json"

// Config says where the cache lives, which Hub to talk to, with which token, and whether the
// network may be used at all. Build it with ConfigFromEnv so the environment variables mean
// what they mean to Python tools sharing the same cache.
type Config struct {
	// CacheDir is the hub cache directory (the parent of the models--… folders).
	CacheDir string
	// Endpoint is the Hub's base URL, without a trailing slash.
	Endpoint string
	// Token is sent as "Authorization: Bearer <token>" to the Hub (never to a CDN on
	// another host); empty means anonymous.
	Token string
	// Offline forbids every network access (HF_HUB_OFFLINE=1): only cached files resolve.
	Offline bool
	// DisableSymlinks stores files in snapshots/ themselves instead of symlinks to blobs/
	// (HF_HUB_DISABLE_SYMLINKS), for filesystems without symlinks; it is also the fallback
	// when creating a symlink fails.
	DisableSymlinks bool
	// EtagTimeout bounds each metadata request (HF_HUB_ETAG_TIMEOUT); 0 means 10 s.
	EtagTimeout time.Duration
	// DownloadTimeout is how long a download may receive nothing before the connection is
	// dropped and the transfer resumed (HF_HUB_DOWNLOAD_TIMEOUT); 0 means 10 s.
	DownloadTimeout time.Duration
}

// defaultTimeout is huggingface_hub's default for both timeouts.
const defaultTimeout = 10 * time.Second

func orDefault(d time.Duration) time.Duration {
	if d <= 0 {
		return defaultTimeout
	}
	return d
}

// ConfigFromEnv reads the configuration the way huggingface_hub does. getenv is usually
// os.Getenv (a parameter so tests need not touch the process environment); homeDir is the
// user's home directory, used for the ~/.cache/huggingface default and "~" expansion.
//
//   - HF home: HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface.
//   - Hub cache: HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE (legacy), else $HF_HOME/hub.
//   - Endpoint: HF_ENDPOINT (trailing "/" removed), else DefaultEndpoint.
//   - Token: HF_TOKEN, else HUGGING_FACE_HUB_TOKEN, else the file HF_TOKEN_PATH (default
//     $HF_HOME/token); none at all when HF_HUB_DISABLE_IMPLICIT_TOKEN is true.
//   - Offline: HF_HUB_OFFLINE if set (even to a false value), else TRANSFORMERS_OFFLINE.
//   - HF_HUB_DISABLE_SYMLINKS: files are placed in snapshots/ rather than linked.
//   - Timeouts: HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT, whole seconds (0 or
//     unparsable means the 10 s default).
func ConfigFromEnv(getenv func(string) string, homeDir string) Config {
	expand := func(p string) string {
		p = os.Expand(p, getenv)
		if p == "~" {
			return homeDir
		}
		if strings.HasPrefix(p, "~/") {
			return filepath.Join(homeDir, p[2:])
		}
		return p
	}
	home := getenv("HF_HOME")
	if home == "" {
		xdg := getenv("XDG_CACHE_HOME")
		if xdg == "" {
			xdg = filepath.Join(homeDir, ".cache")
		}
		home = filepath.Join(xdg, "huggingface")
	}
	home = expand(home)

	cache := getenv("HF_HUB_CACHE")
	if cache == "" {
		cache = getenv("HUGGINGFACE_HUB_CACHE")
	}
	if cache == "" {
		cache = filepath.Join(home, "hub")
	}
	cache = expand(cache)

	endpoint := strings.TrimRight(getenv("HF_ENDPOINT"), "/")
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}

	var token string
	if !isTrue(getenv("HF_HUB_DISABLE_IMPLICIT_TOKEN")) {
		token = cleanToken(getenv("HF_TOKEN"))
		if token == "" {
			token = cleanToken(getenv("HUGGING_FACE_HUB_TOKEN"))
		}
		if token == "" {
			path := getenv("HF_TOKEN_PATH")
			if path == "" {
				path = filepath.Join(home, "token")
			}
			// A missing token file is the normal anonymous case, so the error is dropped.
			if b, err := os.ReadFile(expand(path)); err == nil {
				token = cleanToken(string(b))
			}
		}
	}

	offline := getenv("HF_HUB_OFFLINE")
	if offline == "" {
		offline = getenv("TRANSFORMERS_OFFLINE")
	}
	return Config{CacheDir: cache, Endpoint: endpoint, Token: token, Offline: isTrue(offline),
		DisableSymlinks: isTrue(getenv("HF_HUB_DISABLE_SYMLINKS")),
		EtagTimeout:     seconds(getenv("HF_HUB_ETAG_TIMEOUT")), DownloadTimeout: seconds(getenv("HF_HUB_DOWNLOAD_TIMEOUT"))}
}

// seconds parses a whole number of seconds; anything else is 0 (the default).
func seconds(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// isTrue is huggingface_hub's truthiness for environment flags.
func isTrue(v string) bool {
	switch strings.ToUpper(v) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}

// cleanToken drops line breaks and surrounding blanks, as tokens pasted into files often
// carry them.
func cleanToken(t string) string {
	t = strings.NewReplacer("\r", "", "\n", "").Replace(t)
	return strings.TrimSpace(t)
}
