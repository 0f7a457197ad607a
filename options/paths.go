package options

import (
	"errors"
	"path/filepath"
	"simpletuner/internal/errmsg"
	"strings"
)

// ResolveConfigPath resolves a config-relative JSON file reference the way SimpleTuner's
// server does (docs/compatibility.md §5): a relative value ending in .json is taken under
// configsDir after stripping leading "./" and one leading "config/" or
// "<basename of configsDir>/" segment, so "config/multidatabackend-once.json" becomes
// "<configsDir>/multidatabackend-once.json". Absolute paths are only cleaned. Inline
// JSON, "{env:VAR}" references and values not ending in .json are returned unchanged.
// A relative path that climbs out of configsDir is an error wrapping ErrPathEscape.
func ResolveConfigPath(configsDir, value string) (string, error) {
	v := strings.TrimSpace(value)
	if v == "" || isInlineJSON(v) || strings.Contains(v, "{env:") || !strings.HasSuffix(strings.ToLower(v), ".json") {
		return value, nil
	}
	if filepath.IsAbs(v) {
		return filepath.Clean(v), nil
	}
	if configsDir == "" {
		return "", errmsg.New(ErrInvalidValue, "no configs directory to resolve %q under", clip(value))
	}
	rel := filepath.ToSlash(v)
	for strings.HasPrefix(rel, "./") {
		rel = strings.TrimLeft(strings.TrimPrefix(rel, "./"), "/")
	}
	base := filepath.Base(filepath.Clean(configsDir))
	for _, prefix := range []string{"config/", base + "/"} {
		if strings.HasPrefix(rel, prefix) {
			rel = strings.TrimPrefix(rel, prefix)
			break
		}
	}
	return joinLocal(configsDir, rel, value, "the configs directory")
}

// ResolveOutputDir resolves --output_dir: a relative value is taken under outputRoot,
// an absolute one is only cleaned. A relative path that climbs out of outputRoot is an
// error wrapping ErrPathEscape.
func ResolveOutputDir(outputRoot, value string) (string, error) {
	v := strings.TrimSpace(value)
	if v == "" {
		return value, nil
	}
	var (
		out string
		err error
	)
	switch {
	case filepath.IsAbs(v):
		out = filepath.Clean(v)
	case outputRoot == "":
		return "", errmsg.New(ErrInvalidValue, "no output root to resolve %q under", clip(value))
	default:
		if out, err = joinLocal(outputRoot, filepath.ToSlash(v), value, "the output root"); err != nil {
			return "", err
		}
	}
	// "run /." cleans to a directory named "run ": almost surely a typing slip, and a
	// value no form or argv could carry back (option values are trimmed), so the
	// trainer and the job record would disagree on where checkpoints go.
	if strings.TrimSpace(out) != out {
		return "", errmsg.New(ErrInvalidValue, "%q names a directory that ends in white space; remove the space", clip(value))
	}
	return out, nil
}

// joinLocal joins rel under dir if rel stays inside it ("a/../b" is fine, "../b" is not).
func joinLocal(dir, rel, original, what string) (string, error) {
	if !filepath.IsLocal(filepath.FromSlash(rel)) {
		return "", errmsg.New(ErrPathEscape, "%q climbs out of %s; use a path inside it or an absolute path", clip(original), what)
	}
	return filepath.Join(dir, filepath.FromSlash(rel)), nil
}

// ResolvePaths rewrites the config's path options in place: config-relative JSON files
// under configsDir and --output_dir under outputRoot (see ResolveConfigPath and
// ResolveOutputDir). The sources are kept: the value is the same choice, made absolute.
// A path that escapes its directory is an error issue and the value is left as it was.
func (c *Config) ResolvePaths(configsDir, outputRoot string) Issues {
	var issues Issues
	for _, o := range c.reg.opts {
		s, ok := c.values[o.Name].(string)
		if !ok || s == "" {
			continue
		}
		var (
			resolved string
			err      error
		)
		switch {
		case o.ConfigRelative:
			resolved, err = ResolveConfigPath(configsDir, s)
		case o.OutputRelative:
			resolved, err = ResolveOutputDir(outputRoot, s)
		default:
			continue
		}
		if err != nil {
			issues = append(issues, errIssue(o.Name, unwrapSentinel(err), "%s: %v", o.Name, err))
			continue
		}
		c.values[o.Name] = resolved
	}
	return issues
}

// unwrapSentinel picks the package sentinel an error wraps, for Issue.Err.
func unwrapSentinel(err error) error {
	if e, ok := errors.AsType[*errmsg.Error](err); ok {
		return e.Sentinel
	}
	return err
}
