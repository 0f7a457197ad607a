package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/kit"
	"simpletuner/trainerproc/checkpoint"
	"simpletuner/trainerproc/hfhub"
)

// Options and files of publishing to the Hugging Face Hub.
const (
	optPushToHub       = "--push_to_hub"
	optPushCheckpoints = "--push_checkpoints_to_hub"
	optHubModelID      = "--hub_model_id"
	// publishStage is the lifecycle stage of Hub uploads: creating the repo, then each
	// upload (running with byte progress, completed or failed).
	publishStage = "publish"
	// hubBranch is the branch uploads commit to, as SimpleTuner's.
	hubBranch = "main"
	// modelCardFile and trainingConfigFile are what SimpleTuner writes next to an uploaded
	// model: the model card and the run's configuration.
	modelCardFile      = "README.md"
	trainingConfigFile = "simpletuner_config.json"
)

// ErrNoHubToken means --push_to_hub is set but the trainer has no Hugging Face token.
var ErrNoHubToken = errors.New("runner: --push_to_hub needs a Hugging Face token")

// noTokenAdvice says how to give the trainer a token.
const noTokenAdvice = "set HF_TOKEN in the trainer's environment to a token with write access (the daemon passes it with --trainer-env HF_TOKEN=…), " +
	"or log in with `huggingface-cli login` so the token is stored under HF_HOME"

// publisher uploads a run's checkpoints and final model to the Hub repo --hub_model_id.
// It is used from the training goroutine only.
type publisher struct {
	c    *hfhub.Client
	repo string
	// checkpoints is --push_checkpoints_to_hub: every (non-rolling) checkpoint is uploaded.
	checkpoints bool
	// created is set once the repo is known to exist; a create that failed for a passing
	// reason at start is tried again before the first upload.
	created bool
}

// hubRepoID turns --hub_model_id into a repo id as SimpleTuner reads it: a pasted Hub
// URL (https://huggingface.co/org/name?x) gives org/name.
func hubRepoID(v string) string {
	v = strings.TrimSpace(v)
	if u, err := url.Parse(v); err == nil && u.Scheme != "" && u.Host != "" {
		v = u.Path
	}
	v, _, _ = strings.Cut(v, "?")
	v, _, _ = strings.Cut(v, "#")
	v = strings.TrimPrefix(v, "/")
	if _, rest, ok := strings.Cut(v, "huggingface.co/"); ok {
		v = rest
	}
	return strings.Trim(v, "/")
}

// hubIssues are Validate's findings about publishing that need the trainer's environment:
// --push_to_hub without any token is refused when the job runs, so say so at submission.
func (r *Runner) hubIssues(s *Settings) []plugins.Issue {
	if !s.Cfg.Bool(optPushToHub) {
		return nil
	}
	var out []plugins.Issue
	if id := hubRepoID(s.Cfg.String(optHubModelID)); id != "" {
		if err := hfhub.ValidateRepoID(id); err != nil {
			out = append(out, plugins.Issue{Option: optHubModelID, Severity: "error", Message: err.Error()})
		}
	}
	if c := r.hubClient(); c.Config.Token == "" {
		out = append(out, plugins.Issue{Option: optPushToHub, Severity: "warning",
			Message: "no Hugging Face token found, so the job will fail when it starts: " + noTokenAdvice})
	}
	return out
}

