package configs

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"simpletuner/internal/errmsg"
	"simpletuner/options"
	"simpletuner/supervisor/webhooks"
)

// PutRequest is the body of PUT /api/configs/{name} (SimpleTuner's ConfigRequest). The
// name in the path wins over Name.
type PutRequest struct {
	Name        string   `json:"name"`
	Description *string  `json:"description"`
	Tags        []string `json:"tags"`
	Config      any      `json:"config"`
}

// Feedback are the non-fatal findings of a save.
type Feedback struct {
	Warnings    []string `json:"warnings"`
	Suggestions []string `json:"suggestions"`
}

func feedback(is options.Issues) Feedback {
	return Feedback{Warnings: nonNil(is.Warnings().Messages()), Suggestions: nonNil(is.Suggestions().Messages())}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Saved is the answer to a PUT or an import.
type Saved struct {
	Message    string   `json:"message"`
	Name       string   `json:"name"`
	Metadata   Metadata `json:"metadata"`
	Validation Feedback `json:"validation"`
}

// Put replaces a configuration's content. Model configs are normalised (canonical keys,
// one value per option: see pickSpelling) and validated; hook-script options need the
// job.hooks permission in perms. Errors come back as *ValidationError with every
// message, and nothing is written.
func (s *Service) Put(kind Kind, name string, req PutRequest, perms []string) (*Saved, error) {
	name, err := CleanName(name)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	loc, ok := s.locate(kind, name)
	if !ok {
		return nil, notFound(name)
	}
	var content any
	var issues options.Issues
	switch kind {
	case KindModel:
		submitted, ok := req.Config.(map[string]any)
		if !ok {
			return nil, errmsg.New(ErrInvalid, "config must be a JSON object of options, like {\"--learning_rate\": 0.0001}")
		}
		stored, _ := readObject(loc.config) // unreadable: nothing to compare spellings with
		cfg, is := normalise(s.reg, flatten(submitted), stored)
		is = append(is, KeepWebhookSecrets(s.reg, cfg, stored)...)
		issues = append(is, s.check(cfg, perms, false, "")...)
		content = cfg
	case KindDataloader:
		issues = ValidateDatasets(req.Config, s.DataloaderCheck(false))
		content = req.Config
	case KindWebhook:
		stored, _ := readJSON(loc.config) // unreadable: no secrets to keep
		kept, err := webhooks.KeepSecrets(req.Config, stored)
		if err != nil {
			return nil, &ValidationError{Subject: subject(kind), Issues: options.Issues{webhookIssue(err)}}
		}
		issues = s.checkWebhook(kept, perms)
		content = kept
	case KindLycoris:
		if _, ok := req.Config.(map[string]any); !ok {
			return nil, errmsg.New(ErrInvalid, "A LyCORIS config must be a JSON object")
		}
		issues = options.CheckLycoris(req.Config)
		content = req.Config
	}
	if issues.HasErrors() {
		return nil, &ValidationError{Subject: subject(kind), Issues: issues}
	}
	meta := s.readMeta(loc, name)
	if req.Description != nil && *req.Description != "" {
		meta.Description = *req.Description
	}
	if len(req.Tags) > 0 {
		meta.Tags = req.Tags
	}
	if m, ok := content.(map[string]any); ok && kind == KindModel {
		s.describe(&meta, m)
	}
	meta.ModifiedAt = s.timestamp()
	if err := writeJSONAtomic(loc.config, content); err != nil {
		return nil, fmt.Errorf("write %s: %w", name, err)
	}
	if loc.meta != "" {
		if err := writeJSONAtomic(loc.meta, meta); err != nil {
			return nil, fmt.Errorf("write metadata of %s: %w", name, err)
		}
	}
	return &Saved{Message: fmt.Sprintf("Configuration '%s' updated successfully", name), Name: name, Metadata: meta, Validation: feedback(issues)}, nil
}

func subject(k Kind) string {
	if k == KindModel {
		return "config"
	}
	return string(k)
}

// check validates a normalised model config: registry defaults ← config, paths resolved
// under the configs dir and output root, files checked, and the dataloader it points at
// validated, and so is the LyCORIS config it trains with. pending names files about to be
// created (a dataloader, a LyCORIS config: treated as present and valid). At save time
// dataloader problems are warnings (the data may come later); atStart makes them errors.
func (s *Service) check(cfg map[string]any, perms []string, atStart bool, pending ...string) options.Issues {
	sub, issues := s.reg.ParseMap(cfg)
	c, is := s.reg.Merge(sub.Values, nil)
	issues = append(issues, is...)
	issues = append(issues, c.ResolvePaths(s.dir, s.outputRoot)...)
	checkFile := func(p string) error {
		if slices.Contains(pending, p) {
			return nil
		}
		return s.CheckFile(p)
	}
	issues = append(issues, s.reg.Validate(c, options.ValidateOptions{Permissions: perms, CheckFile: checkFile})...)
	issues = append(issues, s.OptionFolders(c)...)
	if !issues.For(lycorisOption).HasErrors() {
		issues = append(issues, s.LycorisIssues(c, pending...)...)
	}
	p := c.String("--data_backend_config")
	if p == "" || slices.Contains(pending, p) || !filepath.IsAbs(p) || issues.For("--data_backend_config").HasErrors() {
		return issues
	}
	data, err := s.ReadFile(p)
	if err != nil {
		return append(issues, options.Issue{Option: "--data_backend_config", Severity: options.SevWarning, Message: "dataloader cannot be read: " + err.Error()})
	}
	rel, _ := filepath.Rel(s.dir, p)
	for _, i := range ValidateDataloader(data, s.DataloaderCheck(atStart)) {
		i.Message = "dataloader " + filepath.ToSlash(rel) + ": " + i.Message
		if !atStart && i.Severity == options.SevError {
			i.Severity, i.Err = options.SevWarning, nil
		}
		issues = append(issues, i)
	}
	return issues
}

// checkWebhook validates a webhook config with the registry's --webhook_config rules.
func (s *Service) checkWebhook(v any, perms []string) options.Issues {
	switch v.(type) {
	case map[string]any, []any:
	default:
		return options.Issues{{Option: "--webhook_config", Severity: options.SevError, Err: options.ErrInvalidValue,
			Message: "A webhook config must be a JSON object or a list of them"}}
	}
	b, err := encodeJSON(v)
	if err != nil {
		return options.Issues{{Option: "--webhook_config", Severity: options.SevError, Err: options.ErrInvalidValue, Message: err.Error()}}
	}
	c := s.reg.Defaults()
	if err := c.Set("--webhook_config", strings.TrimSpace(string(b)), options.FromSubmitted); err != nil {
		return options.Issues{{Option: "--webhook_config", Severity: options.SevError, Err: options.ErrInvalidValue, Message: err.Error()}}
	}
	var out options.Issues
	for _, i := range s.reg.Validate(c, options.ValidateOptions{Permissions: perms}) {
		if i.Option == "--webhook_config" {
			out = append(out, i)
		}
	}
	return out
}

// Report is the answer of POST /api/configs/{name}/validate.
type Report struct {
	Name        string   `json:"name"`
	IsValid     bool     `json:"is_valid"`
	Errors      []string `json:"errors"`
	Warnings    []string `json:"warnings"`
	Suggestions []string `json:"suggestions"`
}

// Validate checks a stored model configuration as a job start would: the dataloader's
// instance_data_dir must exist here.
func (s *Service) Validate(name string, perms []string) (*Report, error) {
	name, err := CleanName(name)
	if err != nil {
		return nil, err
	}
	loc, ok := s.locate(KindModel, name)
	if !ok {
		return nil, notFound(name)
	}
	stored, err := readObject(loc.config)
	if err != nil {
		return nil, loadErr(name, err)
	}
	cfg, issues := normalise(s.reg, flatten(stored), stored)
	issues = append(issues, s.check(cfg, perms, true, "")...)
	return &Report{Name: name, IsValid: !issues.HasErrors(), Errors: nonNil(issues.Errors().Messages()),
		Warnings: nonNil(issues.Warnings().Messages()), Suggestions: nonNil(issues.Suggestions().Messages())}, nil
}

// EnvironmentRequest is the body of POST /api/configs/environments.
type EnvironmentRequest struct {
	Name             string   `json:"name"`
	ModelFamily      *string  `json:"model_family"`
	ModelFlavour     *string  `json:"model_flavour"`
	ModelType        *string  `json:"model_type"`
	LoraType         *string  `json:"lora_type"`
	Description      *string  `json:"description"`
	Example          *string  `json:"example"`
	DataloaderPath   *string  `json:"dataloader_path"`
	CreateDataloader *bool    `json:"create_dataloader"`
	Tags             []string `json:"tags"`
}

// EnvironmentInfo is an environment's metadata plus its folder.
type EnvironmentInfo struct {
	Metadata
	Path string `json:"path"`
}

// DataloaderRef points at a dataloader file: relative to the configs dir, and absolute.
type DataloaderRef struct {
	Path         string `json:"path"`
	AbsolutePath string `json:"absolute_path"`
}

// Created is the answer of POST /api/configs/environments.
type Created struct {
	Message     string          `json:"message"`
	Environment EnvironmentInfo `json:"environment"`
	Config      map[string]any  `json:"config"`
	Dataloader  *DataloaderRef  `json:"dataloader"`
	Validation  Feedback        `json:"validation"`
}

// reserved names are folders of the configs root that are not environments.
var reserved = map[string]bool{"webhooks": true, "templates": true}

// cleanNewName cleans the name of an environment about to be made (created, copied to
// or renamed to): a reserved folder name is refused.
func cleanNewName(name string) (string, error) {
	name, err := CleanName(name)
	if err != nil {
		return "", err
	}
	if reserved[name] {
		return "", errmsg.New(ErrInvalid, "'%s' is reserved for the configs folder's own use; choose another name", name)
	}
	return name, nil
}

// sourceAndFreeTarget, for a copy or rename and with mu held by the caller, finds the
// source environment and checks that the target name is free.
func (s *Service) sourceAndFreeTarget(name, target string) (location, error) {
	src, ok := s.locate(KindModel, name)
	if !ok {
		return location{}, notFound(name)
	}
	if _, ok := s.locate(KindModel, target); ok || exists(filepath.Join(s.dir, target)) {
		return location{}, errmsg.New(ErrExists, "Configuration '%s' already exists", target)
	}
	return src, nil
}

// retargetFolderFiles points a data_backend_config or a --lycoris_config that lies in
// environment folder from into folder to instead, for a copy or rename; it reports
// whether cfg changed.
func retargetFolderFiles(cfg map[string]any, from, to string) bool {
	changed := false
	if rest, ok := strings.CutPrefix(dataBackendOf(cfg), from+"/"); ok {
		delete(cfg, "--"+dataBackendKey)
		cfg[dataBackendKey] = to + "/" + rest
		changed = true
	}
	if v, _ := cfg[lycorisOption].(string); strings.HasPrefix(v, from+"/") {
		cfg[lycorisOption] = to + "/" + strings.TrimPrefix(v, from+"/")
		changed = true
	}
	return changed
}

// CreateEnvironment creates <root>/<name>/{config.json,.metadata.json} and, unless an
// existing dataloader is referenced, <root>/<name>/multidatabackend.json (SimpleTuner's layout).
// The folder is built under a temporary name and renamed into place, so a half-made
// environment is never visible.
func (s *Service) CreateEnvironment(req EnvironmentRequest, perms []string) (*Created, error) {
	name, err := cleanNewName(req.Name)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	folder := filepath.Join(s.dir, name)
	if _, ok := s.locate(KindModel, name); ok || exists(folder) {
		return nil, errmsg.New(ErrExists, "Environment '%s' already exists", name)
	}
	var base map[string]any
	var exampleDL any
	isExample := req.Example != nil && *req.Example != ""
	if isExample {
		ex, err := exampleByName(*req.Example)
		if err != nil {
			return nil, err
		}
		base, exampleDL = maps.Clone(ex.Defaults), ex.dataloader
	} else if base, err = s.defaultConfig(); err != nil {
		return nil, err
	}
	str := func(p *string, key string) string {
		if p != nil && *p != "" {
			return *p
		}
		v, _ := base[key].(string)
		return v
	}
	family := str(req.ModelFamily, "--model_family")
	if family == "" {
		return nil, errmsg.New(ErrInvalid, "model_family is required")
	}
	modelType := str(req.ModelType, "--model_type")
	if modelType == "" || (!isExample && (req.ModelType == nil || *req.ModelType == "")) {
		modelType = "lora"
	}
	cfg := base
	cfg["--model_family"] = family
	if !isExample {
		sizeForFamily(s.reg, cfg, family)
	}
	if fl := str(req.ModelFlavour, "--model_flavour"); fl != "" {
		cfg["--model_flavour"] = fl
	}
	cfg["--model_type"] = modelType
	cfg["--output_dir"] = name
	if modelType == "lora" {
		lt := str(req.LoraType, "--lora_type")
		if lt == "" {
			lt = "standard"
		}
		cfg["--lora_type"] = lt
	} else {
		delete(cfg, "--lora_type")
	}
	createDL := req.CreateDataloader == nil || *req.CreateDataloader
	dlRel := name + "/multidatabackend.json"
	if req.DataloaderPath != nil && *req.DataloaderPath != "" {
		if dlRel, err = s.configRelative(*req.DataloaderPath); err != nil {
			return nil, err
		}
		if !createDL && !exists(filepath.Join(s.dir, dlRel)) {
			return nil, errmsg.New(ErrNotFound, "Dataloader configuration not found: %s", dlRel)
		}
	} else if !createDL {
		return nil, errmsg.New(ErrInvalid, "dataloader_path is required when referencing an existing configuration")
	}
	delete(cfg, "--"+dataBackendKey)
	cfg[dataBackendKey] = dlRel
	dlAbs := filepath.Join(s.dir, filepath.FromSlash(dlRel))
	writeDL := createDL && !exists(dlAbs)
	pending := ""
	if writeDL {
		pending = dlAbs
	}
	cfg, issues := normalise(s.reg, cfg, nil)
	lycoris := s.lycorisDefault(name, cfg)
	issues = append(issues, s.check(cfg, perms, false, pending, lycoris)...)
	if issues.HasErrors() {
		return nil, &ValidationError{Subject: "config", Issues: issues}
	}
	now := s.timestamp()
	meta := Metadata{Name: name, CreatedAt: now, ModifiedAt: now, Tags: nonNil(req.Tags)}
	if req.Description != nil {
		meta.Description = *req.Description
	}
	s.describe(&meta, cfg)

	tmp, err := s.tempFolder()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // gone after the rename; cleans up after a failure
	if err := writeJSONAtomic(filepath.Join(tmp, "config.json"), cfg); err != nil {
		return nil, err
	}
	if err := writeJSONAtomic(filepath.Join(tmp, ".metadata.json"), meta); err != nil {
		return nil, err
	}
	var dlContent any = defaultDataloader(name, resolutionOf(s.reg, cfg, family))
	if exampleDL != nil {
		dlContent = exampleDL
	}
	inFolder := strings.HasPrefix(dlRel, name+"/")
	if writeDL && inFolder {
		if err := writeJSONAtomic(filepath.Join(tmp, filepath.FromSlash(strings.TrimPrefix(dlRel, name+"/"))), dlContent); err != nil {
			return nil, err
		}
	}
	if lycoris != "" {
		if err := writeJSONAtomic(filepath.Join(tmp, lycorisFile), options.DefaultLycorisConfig()); err != nil {
			return nil, err
		}
	}
	if err := os.Rename(tmp, folder); err != nil {
		if exists(folder) {
			return nil, errmsg.New(ErrExists, "Environment '%s' already exists", name)
		}
		return nil, fmt.Errorf("create environment %s: %w", name, err)
	}
	if err := syncDir(s.dir); err != nil {
		return nil, err
	}
	if writeDL && !inFolder {
		if err := writeJSONAtomic(dlAbs, dlContent); err != nil {
			return nil, err
		}
	}
	if writeDL {
		data, _ := encodeJSON(dlContent)
		for _, i := range ValidateDataloader(data, s.DataloaderCheck(false)) {
			if i.Severity == options.SevError {
				i.Severity, i.Err = options.SevWarning, nil
			}
			i.Message = "dataloader " + dlRel + ": " + i.Message
			issues = append(issues, i)
		}
	}
	return &Created{
		Message:     fmt.Sprintf("Environment '%s' created", name),
		Environment: EnvironmentInfo{Metadata: meta, Path: folder},
		Config:      cfg,
		Dataloader:  &DataloaderRef{Path: dlRel, AbsolutePath: dlAbs},
		Validation:  feedback(issues),
	}, nil
}

// tempFolder makes a hidden folder in the configs root to build an environment in.
func (s *Service) tempFolder() (string, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	p := filepath.Join(s.dir, ".tmp-"+hex.EncodeToString(b))
	if err := os.Mkdir(p, dirMode); err != nil {
		return "", err
	}
	return p, nil
}

// configRelative turns a dataloader path from a request into a slash path relative to
// the configs dir, refusing anything outside it.
func (s *Service) configRelative(p string) (string, error) {
	outside := errmsg.New(ErrInvalid, "Dataloader configs must live within the configs directory")
	if !strings.HasSuffix(p, ".json") {
		return "", errmsg.New(ErrInvalid, "Dataloader config path must name a .json file")
	}
	abs := filepath.Clean(p)
	if !filepath.IsAbs(p) {
		var err error
		if abs, err = options.ResolveConfigPath(s.dir, p); err != nil {
			return "", outside
		}
	}
	rel, err := filepath.Rel(s.dir, abs)
	if err != nil || !filepath.IsLocal(rel) {
		return "", outside
	}
	return filepath.ToSlash(rel), nil
}

// defaultConfig returns <root>/default.json, creating it on first use as SimpleTuner does.
func (s *Service) defaultConfig() (map[string]any, error) {
	p := filepath.Join(s.dir, "default.json")
	m, err := readObject(p)
	if err == nil {
		return m, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: default.json cannot be read: %v", ErrCorrupt, err)
	}
	m = map[string]any{
		"--checkpoint_epoch_interval": nil,
		"--checkpoint_step_interval":  100,
		"--gradient_checkpointing":    true,
		"--learning_rate":             0.0001,
		"--mixed_precision":           "bf16",
		"--output_dir":                "models",
		"--resolution":                1024,
		"--seed":                      42,
		"--train_batch_size":          1,
		"--use_ema":                   false,
	}
	if err := writeJSONAtomic(p, m); err != nil {
		return nil, fmt.Errorf("write default.json: %w", err)
	}
	return readObject(p)
}

// sizeForFamily gives a new environment of family the family's default resolution
// (options.Registry.DefaultResolution) unless default.json sets one of its own: its
// --resolution is absent or the option's generic default, which a family with a default
// of its own cannot train at (SimpleTuner's 1024 px is sized for latent models).
func sizeForFamily(reg *options.Registry, cfg map[string]any, family string) {
	if raw, set := cfg["--resolution"]; set && raw != nil {
		if v, ok := numericResolution(reg, cfg); !ok || v != reg.DefaultResolution("") {
			return // a value of the user's own in default.json
		}
	}
	cfg["--resolution"] = reg.DefaultResolution(family)
}

// numericResolution reads cfg's --resolution as the registry types it.
func numericResolution(reg *options.Registry, cfg map[string]any) (float64, bool) {
	raw, ok := cfg["--resolution"]
	if !ok || raw == nil {
		return 0, false
	}
	_, v, err := reg.Coerce("--resolution", raw)
	f, isNum := v.(float64)
	return f, err == nil && isNum
}

// resolutionOf is the numeric --resolution of a new environment's config, for its
// starter dataloader.
func resolutionOf(reg *options.Registry, cfg map[string]any, family string) float64 {
	if v, ok := numericResolution(reg, cfg); ok {
		return v
	}
	return reg.DefaultResolution(family)
}

// defaultDataloader is the starter dataloader SimpleTuner writes for a new environment, at
// resolution res (pixel_area): SimpleTuner's sizes at 1024 (images below 256 px are
// skipped, above 4096 px downsampled to 1024 first), scaled with res.
func defaultDataloader(name string, res float64) []any {
	return []any{
		map[string]any{"id": name + "-images", "type": "local", "dataset_type": "image", "instance_data_dir": "",
			"resolution": res, "resolution_type": "pixel_area", "caption_strategy": "textfile",
			"minimum_image_size": res / 4, "maximum_image_size": res * 4, "target_downsample_size": res,
			"crop": true, "crop_style": "center", "crop_aspect": "square"},
		map[string]any{"id": name + "-text-embeds", "type": "local", "dataset_type": "text_embeds", "default": true, "cache_dir": ""},
	}
}

// DataloaderRequest is the body of POST /api/configs/{name}/dataloader: SimpleTuner's
// {"path": null, "include_defaults": true}, plus overwrite, named as import's, which
// regenerates a dataloader that already exists (SimpleTuner always refuses with 409).
type DataloaderRequest struct {
	Path            *string `json:"path"`
	IncludeDefaults *bool   `json:"include_defaults"`
	Overwrite       bool    `json:"overwrite"`
}

// DataloaderCreated is the answer of POST /api/configs/{name}/dataloader.
type DataloaderCreated struct {
	Message     string          `json:"message"`
	Environment EnvironmentInfo `json:"environment"`
	Dataloader  DataloaderRef   `json:"dataloader"`
}

// CreateDataloader writes a starter dataloader (or []) for an environment and points its
// data_backend_config at it. An existing file is replaced only with Overwrite, and only
// when it is a dataloader (a JSON list): an environment's config.json or a webhook config
// at that path is never replaced by one.
func (s *Service) CreateDataloader(name string, req DataloaderRequest) (*DataloaderCreated, error) {
	name, err := CleanName(name)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	loc, ok := s.locate(KindModel, name)
	if !ok {
		return nil, notFound(name)
	}
	cfg, err := readObject(loc.config)
	if err != nil {
		return nil, loadErr(name, err)
	}
	rel := name + "/multidatabackend.json"
	if req.Path != nil && *req.Path != "" {
		if rel, err = s.configRelative(*req.Path); err != nil {
			return nil, err
		}
	}
	abs := filepath.Join(s.dir, filepath.FromSlash(rel))
	msg := fmt.Sprintf("Dataloader for environment '%s' created", name)
	if exists(abs) {
		msg += " (replacing the previous " + rel + ")"
		switch {
		case !req.Overwrite:
			return nil, errmsg.New(ErrExists, "Dataloader config already exists at '%s'; send \"overwrite\": true to replace it with a new one", rel)
		case firstByte(abs) != '[':
			return nil, errmsg.New(ErrExists, "'%s' exists and is not a dataloader (a JSON list), so it is not replaced; choose another \"path\"", rel)
		}
	}
	var content any = []any{}
	if req.IncludeDefaults == nil || *req.IncludeDefaults {
		family, _ := cfg["--model_family"].(string)
		content = defaultDataloader(name, resolutionOf(s.reg, cfg, family))
	}
	if err := writeJSONAtomic(abs, content); err != nil {
		return nil, err
	}
	delete(cfg, "--"+dataBackendKey)
	cfg[dataBackendKey] = rel
	if err := writeJSONAtomic(loc.config, cfg); err != nil {
		return nil, err
	}
	meta := s.readMeta(loc, name)
	s.describe(&meta, cfg)
	meta.ModifiedAt = s.timestamp()
	if loc.meta != "" {
		if err := writeJSONAtomic(loc.meta, meta); err != nil {
			return nil, err
		}
	}
	return &DataloaderCreated{Message: msg,
		Environment: EnvironmentInfo{Metadata: meta, Path: filepath.Dir(loc.config)},
		Dataloader:  DataloaderRef{Path: rel, AbsolutePath: abs}}, nil
}

// Export returns a model configuration as stored, wrapped with its metadata when asked.
func (s *Service) Export(name string, includeMetadata bool) (map[string]any, error) {
	name, err := CleanName(name)
	if err != nil {
		return nil, err
	}
	loc, ok := s.locate(KindModel, name)
	if !ok {
		return nil, notFound(name)
	}
	cfg, err := readObject(loc.config)
	if err != nil {
		return nil, loadErr(name, err)
	}
	if !includeMetadata {
		return cfg, nil
	}
	return map[string]any{"_metadata": s.readMeta(loc, name), "config": cfg}, nil
}

// ImportRequest is the body of POST /api/configs/import.
type ImportRequest struct {
	Data      map[string]any `json:"data"`
	Name      *string        `json:"name"`
	Overwrite bool           `json:"overwrite"`
}

// Import stores an exported configuration ({"_metadata":…, "config":…} or a bare
// config) under its name or the one given, validated as a PUT is.
func (s *Service) Import(req ImportRequest, perms []string) (*Saved, error) {
	if req.Data == nil {
		return nil, errmsg.New(ErrInvalid, "data is required: send the exported configuration as \"data\"")
	}
	cfgMap, meta := req.Data, Metadata{}
	if inner, ok := req.Data["config"].(map[string]any); ok {
		cfgMap = inner
		if m, ok := req.Data["_metadata"]; ok && m != nil {
			if b, err := encodeJSON(m); err == nil {
				_ = json.Unmarshal(b, &meta) // metadata is optional; a broken one is ignored
			}
		}
	}
	n := meta.Name
	if req.Name != nil && *req.Name != "" {
		n = *req.Name
	}
	name, err := CleanName(n)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	loc, existed := s.locate(KindModel, name)
	if existed && !req.Overwrite {
		return nil, errmsg.New(ErrExists, "Configuration '%s' already exists", name)
	}
	var stored map[string]any
	if existed {
		stored, _ = readObject(loc.config)
	}
	cfg, issues := normalise(s.reg, flatten(cfgMap), stored)
	issues = append(issues, KeepWebhookSecrets(s.reg, cfg, stored)...)
	issues = append(issues, s.check(cfg, perms, false, "")...)
	if issues.HasErrors() {
		return nil, &ValidationError{Subject: "config", Issues: issues}
	}
	now := s.timestamp()
	out := Metadata{Name: name, Description: meta.Description, Tags: nonNil(meta.Tags), CreatedAt: now, ModifiedAt: now}
	if existed {
		old := s.readMeta(loc, name)
		out.CreatedAt = old.CreatedAt
	}
	s.describe(&out, cfg)
	if err := writeJSONAtomic(loc.config, cfg); err != nil {
		return nil, err
	}
	if err := writeJSONAtomic(loc.meta, out); err != nil {
		return nil, err
	}
	return &Saved{Message: fmt.Sprintf("Configuration '%s' imported successfully", name), Name: name, Metadata: out, Validation: feedback(issues)}, nil
}

// Copy duplicates an environment under a new name. Files of the environment folder
// come along, and a data_backend_config that pointed into the old folder points into
// the new one. The copy is built under a temporary name and renamed into place.
func (s *Service) Copy(name, target string) (*Saved, error) {
	name, err := CleanName(name)
	if err != nil {
		return nil, err
	}
	if target, err = cleanNewName(target); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	src, err := s.sourceAndFreeTarget(name, target)
	if err != nil {
		return nil, err
	}
	cfg, err := readObject(src.config)
	if err != nil {
		return nil, loadErr(name, err)
	}
	tmp, err := s.tempFolder()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if src.folder != "" {
		ents, err := os.ReadDir(src.folder)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			n := e.Name()
			if !e.Type().IsRegular() || n == "config.json" || strings.HasPrefix(n, ".") {
				continue
			}
			data, err := readOwn(filepath.Join(src.folder, n))
			if err != nil {
				return nil, err
			}
			if err := writeFileAtomic(filepath.Join(tmp, n), data); err != nil {
				return nil, err
			}
		}
	}
	retargetFolderFiles(cfg, name, target)
	now := s.timestamp()
	meta := s.readMeta(src, name)
	meta.Name, meta.CreatedAt, meta.ModifiedAt = target, now, now
	s.describe(&meta, cfg)
	if err := writeJSONAtomic(filepath.Join(tmp, "config.json"), cfg); err != nil {
		return nil, err
	}
	if err := writeJSONAtomic(filepath.Join(tmp, ".metadata.json"), meta); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, target)); err != nil {
		return nil, fmt.Errorf("copy %s to %s: %w", name, target, err)
	}
	return &Saved{Message: fmt.Sprintf("Configuration '%s' copied to '%s'", name, target), Name: target, Metadata: meta, Validation: feedback(nil)}, nil
}

