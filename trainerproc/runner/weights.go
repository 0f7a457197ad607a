package runner

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/user"
	"slices"
	"sync"
	"time"

	"simpletuner/options"
	"simpletuner/plugins"
	"simpletuner/trainerproc/hfhub"
)

// ErrDownload wraps a failure to fetch base weights that is not the configuration's fault
// (a broken connection, a file whose hash does not match, a Hub answering nonsense): running
// the job again may succeed, and resumes what was downloaded.
var ErrDownload = errors.New("runner: fetching the base weights failed")

// Options that name where weights come from.
const (
	optPretrained            = "--pretrained_model_name_or_path"
	optRevision              = "--revision"
	optVariant               = "--variant"
	optTransformer           = "--pretrained_transformer_model_name_or_path"
	optTransformerSubfolder  = "--pretrained_transformer_subfolder"
	optVAE                   = "--pretrained_vae_model_name_or_path"
	componentTransformer     = "transformer"
	componentVAE             = "vae"
	noSubfolder              = "none"
	progressMinInterval      = time.Second
	progressMinPercentChange = 1
)

// componentSource is a per-component override: where one component's weights come from
// instead of the base pipeline.
type componentSource struct {
	// Option is the option that set it, for messages.
	Option string
	// NameOrPath is a local directory or a Hub repo id.
	NameOrPath string
	// Subfolder is the component's folder inside it ("" for its top level).
	Subfolder string
}

// weightSources is what a run's configuration says about where its weights come from.
type weightSources struct {
	// Pretrained is --pretrained_model_name_or_path ("" when unset: no base weights).
	Pretrained string
	// Revision applies to Pretrained and to an override naming the same repo; Variant to
	// every one (a component without that variant loads its plain weights).
	Revision, Variant string
	// Components limits which pipeline components are fetched (nil: all of them, as dit,
	// whose pipeline is its transformer and its caption encoder, needs).
	Components []string
	// Overrides are the per-component overrides the family uses, keyed by component.
	Overrides map[string]componentSource
}

// resolvedWeights are the local directories a run loads its weights from.
type resolvedWeights struct {
	// Pipeline is the pipeline directory (model_index.json and component folders), or ""
	// when the run has no base weights.
	Pipeline string
	// Components maps an overridden component to its directory (holding its config.json).
	Components map[string]string
}

// weightSourcesOf reads the weight options of a configuration for a family that can load
// the components usable from elsewhere. Overrides of other components are returned as
// ignored (option names), so the run can say so: a set override silently dropped would
// train on weights the user did not ask for.
func weightSourcesOf(cfg *options.Config, usable []string) (weightSources, []string) {
	src := weightSources{Pretrained: cfg.String(optPretrained), Revision: cfg.String(optRevision), Variant: cfg.String(optVariant)}
	sub := cfg.String(optTransformerSubfolder)
	if sub == noSubfolder {
		sub = ""
	}
	// A standalone VAE repo keeps its model at the top level, as SimpleTuner loads it.
	candidates := map[string]componentSource{
		componentTransformer: {Option: optTransformer, NameOrPath: cfg.String(optTransformer), Subfolder: sub},
		componentVAE:         {Option: optVAE, NameOrPath: cfg.String(optVAE)},
	}
	var ignored []string
	for _, comp := range []string{componentTransformer, componentVAE} {
		c := candidates[comp]
		if c.NameOrPath == "" {
			continue
		}
		switch {
		case slices.Contains(usable, comp):
			if src.Overrides == nil {
				src.Overrides = map[string]componentSource{}
			}
			src.Overrides[comp] = c
		case c.NameOrPath != registryDefault(cfg.Registry(), c.Option):
			// The registry's default VAE is for families with that latent space; only a
			// value the user chose is worth a warning.
			ignored = append(ignored, c.Option)
		}
	}
	return src, ignored
}

// registryDefault is an option's default in reg as a string ("" when it has none).
func registryDefault(reg *options.Registry, name string) string {
	o, ok := reg.Lookup(name)
	if !ok || o.Default == nil {
		return ""
	}
	s, _ := o.Default.(string)
	return s
}

