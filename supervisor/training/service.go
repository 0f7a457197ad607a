package training

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"simpletuner/hooks"
	"simpletuner/options"
	"simpletuner/plugins"
	"simpletuner/plugins/dataloader"
	"simpletuner/store"
	"simpletuner/supervisor/configs"
	"simpletuner/supervisor/gpu"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/webhooks"
)

// Sentinel errors.
var (
	// ErrInvalid means the configuration cannot be trained; Bundle.Issues say why.
	ErrInvalid = errors.New("Configuration validation failed. Please review your settings.")
	// ErrForbidden means an option needs a permission the submitter lacks (job.hooks).
	ErrForbidden = errors.New("permission required for an option")
	// ErrEnvNotFound means the named environment does not exist.
	ErrEnvNotFound = errors.New("environment not found")
)

// Service builds bundles and submits jobs.
type Service struct {
	reg        *options.Registry
	configs    *configs.Service
	jobs       *jobs.Manager
	outputRoot string
	log        *slog.Logger
	// webhookPolicy is what webhook targets must satisfy (see SetWebhookPolicy).
	webhookPolicy webhooks.Policy
	// hooksDir, when set, is the only place hook scripts may live (SetHooksDir).
	hooksDir string
	// trainerCheck, when set, consults the trainer about every bundle (SetTrainerCheck).
	trainerCheck TrainerCheck
}

// TrainerCheck asks the trainer a job would run on about its resolved configuration
// (jobs.Manager.Validate): issues only the trainer can find, such as a job that does not
// fit the machine's memory. ok is false when the trainer was not consulted.
type TrainerCheck func(ctx context.Context, config json.RawMessage, req gpu.Request) (issues []plugins.Issue, ok bool, err error)

// trainerCheckTimeout bounds a consultation from a bundle (launch, handshake, Validate).
const trainerCheckTimeout = time.Minute

// SetTrainerCheck makes every bundle whose own checks pass consult the trainer, so validate
// reports what the trainer would refuse and start refuses it before a job exists.
func (s *Service) SetTrainerCheck(c TrainerCheck) { s.trainerCheck = c }

// SetHooksDir restricts hook scripts to one directory ("" allows any safe path).
func (s *Service) SetHooksDir(dir string) { s.hooksDir = dir }

// SetWebhookPolicy sets the policy webhook targets are validated against at submission;
// the dispatcher checks the same policy again at dial time.
func (s *Service) SetWebhookPolicy(p webhooks.Policy) { s.webhookPolicy = p }

// New returns the training service.
func New(reg *options.Registry, cs *configs.Service, jm *jobs.Manager, outputRoot string, log *slog.Logger) *Service {
	return &Service{reg: reg, configs: cs, jobs: jm, outputRoot: outputRoot, log: log}
}

// Registry returns the options registry bundles are built with.
func (s *Service) Registry() *options.Registry { return s.reg }

// Bundle is a resolved configuration with everything found while resolving it.
type Bundle struct {
	Config  *options.Config
	Issues  options.Issues
	EnvName string
}

// Valid reports whether the bundle has no error-level issue.
func (b *Bundle) Valid() bool { return !b.Issues.HasErrors() }

// FromForm builds a bundle from a submitted form (multipart or urlencoded fields, "--flag"
// or bare keys). strict applies validate's extra rule (epochs and steps both set is an
// error); perms are the submitter's permissions.
func (s *Service) FromForm(form map[string][]string, strict bool, perms []string) (*Bundle, error) {
	sub, issues := s.reg.ParseForm(form)
	var env options.Values
	envName := ""
	if !truthy(sub.Control["__replace_active_config__"]) {
		active, err := s.configs.Active()
		if err != nil {
			return nil, fmt.Errorf("read active environment: %w", err)
		}
		if active != nil && active.Name != "" {
			envName = active.Name
			vals, envIssues := s.envValues(active.Config)
			env = vals
			issues = append(issues, envIssues...)
		}
	}
	issues = append(issues, configs.KeepWebhookSecrets(s.reg, sub.Values, env)...)
	return s.resolve(env, sub.Values, envName, issues, strict, perms), nil
}

// FromEnvironment builds a bundle from a stored environment alone (queue submit, CLI).
func (s *Service) FromEnvironment(name string, perms []string) (*Bundle, error) {
	return s.FromEnvironmentWith(name, nil, perms)
}

// FromEnvironmentWith builds a bundle from a stored environment with overrides on top
// (simpletuner train --env NAME --key=value).
func (s *Service) FromEnvironmentWith(name string, overrides options.Values, perms []string) (*Bundle, error) {
	loaded, err := s.configs.Get(configs.KindModel, name)
	if err != nil {
		if errors.Is(err, configs.ErrNotFound) {
			return nil, fmt.Errorf("%w: Config '%s' not found", ErrEnvNotFound, name)
		}
		return nil, err
	}
	vals, issues := s.envValues(loaded.Config)
	return s.resolve(vals, overrides, loaded.Name, issues, false, perms), nil
}

