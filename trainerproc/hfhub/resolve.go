package hfhub

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotAModel means a --pretrained_…_name_or_path value is neither an existing local
// directory nor a valid Hub repo id.
var ErrNotAModel = errors.New("hfhub: neither a local directory nor a Hub repo id")

// looksLikePath says whether the user clearly meant a filesystem path, so a missing
// directory is reported as such rather than tried as a repo id.
func looksLikePath(s string) bool {
	return filepath.IsAbs(s) || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") ||
		strings.HasPrefix(s, "~") || s == "." || s == ".."
}

// localDir returns nameOrPath when it is an existing directory, ok=false when it should be
// taken as a repo id, or an error for a path that does not exist.
func localDir(nameOrPath string) (string, bool, error) {
	st, err := os.Stat(nameOrPath)
	switch {
	case err == nil && st.IsDir():
		return nameOrPath, true, nil
	case err == nil:
		return "", false, fmt.Errorf("%w: %s is a file, not a directory", ErrNotAModel, nameOrPath)
	case looksLikePath(nameOrPath) || !errors.Is(err, fs.ErrNotExist):
		return "", false, fmt.Errorf("%w: %s: %w", ErrNotAModel, nameOrPath, err)
	}
	if ValidateRepoID(nameOrPath) != nil {
		return "", false, fmt.Errorf("%w: %q (no such directory, and not of the form org/name)", ErrNotAModel, nameOrPath)
	}
	return "", false, nil
}

// ResolvePipeline turns --pretrained_model_name_or_path into a local directory in the
// diffusers pipeline layout (model_index.json, transformer/, vae/, …): an existing directory
// is used as it is; anything else is a Hub repo id, fetched with DownloadPipeline into the
// cache (or found there).
func (c *Client) ResolvePipeline(ctx context.Context, nameOrPath, revision string, opts PipelineOptions) (string, error) {
	dir, ok, err := localDir(nameOrPath)
	if err != nil {
		return "", err
	}
	if ok {
		if _, err := os.Stat(filepath.Join(dir, ModelIndexFile)); err != nil {
			return "", fmt.Errorf("%w: %s has no model_index.json (not a diffusers pipeline): %w", ErrNotAModel, dir, err)
		}
		return dir, nil
	}
	return c.DownloadPipeline(ctx, nameOrPath, revision, opts)
}

// ResolveComponent turns a per-component override such as --pretrained_vae_model_name_or_path
// into a local directory holding that model's config.json and weights. subfolder is the
// component's folder inside the repo or directory ("" when the model sits at its root, as
// in a standalone VAE repo). From the Hub, only that folder's configuration and the weights
// of variant (else the plain weights) are fetched.
func (c *Client) ResolveComponent(ctx context.Context, nameOrPath, revision, subfolder, variant string) (string, error) {
	if subfolder != "" {
		if err := validateFilename(subfolder); err != nil {
			return "", err
		}
	}
	dir, ok, err := localDir(nameOrPath)
	if err != nil {
		return "", err
	}
	if ok {
		d := filepath.Join(dir, filepath.FromSlash(subfolder))
		if _, err := os.Stat(filepath.Join(d, "config.json")); err != nil {
			return "", fmt.Errorf("%w: %s has no config.json: %w", ErrNotAModel, d, err)
		}
		return d, nil
	}
	repoID := nameOrPath
	if revision == "" {
		revision = "main"
	}
	if err := validateRevision(revision); err != nil {
		return "", err
	}
	commit, files, cached, err := c.revisionFiles(ctx, repoID, revision)
	if cached {
		d := filepath.Join(c.Cache().SnapshotDir(repoID, commit), filepath.FromSlash(subfolder))
		if _, serr := os.Stat(filepath.Join(d, "config.json")); serr == nil {
			return d, nil
		}
	}
	if err != nil {
		if errors.Is(err, ErrOffline) {
			return "", fmt.Errorf("%w: %s/config.json of %s at revision %s is not in %s (unset HF_HUB_OFFLINE to download it)",
				ErrOffline, subfolder, repoID, revision, c.Cache().Dir)
		}
		return "", err
	}
	if err := c.Cache().writeRef(repoID, revision, commit); err != nil {
		return "", err
	}
	want := componentFiles(files, subfolder, variant)
	hasConfig := false
	for _, f := range want {
		hasConfig = hasConfig || f == strings.TrimPrefix(subfolder+"/config.json", "/")
	}
	if !hasConfig {
		return "", fmt.Errorf("%w: %s has no %s at %s", ErrEntryNotFound, repoID, strings.TrimPrefix(subfolder+"/config.json", "/"), revision)
	}
	if err := c.downloadAll(ctx, repoID, commit, want); err != nil {
		return "", err
	}
	return filepath.Join(c.Cache().SnapshotDir(repoID, commit), filepath.FromSlash(subfolder)), nil
}