// setupPublishing prepares --push_to_hub before any training: the token, the repo id and
// the repo itself (created if missing). Whatever the user must fix fails the job now,
// before hours of training whose upload could not work; a Hub that does not answer only
// warns (the repo is created again before the first upload).
func (t *trainer) setupPublishing(ctx context.Context) error {
	cfg := t.s.Cfg
	if !cfg.Bool(optPushToHub) {
		return nil
	}
	fail := func(err error) error {
		t.ev.stage(publishStage, "failed", "Preparing the Hub upload failed: "+err.Error(), nil, nil)
		return err
	}
	repo := hubRepoID(cfg.String(optHubModelID))
	if err := hfhub.ValidateRepoID(repo); err != nil {
		return fail(fmt.Errorf("%w: %s %q: %w", ErrConfig, optHubModelID, cfg.String(optHubModelID), err))
	}
	c := t.r.hubClient()
	if c.Config.Token == "" {
		return fail(fmt.Errorf("%w: %w: %s", ErrConfig, ErrNoHubToken, noTokenAdvice))
	}
	if c.Config.Offline {
		return fail(fmt.Errorf("%w: %s cannot upload while HF_HUB_OFFLINE is set", ErrConfig, optPushToHub))
	}
	t.pub = &publisher{c: c, repo: repo, checkpoints: cfg.Bool(optPushCheckpoints)}
	t.ev.stage(publishStage, "running", "Creating the Hub repository "+repo, nil, map[string]any{"repo": repo})
	u, err := watchingCommands(t, ctx, "the Hub repository is being created",
		func(ctx context.Context) (string, error) { return c.CreateRepo(ctx, repo, false) })
	switch {
	case isUserEnding(err):
		t.ev.stage("training_abort", "completed", "Training ended while the Hub repository was being created", nil, nil)
		return err
	case err != nil && userFixableHub(err):
		return fail(fmt.Errorf("%w: %s %s: %w", ErrConfig, optHubModelID, repo, err))
	case err != nil:
		t.ev.warn("Hub repository not created yet", fmt.Sprintf("creating %s failed (%v); it is tried again before the first upload", repo, err),
			map[string]any{"repo": repo, "error": err.Error()})
		t.ev.stage(publishStage, "completed", "The Hub repository will be created before the first upload", nil, map[string]any{"repo": repo})
		return nil
	}
	t.pub.created = true
	t.ev.stage(publishStage, "completed", "Hub repository "+u+" is ready", nil, map[string]any{"repo": repo, "url": u})
	return nil
}