// Rename moves an environment to a new name (one rename of its folder), rewrites a
// data_backend_config that pointed into the folder, and keeps it active if it was.
func (s *Service) Rename(name, newName string) (*Saved, error) {
	name, err := CleanName(name)
	if err != nil {
		return nil, err
	}
	if newName, err = cleanNewName(newName); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	src, err := s.sourceAndFreeTarget(name, newName)
	if err != nil {
		return nil, err
	}
	wasActive := false
	if a, ok, _ := s.ActiveName(); ok && a == name {
		wasActive = true
	}
	meta := s.readMeta(src, name)
	var dst location
	if src.folder != "" {
		if err := os.Rename(src.folder, filepath.Join(s.dir, newName)); err != nil {
			return nil, fmt.Errorf("rename %s: %w", name, err)
		}
		dst, _ = s.locate(KindModel, newName)
	} else {
		dst = location{config: filepath.Join(s.dir, newName+".json"), meta: filepath.Join(s.dir, newName+".metadata.json")}
		if err := os.Rename(src.config, dst.config); err != nil {
			return nil, fmt.Errorf("rename %s: %w", name, err)
		}
		_ = os.Remove(src.meta)
	}
	if err := syncDir(s.dir); err != nil {
		return nil, err
	}
	if cfg, err := readObject(dst.config); err == nil {
		if retargetFolderFiles(cfg, name, newName) {
			if err := writeJSONAtomic(dst.config, cfg); err != nil {
				return nil, err
			}
		}
		s.describe(&meta, cfg)
	}
	meta.Name, meta.ModifiedAt = newName, s.timestamp()
	if err := writeJSONAtomic(dst.meta, meta); err != nil {
		return nil, err
	}
	if wasActive {
		if err := s.settings.Put(activeSetting, newName); err != nil {
			return nil, fmt.Errorf("store active configuration: %w", err)
		}
	}
	return &Saved{Message: fmt.Sprintf("Configuration '%s' renamed to '%s'", name, newName), Name: newName, Metadata: meta, Validation: feedback(nil)}, nil
}