// resolveWeights turns sources into local directories through c: a local directory is
// used as it is, a Hub repo id is found in the cache or downloaded into it (see
// hfhub.ResolvePipeline and hfhub.ResolveComponent). Errors name the option and wrap
// ErrConfig when the user can fix them (a wrong id or path, a gated repo, offline without
// the files) and ErrDownload otherwise; both keep hfhub's message and sentinel.
func resolveWeights(ctx context.Context, c *hfhub.Client, src weightSources) (resolvedWeights, error) {
	var w resolvedWeights
	if src.Pretrained != "" {
		dir, err := c.ResolvePipeline(ctx, src.Pretrained, src.Revision, hfhub.PipelineOptions{Components: src.Components, Variant: src.Variant})
		if err != nil {
			return w, weightsError(optPretrained, src.Pretrained, err)
		}
		w.Pipeline = dir
	}
	for _, comp := range []string{componentTransformer, componentVAE} {
		o, ok := src.Overrides[comp]
		if !ok {
			continue
		}
		dir, err := c.ResolveComponent(ctx, o.NameOrPath, overrideRevision(src, o), o.Subfolder, src.Variant)
		if err != nil {
			return w, weightsError(o.Option, o.NameOrPath, err)
		}
		if w.Components == nil {
			w.Components = map[string]string{}
		}
		w.Components[comp] = dir
	}
	return w, nil
}

// userFixable are the hfhub failures the user resolves by changing the configuration or
// the environment (the id, the revision, a token, a licence, going online).
var userFixable = []error{hfhub.ErrNotAModel, hfhub.ErrInvalidName, hfhub.ErrRepoNotFound, hfhub.ErrRevisionNotFound,
	hfhub.ErrEntryNotFound, hfhub.ErrGatedRepo, hfhub.ErrUnauthorized, hfhub.ErrOffline, hfhub.ErrNotCached}

// weightsError classifies a resolve failure for option=value.
func weightsError(option, value string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	for _, s := range userFixable {
		if errors.Is(err, s) {
			return fmt.Errorf("%w: %s %s: %w", ErrConfig, option, value, err)
		}
	}
	return fmt.Errorf("%w: %s %s: %w", ErrDownload, option, value, err)
}

// progressThrottle passes a file's download progress on at most about once a second or
// per 1 % of the file, plus its first and final report: the Hub client reports every
// chunk, which for a checkpoint of gigabytes would flood the event stream. A snapshot
// downloads several files at once, so report is called concurrently; mu guards last.
type progressThrottle struct {
	now  func() time.Time
	emit func(hfhub.Progress)

	mu   sync.Mutex
	last map[[2]string]progressMark // by repo and file: the last report passed on
}

// progressMark is when a file's progress was last passed on, and at how many bytes.
type progressMark struct {
	at   time.Time
	done int64
}

func newProgressThrottle(now func() time.Time, emit func(hfhub.Progress)) *progressThrottle {
	return &progressThrottle{now: now, emit: emit, last: map[[2]string]progressMark{}}
}

// report passes p on when it is due. Emitting happens outside the lock; one file is
// downloaded by one goroutine at a time, so a file's reports keep their order.
func (t *progressThrottle) report(p hfhub.Progress) {
	key := [2]string{p.Repo, p.File}
	now := t.now()
	t.mu.Lock()
	m, seen := t.last[key]
	final := p.Total > 0 && p.Done >= p.Total
	due := !seen ||
		(p.Done != m.done && (final || now.Sub(m.at) >= progressMinInterval ||
			(p.Total > 0 && (p.Done-m.done)*100 >= progressMinPercentChange*p.Total)))
	if due {
		t.last[key] = progressMark{at: now, done: p.Done}
	}
	t.mu.Unlock()
	if due {
		t.emit(p)
	}
}

// downloadEvent is the event data and text of one progress report.
func downloadEvent(p hfhub.Progress) (title, message string, data plugins.DownloadProgress) {
	pct := 0.0
	if p.Total > 0 {
		pct = math.Round(10000*float64(p.Done)/float64(p.Total)) / 100
	}
	title = "Downloading " + p.Repo
	message = fmt.Sprintf("%s: %s of %s (%.2f%%)", p.File, mib(p.Done), mib(p.Total), pct)
	return title, message, plugins.DownloadProgress{Repo: p.Repo, File: p.File, Done: p.Done, Total: p.Total, Percent: pct}
}

// mib formats a byte count in MiB with one decimal.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// hubClient builds the run's Hub client from the trainer's environment (HF_HOME,
// HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE, … as Python reads them).
func (r *Runner) hubClient() *hfhub.Client {
	getenv := r.opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	home := getenv("HOME")
	if home == "" {
		// Python expands ~ from the account database when HOME is unset; without this the
		// cache would land in a relative .cache under the job's directory.
		if u, err := user.Current(); err == nil {
			home = u.HomeDir
		}
	}
	c := hfhub.NewClient(hfhub.ConfigFromEnv(getenv, home))
	c.UserAgent = "simpletuner/" + r.opts.Version
	return c
}