// userFixableHub reports Hub failures the user fixes (token, repo id, access, offline).
func userFixableHub(err error) bool {
	for _, s := range userFixable {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// uploadProgress is the stage progress of one file's upload.
func uploadProgress(p hfhub.Progress) (string, *stageProgress) {
	pct := 0.0
	if p.Total > 0 {
		pct = math.Round(10000*float64(p.Done)/float64(p.Total)) / 100
	}
	file := p.File
	return fmt.Sprintf("Uploading %s to %s: %s of %s (%.2f%%)", p.File, p.Repo, mib(p.Done), mib(p.Total), pct),
		&stageProgress{Label: &file, Current: p.Done, Total: p.Total, Percent: pct}
}

// upload commits files to the repo in one commit, with the publish stage reporting it.
// A stop or cancel command ends the upload and is returned (kit.ErrStopped,
// kit.ErrCancelled); any other failure is reported (stage failed and a warning naming
// the local copy that stays) and returned.
func (t *trainer) upload(ctx context.Context, what, local string, files []hfhub.UploadFile) (hfhub.CommitInfo, error) {
	p := t.pub
	now := t.opts.Now
	if now == nil {
		now = time.Now
	}
	t.ev.stage(publishStage, "running", fmt.Sprintf("Uploading %s to %s", what, p.repo), nil, map[string]any{"repo": p.repo, "path": local})
	throttle := newProgressThrottle(now, func(pr hfhub.Progress) {
		msg, prog := uploadProgress(pr)
		t.ev.stage(publishStage, "running", msg, prog, map[string]any{"repo": pr.Repo, "file": pr.File, "done": pr.Done, "total": pr.Total})
	})
	info, err := watchingCommands(t, ctx, what+" is being uploaded to the Hub", func(ctx context.Context) (hfhub.CommitInfo, error) {
		if !p.created {
			if _, err := p.c.CreateRepo(ctx, p.repo, false); err != nil {
				return hfhub.CommitInfo{}, err
			}
			p.created = true
		}
		return p.c.Commit(ctx, p.repo, files, hfhub.CommitOptions{Revision: hubBranch, Message: t.commitMessage(), OnProgress: throttle.report})
	})
	if isUserEnding(err) {
		t.ev.stage(publishStage, "failed", fmt.Sprintf("Upload of %s ended by a command; the local copy in %s is kept", what, local), nil,
			map[string]any{"repo": p.repo, "path": local})
		return info, err
	}
	if err != nil {
		msg := fmt.Sprintf("Uploading %s to %s failed: %v; the local copy in %s is kept", what, p.repo, err, local)
		t.ev.stage(publishStage, "failed", msg, nil, map[string]any{"repo": p.repo, "path": local, "error": err.Error()})
		t.ev.warn("Upload to the Hugging Face Hub failed", msg, map[string]any{"repo": p.repo, "path": local, "error": err.Error()})
		return info, err
	}
	t.ev.stage(publishStage, "completed", fmt.Sprintf("Uploaded %s to %s", what, p.c.Config.Endpoint+"/"+p.repo), nil,
		map[string]any{"repo": p.repo, "path": local, "commit": info.Commit, "commit_url": info.URL, "files": info.Committed})
	return info, nil
}

// repoURL is the repo's page on the Hub, or a folder of it at the branch as SimpleTuner
// names an uploaded checkpoint ({remote_checkpoint_path}).
func (p *publisher) repoURL(folder string) string {
	u := p.c.Config.Endpoint + "/" + p.repo
	if folder != "" {
		u += "/tree/" + hubBranch + "/" + strings.Trim(folder, "/")
	}
	return u
}

// uploadCheckpoint uploads the checkpoint folder dir named name when
// --push_checkpoints_to_hub asks for it, as SimpleTuner lays it out: the checkpoint into
// the folder name of the repo and, in the same commit, at the repo's root, so the root
// always holds the latest model. A LoRA checkpoint uploads its adapter weights (with the
// model card and configuration); a full one its whole folder. It returns the remote path
// of the checkpoint, or "" when nothing was uploaded. Failures are reported and not
// returned (training goes on; the checkpoint is on disk); a stop or cancel command
// during the upload is kept for the loop to act on.
func (t *trainer) uploadCheckpoint(ctx context.Context, dir, name string) string {
	if t.pub == nil || !t.pub.checkpoints {
		return ""
	}
	tmp, err := os.MkdirTemp("", "simpletuner-publish-")
	if err != nil {
		t.ev.warn("Upload to the Hugging Face Hub failed", "preparing the model card: "+err.Error(), nil)
		return ""
	}
	defer os.RemoveAll(tmp)
	var files []hfhub.UploadFile
	if err = t.writeModelFiles(tmp); err == nil {
		files, err = t.checkpointFiles(dir, tmp, name)
	}
	if err != nil {
		t.ev.warn("Upload to the Hugging Face Hub failed", fmt.Sprintf("listing checkpoint %s: %v", dir, err), nil)
		return ""
	}
	_, err = t.upload(ctx, "checkpoint "+name, dir, files)
	switch {
	case errors.Is(err, kit.ErrStopped):
		t.deferred = append(t.deferred, plugins.CommandStop)
	case errors.Is(err, kit.ErrCancelled):
		t.deferred = append(t.deferred, plugins.CommandCancel)
	}
	if err != nil {
		return ""
	}
	return t.pub.repoURL(name)
}

// checkpointFiles are the files of checkpoint dir to upload, under name and at the root;
// the model card and configuration come from cardDir.
func (t *trainer) checkpointFiles(dir, cardDir, name string) ([]hfhub.UploadFile, error) {
	var one []hfhub.UploadFile
	if t.model.HasAdapters() {
		one = []hfhub.UploadFile{{Local: filepath.Join(dir, checkpoint.LoRAWeightsFile), Path: checkpoint.LoRAWeightsFile}}
	} else {
		var err error
		if one, err = hfhub.FolderFiles(dir, ""); err != nil {
			return nil, err
		}
	}
	for _, f := range []string{modelCardFile, trainingConfigFile} {
		if !slices.ContainsFunc(one, func(u hfhub.UploadFile) bool { return u.Path == f }) {
			one = append(one, hfhub.UploadFile{Local: filepath.Join(cardDir, f), Path: f})
		}
	}
	out := make([]hfhub.UploadFile, 0, 2*len(one))
	for _, f := range one {
		out = append(out, hfhub.UploadFile{Local: f.Local, Path: path.Join(name, f.Path)})
	}
	return append(out, one...), nil
}

// publishFinal uploads the final model in output_dir to the repo's root when
// --push_to_hub is set, writing the model card and configuration next to it first (as
// SimpleTuner does), and reports it as a final checkpoint event that is Uploaded with the
// repo's URL as RemotePath, so the daemon runs post_upload_script for it. A failed upload
// is reported and the run still completes: the model is saved locally and the cause is on
// the event stream (SimpleTuner also logs the failure and finishes). Only a stop or cancel
// command during the upload is returned.
func (t *trainer) publishFinal(ctx context.Context) error {
	if t.pub == nil {
		return nil
	}
	dir := t.s.OutputDir
	err := t.writeModelFiles(dir)
	var files []hfhub.UploadFile
	if err == nil {
		files, err = t.finalFiles(dir)
	}
	if err != nil {
		msg := fmt.Sprintf("Preparing the final model in %s for upload failed: %v", dir, err)
		t.ev.stage(publishStage, "failed", msg, nil, map[string]any{"repo": t.pub.repo, "path": dir})
		t.ev.warn("Upload to the Hugging Face Hub failed", msg, nil)
		return nil
	}
	_, err = t.upload(ctx, "the final model", dir, files)
	if isUserEnding(err) {
		return err
	}
	if err != nil {
		return nil
	}
	remote := t.pub.repoURL("")
	label := "Final model uploaded to " + remote
	t.job.Emit(plugins.EventTrainingCheckpoint, "info", label, label, plugins.CheckpointData{
		Path: dir, Step: int64(t.globalStep), IsFinal: true, RemotePath: remote, Uploaded: true,
		Checkpoint: &plugins.CheckpointInfo{Path: dir, Label: label, IsFinal: true}})
	return nil
}

// finalFiles are the final model's files in dir: the adapter weights of a LoRA, or the
// pipeline (model_index.json and the component folders it names) of a full fine-tune,
// plus the model card and configuration, all at the repo's root.
func (t *trainer) finalFiles(dir string) ([]hfhub.UploadFile, error) {
	var out []hfhub.UploadFile
	if t.model.HasAdapters() {
		out = append(out, hfhub.UploadFile{Local: filepath.Join(dir, checkpoint.LoRAWeightsFile), Path: checkpoint.LoRAWeightsFile})
	} else {
		idx, err := os.ReadFile(filepath.Join(dir, hfhub.ModelIndexFile))
		if err != nil {
			return nil, err
		}
		comps, err := hfhub.PipelineComponents(idx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", hfhub.ModelIndexFile, err)
		}
		out = append(out, hfhub.UploadFile{Local: filepath.Join(dir, hfhub.ModelIndexFile), Path: hfhub.ModelIndexFile})
		for _, c := range comps {
			fs, err := hfhub.FolderFiles(filepath.Join(dir, c), c)
			if err != nil {
				return nil, err
			}
			out = append(out, fs...)
		}
	}
	for _, f := range []string{modelCardFile, trainingConfigFile} {
		out = append(out, hfhub.UploadFile{Local: filepath.Join(dir, f), Path: f})
	}
	return out, nil
}

// writeModelFiles writes the model card and the run's configuration into dir.
func (t *trainer) writeModelFiles(dir string) error {
	cfg, err := json.MarshalIndent(t.publicConfig(), "", "    ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, trainingConfigFile), cfg); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, modelCardFile), []byte(t.modelCard()))
}

// publicConfig is the run's configuration as SimpleTuner saves it next to a model: option
// names without "--", only options that are set and reach the trainer (server-only ones,
// such as hook scripts and webhooks, stay private).
func (t *trainer) publicConfig() map[string]any {
	all := t.s.Cfg.Map()
	out := map[string]any{}
	for _, a := range t.s.Cfg.Args() {
		name, _, _ := strings.Cut(a, "=")
		out[strings.TrimPrefix(name, "--")] = all[name]
	}
	return out
}

// datasetIDs are the run's dataset ids, sorted.
func (t *trainer) datasetIDs() []string {
	var ids []string
	if t.loader != nil {
		for _, st := range t.loader.Stats() {
			ids = append(ids, st.DatasetID)
		}
	}
	sort.Strings(ids)
	return ids
}

// commitMessage describes the training as SimpleTuner's upload commits do.
func (t *trainer) commitMessage() string {
	s := t.s
	var b strings.Builder
	fmt.Fprintf(&b, "Trained for %d epochs and %d steps.", t.completedEpochs, t.globalStep)
	fmt.Fprintf(&b, "\nTrained with datasets %s", strings.Join(t.datasetIDs(), ", "))
	if s.Accum > 1 {
		fmt.Fprintf(&b, "\nLearning rate %g, batch size %d, and %d gradient accumulation steps.", s.LearningRate, s.BatchSize, s.Accum)
	} else {
		fmt.Fprintf(&b, "\nLearning rate %g and batch size %d.", s.LearningRate, s.BatchSize)
	}
	fmt.Fprintf(&b, "\nBase model: %s", s.Cfg.String(optPretrained))
	if v := s.Cfg.String(optVAE); v != "" {
		fmt.Fprintf(&b, "\nVAE: %s", v)
	}
	return b.String()
}

// modelCard is the README.md of an uploaded model: the Hub's YAML metadata (base model,
// tags) and what was trained how.
func (t *trainer) modelCard() string {
	s := t.s
	base := s.Cfg.String(optPretrained)
	onHub := base != "" && hfhub.ValidateRepoID(base) == nil && !looksLocal(base)
	lora := t.model.HasAdapters()
	var b strings.Builder
	b.WriteString("---\n")
	if onHub {
		fmt.Fprintf(&b, "base_model: %s\n", strconv.Quote(base))
	}
	b.WriteString("tags:\n")
	tags := []string{s.ModelFamily, s.ModelFamily + "-diffusers", "text-to-image", "diffusers", "simpletuner", s.ModelType}
	if lora {
		tags = append(tags, "template:sd-lora", s.Adapters.Type)
	}
	for _, tag := range tags {
		if tag != "" {
			fmt.Fprintf(&b, "  - %s\n", strconv.Quote(tag))
		}
	}
	b.WriteString("pipeline_tag: text-to-image\ninference: true\n---\n\n")
	fmt.Fprintf(&b, "# %s\n\n", t.pub.repo)
	kind := "full-rank fine-tune"
	if lora {
		kind = "LoRA (" + s.Adapters.Type + ")"
	}
	switch {
	case onHub:
		fmt.Fprintf(&b, "This is a %s derived from [%s](https://huggingface.co/%s).\n\n", kind, base, base)
	case base != "":
		fmt.Fprintf(&b, "This is a %s derived from a local copy of %s.\n\n", kind, filepath.Base(base))
	default:
		fmt.Fprintf(&b, "This is a %s of the %s model family trained from random initial weights.\n\n", kind, s.ModelFamily)
	}
	if s.ValidationPrompt != "" {
		fmt.Fprintf(&b, "The main validation prompt used during training was:\n```\n%s\n```\n\n", s.ValidationPrompt)
	}
	b.WriteString("## Training settings\n\n")
	fmt.Fprintf(&b, "- Training epochs: %d\n- Training steps: %d\n", t.completedEpochs, t.globalStep)
	fmt.Fprintf(&b, "- Learning rate: %g\n  - Learning rate schedule: %s\n  - Warmup steps: %d\n", s.LearningRate, s.Scheduler, s.Warmup)
	fmt.Fprintf(&b, "- Max grad norm: %g\n", s.MaxGradNorm)
	fmt.Fprintf(&b, "- Effective batch size: %d\n  - Micro-batch size: %d\n  - Gradient accumulation steps: %d\n", s.BatchSize*s.Accum, s.BatchSize, s.Accum)
	fmt.Fprintf(&b, "- Optimizer: %s\n", s.Optimizer)
	fmt.Fprintf(&b, "- Mixed precision: %s\n", s.Cfg.String("--mixed_precision"))
	fmt.Fprintf(&b, "- Caption dropout probability: %g%%\n", s.CaptionDropout*100)
	b.WriteString("\n## Datasets\n\n")
	for _, id := range t.datasetIDs() {
		fmt.Fprintf(&b, "- %s\n", id)
	}
	b.WriteString("\nTrained with SimpleTuner (Go).\n")
	return b.String()
}

// looksLocal reports a value that names a local path rather than a repo id.
func looksLocal(v string) bool {
	if strings.HasPrefix(v, ".") || filepath.IsAbs(v) {
		return true
	}
	_, err := os.Stat(v)
	return err == nil
}