// envValues reads an environment's stored config. Unknown keys there are warnings: a
// SimpleTuner config.json carries keys this trainer has no use for.
func (s *Service) envValues(cfg any) (options.Values, options.Issues) {
	m, ok := cfg.(map[string]any)
	if !ok {
		return nil, options.Issues{{Severity: options.SevError, Message: "the active environment's config is not a JSON object"}}
	}
	sub, issues := s.reg.ParseMap(m)
	for i := range issues {
		if errors.Is(issues[i].Err, options.ErrUnknownOption) {
			issues[i].Severity = options.SevWarning
			issues[i].Message = "ignored from the environment: " + issues[i].Message
		}
	}
	return sub.Values, issues
}

func (s *Service) resolve(env, submitted options.Values, envName string, issues options.Issues, strict bool, perms []string) *Bundle {
	cfg, mergeIssues := s.reg.Merge(env, submitted)
	issues = append(issues, mergeIssues...)
	issues = append(issues, cfg.ResolvePaths(s.configs.Dir(), s.outputRoot)...)
	issues = append(issues, s.reg.Validate(cfg, options.ValidateOptions{StrictEpochs: strict, Permissions: perms, CheckFile: s.configs.CheckFile})...)
	issues = append(issues, s.configs.OptionFolders(cfg)...)
	// Webhook targets, hook scripts, the LyCORIS config and the dataloader are checked for
	// every bundle, so validate reports what start would refuse. A file already refused is
	// not read.
	if !issues.For("--webhook_config").HasErrors() {
		issues = append(issues, s.checkWebhooks(cfg)...)
	}
	issues = append(issues, s.checkHooks(cfg)...)
	if !issues.For("--lycoris_config").HasErrors() {
		issues = append(issues, s.configs.LycorisIssues(cfg)...)
	}
	if !issues.For("--data_backend_config").HasErrors() {
		issues = append(issues, s.checkDataloader(cfg)...)
	}
	if !issues.HasErrors() {
		issues = append(issues, s.askTrainer(cfg, issues)...)
	}
	return &Bundle{Config: cfg, Issues: issues, EnvName: envName}
}

// askTrainer is the one place the daemon consults the trainer about a configuration (see
// SetTrainerCheck); issues it already has are not repeated. A trainer that cannot be asked
// is a warning: starting the job will show what is wrong with it.
func (s *Service) askTrainer(cfg *options.Config, have options.Issues) options.Issues {
	if s.trainerCheck == nil {
		return nil
	}
	req, err := gpuRequest(cfg)
	if err != nil {
		return nil // Start refuses the device list with its own message
	}
	raw, err := json.Marshal(cfg.Map())
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), trainerCheckTimeout)
	defer cancel()
	found, ok, err := s.trainerCheck(ctx, raw, req)
	if err != nil {
		s.log.Warn("trainer check failed", "err", err)
		return options.Issues{{Severity: options.SevWarning, Message: "The trainer could not check this configuration (whether it fits this machine's memory): " + err.Error()}}
	}
	if !ok {
		return nil
	}
	var out options.Issues
	for _, is := range found {
		if is.Severity != "error" && is.Origin != plugins.IssueOriginTrainer {
			// The registry's warnings, run again by the trainer over the resolved
			// configuration where every default looks submitted: the daemon already
			// reported the registry's findings. The trainer's own (a component it
			// ignores) pass on.
			continue
		}
		dup := false
		for _, h := range have {
			if h.Option == is.Option && h.Message == is.Message {
				dup = true
				break
			}
		}
		switch {
		case dup:
		case is.Severity == "error":
			out = append(out, options.Issue{Option: is.Option, Severity: options.SevError, Message: is.Message, Err: options.ErrInvalidValue})
		default:
			out = append(out, options.Issue{Option: is.Option, Severity: options.SevWarning, Message: is.Message})
		}
	}
	return out
}

// gpuRequest is what a bundle asks of the GPU allocator: --num_processes devices, the
// ones --accelerate_visible_devices names when it does.
func gpuRequest(cfg *options.Config) (gpu.Request, error) {
	n, _ := cfg.Int("--num_processes")
	req := gpu.Request{NumProcesses: n}
	// A list option: the registry keeps it as []string (String would read it as unset).
	if v := cfg.List("--accelerate_visible_devices"); len(v) > 0 {
		var err error
		if req.Preferred, err = gpu.ParseDeviceList(strings.Join(v, ",")); err != nil {
			return req, err
		}
	}
	return req, nil
}

func truthy(s string) bool {
	b, err := options.ParseBool(s)
	return err == nil && b
}