// resolveWeights is the run's one step from weight options to local directories, before
// anything reads a model: it replaces Settings.Pretrained with the pipeline directory and
// records the overridden components' directories in Settings.Components. Downloads report
// progress as EventDownloadProgress events.
func (t *trainer) resolveWeights(ctx context.Context) error {
	s := t.s
	src, ignored := weightSourcesOf(s.Cfg, t.opts.Families.Overrides(s.ModelFamily))
	for _, opt := range ignored {
		t.ev.warn("Option ignored", fmt.Sprintf("%s is ignored: model family %s cannot load that component from elsewhere", opt, s.ModelFamily),
			map[string]any{"option": opt})
	}
	if src.Pretrained == "" && len(src.Overrides) == 0 {
		return nil
	}
	t.ev.stage("init_fetch_weights", "running", "Locating base model weights", nil, nil)
	now := t.opts.Now
	if now == nil {
		now = time.Now
	}
	c := t.r.hubClient()
	c.OnProgress = newProgressThrottle(now, func(p hfhub.Progress) {
		title, msg, d := downloadEvent(p)
		t.job.Emit(plugins.EventDownloadProgress, "info", title, msg, d)
	}).report
	w, err := watchingCommands(t, ctx, "the base model weights are still being fetched",
		func(ctx context.Context) (resolvedWeights, error) { return resolveWeights(ctx, c, src) })
	if isUserEnding(err) {
		t.ev.stage("training_abort", "completed", "Training ended while fetching the base model weights; a later run resumes the download", nil, nil)
		return err
	}
	if err != nil {
		t.ev.stage("init_fetch_weights", "failed", "Locating base model weights failed: "+err.Error(), nil, nil)
		return err
	}
	if w.Pipeline != "" {
		s.Pretrained = w.Pipeline
	}
	s.Components = w.Components
	t.ev.stage("init_fetch_weights", "completed", "Base model weights in "+w.Pipeline, nil,
		map[string]any{"pipeline": w.Pipeline, "components": w.Components})
	return nil
}

// weightIssues are Validate's findings about where a job's weights come from, made without
// the network, so a job that cannot get its weights is refused when it is submitted rather
// than once it runs: a path that is not a model directory, a name that is not a repo id,
// or, with HF_HUB_OFFLINE set, a repo the cache does not hold. A repo id that only the Hub
// can answer for passes. Overrides the family cannot load are warnings. pipeline is the
// local directory of the base model when it is found (a local directory, or cached), so
// the memory check can read the model's own configuration.
func (r *Runner) weightIssues(s *Settings) (issues []plugins.Issue, pipeline string) {
	src, ignored := weightSourcesOf(s.Cfg, r.opts.Families.Overrides(s.ModelFamily))
	var out []plugins.Issue
	for _, opt := range ignored {
		out = append(out, plugins.Issue{Option: opt, Severity: "warning",
			Message: fmt.Sprintf("model family %s cannot load that component from elsewhere; the option is ignored", s.ModelFamily)})
	}
	if src.Pretrained == "" && len(src.Overrides) == 0 {
		return out, ""
	}
	c := r.hubClient()
	online := !c.Config.Offline
	// Offline, resolving answers from local directories and the cache alone.
	c.Config.Offline = true
	check := func(option string, err error) {
		if err == nil || online && (errors.Is(err, hfhub.ErrOffline) || errors.Is(err, hfhub.ErrNotCached)) {
			return
		}
		out = append(out, plugins.Issue{Option: option, Severity: "error", Message: err.Error()})
	}
	ctx := context.Background()
	if src.Pretrained != "" {
		dir, err := c.ResolvePipeline(ctx, src.Pretrained, src.Revision, hfhub.PipelineOptions{Components: src.Components, Variant: src.Variant})
		check(optPretrained, err)
		if err == nil {
			pipeline = dir
		}
	}
	for _, comp := range []string{componentTransformer, componentVAE} {
		if o, ok := src.Overrides[comp]; ok {
			_, err := c.ResolveComponent(ctx, o.NameOrPath, overrideRevision(src, o), o.Subfolder, src.Variant)
			check(o.Option, err)
		}
	}
	return out, pipeline
}

// overrideRevision is the revision an override is read at: --revision pins the base model
// (and an override naming the same repo); another repo's history has other commits and
// branches, so it is read at main.
func overrideRevision(src weightSources, o componentSource) string {
	if o.NameOrPath == src.Pretrained {
		return src.Revision
	}
	return ""
}
