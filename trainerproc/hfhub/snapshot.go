package hfhub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// repoInfo is the part of GET /api/models/{repo}/revision/{rev} a snapshot needs.
type repoInfo struct {
	SHA      string `json:"sha"`
	Siblings []struct {
		Rfilename string `json:"rfilename"`
	} `json:"siblings"`
}

// revisionFiles asks the Hub which commit revision names and which files it holds. When
// the Hub is not asked (offline) or cannot answer, cached reports whether the cache already
// resolves revision to a commit (returned in commit), so the caller can serve what is
// cached; err then says why the Hub was not used. A revision the Hub does not know, or a
// cancelled ctx, is never answered from the cache.
func (c *Client) revisionFiles(ctx context.Context, repoID, revision string) (commit string, files []string, cached bool, err error) {
	if c.Config.Offline {
		err = ErrOffline
	} else if commit, files, err = c.info(ctx, repoID, revision); err == nil {
		return commit, files, false, nil
	}
	if errors.Is(err, ErrRevisionNotFound) || ctx.Err() != nil {
		return "", nil, false, err
	}
	if cc, cerr := c.Cache().ResolveCommit(repoID, revision); cerr == nil {
		return cc, nil, true, err
	}
	return "", nil, false, err
}

// info resolves revision to a commit and lists the repo's files at it.
func (c *Client) info(ctx context.Context, repoID, revision string) (string, []string, error) {
	u := c.Config.Endpoint + "/api/models/" + repoID + "/revision/" + url.PathEscape(revision)
	req, err := c.newRequest(ctx, http.MethodGet, u, true)
	if err != nil {
		return "", nil, err
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return "", nil, fmt.Errorf("hfhub: GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", nil, c.hubError(resp, repoID, u, c.Config.Token != "")
	}
	var ri repoInfo
	if err := json.NewDecoder(resp.Body).Decode(&ri); err != nil {
		return "", nil, fmt.Errorf("%w: repo info from %s: %w", ErrMetadata, u, err)
	}
	if !IsCommit(ri.SHA) {
		return "", nil, fmt.Errorf("%w: repo info from %s has no commit", ErrMetadata, u)
	}
	files := make([]string, 0, len(ri.Siblings))
	for _, s := range ri.Siblings {
		files = append(files, s.Rfilename)
	}
	sort.Strings(files)
	return ri.SHA, files, nil
}

// Snapshot makes sure the files of repoID at revision matching one of allow (every file if
// allow is empty) are cached, and returns the snapshot directory. Patterns are shell globs
// where "*" also crosses "/" (as in huggingface_hub: "vae/*" takes the whole folder). In
// offline mode, or when the Hub cannot be reached, an already cached snapshot of the
// revision is returned as it is.
func (c *Client) Snapshot(ctx context.Context, repoID, revision string, allow []string) (string, error) {
	if revision == "" {
		revision = "main"
	}
	if err := ValidateRepoID(repoID); err != nil {
		return "", err
	}
	if err := validateRevision(revision); err != nil {
		return "", err
	}
	commit, files, cached, err := c.revisionFiles(ctx, repoID, revision)
	if cached {
		if st, serr := os.Stat(c.Cache().SnapshotDir(repoID, commit)); serr == nil && st.IsDir() {
			return c.Cache().SnapshotDir(repoID, commit), nil
		}
	}
	if err != nil {
		if errors.Is(err, ErrOffline) {
			return "", fmt.Errorf("%w: no snapshot of %s at revision %s in %s (unset HF_HUB_OFFLINE to download it)",
				ErrOffline, repoID, revision, c.Cache().Dir)
		}
		return "", err
	}
	if err := c.Cache().writeRef(repoID, revision, commit); err != nil {
		return "", err
	}
	if err := c.downloadAll(ctx, repoID, commit, filterFiles(files, allow)); err != nil {
		return "", err
	}
	return c.Cache().SnapshotDir(repoID, commit), nil
}

// filterFiles keeps the files matching at least one pattern (all when there is none).
func filterFiles(files, allow []string) []string {
	if len(allow) == 0 {
		return files
	}
	res := make([]*regexp.Regexp, 0, len(allow))
	for _, p := range allow {
		res = append(res, globRE(p))
	}
	var out []string
	for _, f := range files {
		for _, re := range res {
			if re.MatchString(f) {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

// globRE translates an fnmatch pattern: "*" matches any run (slashes included), "?" one
// character, "[...]" a class ("[!...]" negated); a trailing "/" means the whole folder.
func globRE(p string) *regexp.Regexp {
	p = strings.ReplaceAll(p, `\`, "/")
	if strings.HasSuffix(p, "/") {
		p += "*"
	}
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch ch := p[i]; ch {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '[':
			j := strings.IndexByte(p[i+1:], ']')
			if j < 0 {
				b.WriteString(`\[`)
				continue
			}
			class := p[i+1 : i+1+j]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
			i += j + 1
		default:
			b.WriteString(regexp.QuoteMeta(string(ch)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// PipelineOptions chooses what of a diffusers pipeline DownloadPipeline fetches.
type PipelineOptions struct {
	// Components limits the download to these component folders (e.g. "transformer",
	// "vae"); nil means every component model_index.json names.
	Components []string
	// Variant picks weight files such as diffusion_pytorch_model.fp16.safetensors; a
	// component without that variant falls back to its plain weights, as diffusers does.
	Variant string
}

// DownloadPipeline fetches a diffusers pipeline from repoID at revision: model_index.json,
// then, for each component it names, the component's configuration and tokenizer files and
// its safetensors weights (one variant only, shards and index included). It returns the
// snapshot directory, laid out like a local pipeline directory.
func (c *Client) DownloadPipeline(ctx context.Context, repoID, revision string, opts PipelineOptions) (string, error) {
	if revision == "" {
		revision = "main" // as Download and Snapshot: the listing and the ref need a name
	}
	idx, err := c.Download(ctx, repoID, revision, ModelIndexFile)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(idx)
	if err != nil {
		return "", fmt.Errorf("hfhub: %w", err)
	}
	comps, err := PipelineComponents(b)
	if err != nil {
		return "", fmt.Errorf("hfhub: model_index.json of %s: %w", repoID, err)
	}
	if opts.Components != nil {
		want := map[string]bool{}
		for _, c := range opts.Components {
			want[c] = true
		}
		var kept []string
		for _, c := range comps {
			if want[c] {
				kept = append(kept, c)
				delete(want, c)
			}
		}
		if len(want) > 0 {
			var missing []string
			for c := range want {
				missing = append(missing, c)
			}
			sort.Strings(missing)
			return "", fmt.Errorf("%w: model_index.json of %s names no component %s", ErrEntryNotFound, repoID, strings.Join(missing, ", "))
		}
		comps = kept
	}
	if c.Config.Offline {
		// No listing offline: the pipeline is what the cache holds (model_index.json is
		// there, or Download above would have failed).
		return c.Snapshot(ctx, repoID, revision, nil)
	}
	commit, files, err := c.info(ctx, repoID, revision)
	if err != nil {
		return "", err
	}
	if err := c.Cache().writeRef(repoID, revision, commit); err != nil {
		return "", err
	}
	if err := c.downloadAll(ctx, repoID, commit, pipelineFiles(files, comps, opts.Variant)); err != nil {
		return "", err
	}
	return c.Cache().SnapshotDir(repoID, commit), nil
}

// PipelineComponents lists the component folders of a diffusers model_index.json: the keys
// not starting with "_" whose value is a [library, class] pair with a non-null class.
func PipelineComponents(modelIndex []byte) ([]string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(modelIndex, &m); err != nil {
		return nil, err
	}
	var out []string
	for k, v := range m {
		if strings.HasPrefix(k, "_") {
			continue
		}
		var pair []*string
		if json.Unmarshal(v, &pair) != nil || len(pair) != 2 || pair[0] == nil || pair[1] == nil {
			continue
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

// weightVariant tells whether name is a safetensors weight file (or its shard index) and
// which variant it is: "diffusion_pytorch_model.fp16-00001-of-00002.safetensors" is fp16,
// "model.safetensors.index.fp16.json" is fp16, "model.safetensors" is "".
func weightVariant(name string) (variant string, weight bool) {
	base := path.Base(name)
	switch {
	case strings.HasSuffix(base, ".safetensors"):
		stem := strings.TrimSuffix(base, ".safetensors")
		_, v, ok := strings.Cut(stem, ".")
		if !ok {
			return "", true
		}
		v, _, _ = strings.Cut(v, "-")
		return v, true
	case strings.Contains(base, ".safetensors.index."):
		_, rest, _ := strings.Cut(base, ".safetensors.index.")
		return strings.TrimSuffix(strings.TrimSuffix(rest, "json"), "."), true
	}
	return "", false
}

// pipelineFiles picks, within each component folder, the non-weight files that configure it
// (json, tokenizer files) and the weights of one variant.
func pipelineFiles(files, comps []string, variant string) []string {
	var out []string
	for _, comp := range comps {
		out = append(out, componentFiles(files, comp, variant)...)
	}
	return out
}

// componentFiles picks the files of one model folder (dir "" is the repo's root, without
// descending into subfolders): its configuration and tokenizer files, then the weights of
// variant, or the plain weights when that variant does not exist.
func componentFiles(files []string, dir, variant string) []string {
	want := dir
	if want == "" {
		want = "."
	}
	var cfg, plain, chosen []string
	for _, f := range files {
		if path.Dir(f) != want {
			continue
		}
		v, weight := weightVariant(f)
		switch {
		case !weight:
			if keepConfig(f) {
				cfg = append(cfg, f)
			}
		case v == "":
			plain = append(plain, f)
		case v == variant:
			chosen = append(chosen, f)
		}
	}
	if variant == "" || len(chosen) == 0 {
		chosen = plain
	}
	return append(cfg, chosen...)
}

// keepConfig says which non-weight files a component needs: configurations and tokenizer
// data, not pickled or ONNX weights nor docs.
func keepConfig(f string) bool {
	switch path.Ext(f) {
	case ".json", ".txt", ".model", ".tiktoken":
		return true
	}
	return false
}

// downloadAll downloads files of repoID at commit with up to Workers at once; the first
// failure cancels the rest and is returned.
func (c *Client) downloadAll(ctx context.Context, repoID, commit string, files []string) error {
	workers := c.Workers
	if workers <= 0 {
		workers = 8
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan string)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(workers, len(files)) {
		wg.Go(func() {
			for f := range jobs {
				if _, err := c.Download(ctx, repoID, commit, f); err != nil {
					once.Do(func() { first = err; cancel(err) })
				}
			}
		})
	}
feed:
	for _, f := range files {
		select {
		case jobs <- f:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if first != nil {
		return first
	}
	return context.Cause(ctx)
}