// StartRequest is a job start.
type StartRequest struct {
	Bundle   *Bundle
	OwnerID  int64
	Owner    string
	Priority int
	NoWait   bool
	AnyGPU   bool
	// IdempotencyKey is the client's Idempotency-Key header (see jobs.SubmitRequest).
	IdempotencyKey string
	// WorkerLabels is the queue submission's worker selector (see jobs.SubmitRequest).
	WorkerLabels map[string]string
	// Target is where the job may run (jobs.Target*; "" is auto, see jobs.SubmitRequest).
	Target string
	// ForApproval holds the job for approval (see jobs.SubmitRequest).
	ForApproval    bool
	ApprovalReason string
}

// Start submits the job of a valid bundle. Errors: ErrForbidden, ErrInvalid (the
// bundle's issues say why), jobs.ErrRejected, jobs.ErrNoExecutor, jobs.ErrInvalidLabels.
func (s *Service) Start(ctx context.Context, req StartRequest) (*store.Job, error) {
	b := req.Bundle
	for _, is := range b.Issues.Errors() {
		if errors.Is(is.Err, options.ErrPermission) {
			return nil, fmt.Errorf("%w: %s", ErrForbidden, is.Message)
		}
	}
	if !b.Valid() {
		return nil, ErrInvalid
	}
	raw, err := json.Marshal(b.Config.Map())
	if err != nil {
		return nil, err
	}
	gr, err := gpuRequest(b.Config)
	if err != nil {
		b.Issues = append(b.Issues, options.Issue{Option: "--accelerate_visible_devices", Severity: options.SevError, Message: err.Error()})
		return nil, ErrInvalid
	}
	gr.AnyGPU, gr.NoWait = req.AnyGPU, req.NoWait
	return s.jobs.Submit(ctx, jobs.SubmitRequest{OwnerID: req.OwnerID, Owner: req.Owner, EnvName: b.EnvName, Config: raw,
		Priority: req.Priority, GPU: gr, IdempotencyKey: req.IdempotencyKey, WorkerLabels: req.WorkerLabels,
		Target: req.Target, ForApproval: req.ForApproval, ApprovalReason: req.ApprovalReason})
}

// checkHooks refuses hook scripts the daemon (or trainer) should not run: see
// hooks.CheckExecutable. A mistake here is a 422 at submission, not a silent skip later.
func (s *Service) checkHooks(cfg *options.Config) options.Issues {
	var out options.Issues
	for _, name := range []string{"--post_checkpoint_script", "--post_upload_script", "--validation_external_script"} {
		tmpl := cfg.String(name)
		if hooks.Disabled(tmpl) {
			continue
		}
		if err := hooks.CheckExecutable(tmpl, s.hooksDir); err != nil {
			out = append(out, options.Issue{Option: name, Severity: options.SevError, Message: strings.TrimPrefix(err.Error(), "hooks: ")})
		}
	}
	return out
}

// checkWebhooks parses --webhook_config and refuses targets the daemon would never call
// (link-local, cloud metadata; private too under --webhook-deny-private).
func (s *Service) checkWebhooks(cfg *options.Config) options.Issues {
	raw := strings.TrimSpace(cfg.String("--webhook_config"))
	if raw == "" {
		return nil
	}
	cfgs, err := webhooks.Load(raw, s.configs.ReadFile)
	if err == nil {
		err = webhooks.Validate(cfgs, s.webhookPolicy)
	}
	if err != nil {
		return options.Issues{{Option: "--webhook_config", Severity: options.SevError, Message: err.Error()}}
	}
	return nil
}

// dataloaderDefaults are the options a dataset falls back to, as the trainer reads them.
func dataloaderDefaults(cfg *options.Config) dataloader.Defaults {
	res, _ := cfg.Float("--resolution")
	return dataloader.Defaults{Resolution: res, ResolutionType: cfg.String("--resolution_type"), CacheDirVAE: cfg.String("--cache_dir_vae")}
}

// checkDataloader validates the dataloader as a start needs it: readable (see
// configs.Service.ReadFile), valid, every instance_data_dir readable on this machine and
// every folder inside its roots.
func (s *Service) checkDataloader(cfg *options.Config) options.Issues {
	path := cfg.String("--data_backend_config")
	if path == "" {
		return options.Issues{{Option: "--data_backend_config", Severity: options.SevError, Message: "Select a data backend configuration"}}
	}
	chk := s.configs.DataloaderCheck(true)
	chk.Defaults = dataloaderDefaults(cfg)
	if strings.HasPrefix(strings.TrimSpace(path), "[") {
		return configs.ValidateDataloader([]byte(path), chk)
	}
	data, err := s.configs.ReadFile(path)
	if err != nil {
		return options.Issues{{Option: "--data_backend_config", Severity: options.SevError, Err: options.ErrInvalidValue,
			Message: "Data backend config cannot be read: " + err.Error()}}
	}
	return configs.ValidateDataloader(data, chk)
}
