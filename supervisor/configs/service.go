package configs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"simpletuner/internal/errmsg"
	"simpletuner/internal/safefile"
	"simpletuner/options"
)

// Settings is the small key/value store the active configuration name is kept in
// (store.Settings satisfies it).
type Settings interface {
	Get(name string, v any) (bool, error)
	Put(name string, v any) error
}

// activeSetting is the settings key of the active environment, as SimpleTuner's WebUI
// defaults call it.
const activeSetting = "active_config"

// Kind is a configuration type: the config_type query parameter.
type Kind string

// The configuration kinds.
const (
	KindModel      Kind = "model"
	KindDataloader Kind = "dataloader"
	KindWebhook    Kind = "webhook"
	KindLycoris    Kind = "lycoris"
)

// ParseKind parses config_type; empty means model.
func ParseKind(s string) (Kind, error) {
	switch Kind(s) {
	case "", KindModel:
		return KindModel, nil
	case KindDataloader, KindWebhook, KindLycoris:
		return Kind(s), nil
	}
	return "", errmsg.New(ErrInvalid, "Unknown config_type '%s' (use model, dataloader, webhook or lycoris)", errmsg.Clip(s))
}

// Options configure a Service.
type Options struct {
	// Dir is the configs root (./config by default in the daemon).
	Dir string
	// Registry coerces and validates model configs.
	Registry *options.Registry
	// Settings keeps the active configuration name.
	Settings Settings
	// OutputRoot is where relative --output_dir values resolve, for validation.
	OutputRoot string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// DirReadable checks a dataloader's instance_data_dir (an os.Stat-based check when nil).
	DirReadable func(path string) error
	// FileRoots are folders besides Dir that files named by options may be read from
	// (--allow-file-root).
	FileRoots []string
	// Folders, when set, bound the folders a dataloader names (see Folders); nil leaves
	// them unchecked.
	Folders *Folders
}

// Service manages the configurations under one root. It is safe for concurrent use.
type Service struct {
	dir         string
	reg         *options.Registry
	settings    Settings
	outputRoot  string
	now         func() time.Time
	dirReadable func(string) error
	// files are the roots files named by options are read from: dir and FileRoots.
	files safefile.Roots
	// folders bound a dataloader's folders (nil: unchecked).
	folders *Folders
	// mu serialises every write under dir and every read-modify-write sequence (a PUT
	// merges metadata; a rename moves a folder and rewrites its config), so concurrent
	// writers never interleave. Readers take no lock: files are replaced by rename, so a
	// reader sees the old or the new file, never a mix.
	mu sync.Mutex
}

// New opens (and creates) the configs root.
func New(o Options) (*Service, error) {
	if o.Registry == nil || o.Settings == nil {
		return nil, errors.New("configs: Registry and Settings are required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("configs dir %s: %w", o.Dir, err)
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("create configs dir: %w", err)
	}
	s := &Service{dir: dir, reg: o.Registry, settings: o.Settings, outputRoot: o.OutputRoot, now: o.Now, dirReadable: o.DirReadable,
		files: safefile.New(append([]string{dir}, o.FileRoots...)...), folders: o.Folders}
	if s.now == nil {
		s.now = time.Now
	}
	if s.dirReadable == nil {
		s.dirReadable = dirReadable
	}
	return s, nil
}

// Dir returns the absolute configs root.
func (s *Service) Dir() string { return s.dir }

// DataloaderCheck is how dataloaders are checked on this server: instance_data_dir
// readable (an error atStart, else a warning) and every folder inside its roots.
func (s *Service) DataloaderCheck(atStart bool) DataloaderCheck {
	return DataloaderCheck{AtStart: atStart, DirReadable: s.dirReadable, Folders: s.folders}
}

// Registry returns the options registry the service validates with.
func (s *Service) Registry() *options.Registry { return s.reg }

// Metadata is SimpleTuner's ConfigMetadata sidecar.
type Metadata struct {
	Name           string   `json:"name"`
	Description    string   `json:"description"`
	ModelFamily    *string  `json:"model_family"`
	ModelType      *string  `json:"model_type"`
	ModelFlavour   *string  `json:"model_flavour"`
	LoraType       *string  `json:"lora_type"`
	CreatedAt      string   `json:"created_at"`
	ModifiedAt     string   `json:"modified_at"`
	Tags           []string `json:"tags"`
	IsTemplate     bool     `json:"is_template"`
	ParentTemplate *string  `json:"parent_template"`
}

// location is where a named configuration lives on disk.
type location struct {
	config string // the config file
	meta   string // its metadata sidecar ("" for kinds without one)
	folder string // the environment folder ("" for root-level files)
}

// locate finds a configuration; ok is false when it does not exist, and loc is then
// where a new one would be written.
func (s *Service) locate(kind Kind, name string) (location, bool) {
	folder := filepath.Join(s.dir, name)
	switch kind {
	case KindWebhook:
		p := filepath.Join(s.dir, "webhooks", name+".json")
		return location{config: p}, exists(p)
	case KindLycoris:
		p := filepath.Join(folder, lycorisFile)
		return location{config: p, folder: folder}, exists(p)
	case KindDataloader:
		p := filepath.Join(folder, "multidatabackend.json")
		if exists(p) {
			return location{config: p, folder: folder}, true
		}
		legacy := filepath.Join(s.dir, name+".json")
		if firstByte(legacy) == '[' {
			return location{config: legacy}, true
		}
		return location{config: p, folder: folder}, false
	}
	loc := location{config: filepath.Join(folder, "config.json"), meta: filepath.Join(folder, ".metadata.json"), folder: folder}
	if exists(loc.config) {
		return loc, true
	}
	legacy := filepath.Join(s.dir, name+".json")
	if firstByte(legacy) == '{' {
		return location{config: legacy, meta: filepath.Join(s.dir, name+".metadata.json")}, true
	}
	return loc, false
}

func notFound(name string) error {
	return errmsg.New(ErrNotFound, "Configuration '%s' not found", name)
}

// timestamp formats times as SimpleTuner does (ISO-8601 with zone).
func (s *Service) timestamp() string { return s.now().UTC().Format("2006-01-02T15:04:05.000000-07:00") }

// readMeta loads a sidecar, or makes one from the file's modification time.
func (s *Service) readMeta(loc location, name string) Metadata {
	m := Metadata{Name: name, Tags: []string{}}
	if loc.meta != "" {
		if b, err := readOwn(loc.meta); err == nil {
			_ = json.Unmarshal(b, &m) // a broken sidecar is rebuilt from the file's times
		}
	}
	m.Name = name
	if m.Tags == nil {
		m.Tags = []string{}
	}
	if m.CreatedAt == "" || m.ModifiedAt == "" {
		if st, err := os.Stat(loc.config); err == nil {
			ts := st.ModTime().UTC().Format("2006-01-02T15:04:05.000000-07:00")
			if m.CreatedAt == "" {
				m.CreatedAt = ts
			}
			if m.ModifiedAt == "" {
				m.ModifiedAt = ts
			}
		}
	}
	return m
}

// describe fills the model fields of the metadata from a model config.
func (s *Service) describe(m *Metadata, cfg map[string]any) {
	get := func(name string) *string {
		for _, k := range []string{name, strings.TrimPrefix(name, "--")} {
			if v, ok := cfg[k].(string); ok && v != "" {
				return &v
			}
		}
		return nil
	}
	m.ModelFamily, m.ModelType, m.ModelFlavour = get("--model_family"), get("--model_type"), get("--model_flavour")
	m.LoraType = nil
	if m.ModelType != nil && *m.ModelType == "lora" {
		m.LoraType = get("--lora_type")
	}
}

// readObject reads a model config file as a JSON object.
func readObject(path string) (map[string]any, error) {
	v, err := readJSON(path)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), errNotObject)
	}
	return m, nil
}

var errNotObject = errors.New("not a JSON object")

// loadErr maps a read error: a missing file is ErrNotFound, a broken one is ErrInvalid
// (SimpleTuner answers 422 for invalid JSON on disk; the API maps ErrCorrupt to 422).
func loadErr(name string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return notFound(name)
	}
	return fmt.Errorf("%w: configuration '%s' cannot be read: %v", ErrCorrupt, name, err)
}

// ErrCorrupt: a stored configuration file is not valid JSON of the right shape.
var ErrCorrupt = errors.New("stored configuration is invalid")

// Loaded is a configuration as GET answers it.
type Loaded struct {
	Name       string    `json:"name"`
	Config     any       `json:"config"`
	Metadata   *Metadata `json:"metadata"`
	ConfigType Kind      `json:"config_type,omitempty"`
}

// Get loads a configuration. Model configs carry both spellings of data_backend_config.
func (s *Service) Get(kind Kind, name string) (*Loaded, error) {
	name, err := CleanName(name)
	if err != nil {
		return nil, err
	}
	loc, ok := s.locate(kind, name)
	if !ok {
		return nil, notFound(name)
	}
	v, err := readJSON(loc.config)
	if err != nil {
		return nil, loadErr(name, err)
	}
	meta := s.readMeta(loc, name)
	if kind == KindModel {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, loadErr(name, errNotObject)
		}
		v = withBothSpellings(m)
	}
	return &Loaded{Name: name, Config: v, Metadata: &meta, ConfigType: kind}, nil
}

// ListItem is one row of List.
type ListItem struct {
	Metadata
	DataloaderPath    *string `json:"dataloader_path,omitempty"`
	DataBackendConfig *string `json:"data_backend_config,omitempty"`
	HasDataloader     bool    `json:"has_dataloader"`
	WebhookConfig     *string `json:"webhook_config,omitempty"`
}

// Listing is the body of GET /api/configs/.
type Listing struct {
	Configs    []ListItem `json:"configs"`
	Active     *string    `json:"active"`
	Count      int        `json:"count"`
	ConfigType Kind       `json:"config_type"`
}

// List lists the configurations of one kind, sorted by name.
func (s *Service) List(kind Kind) (*Listing, error) {
	names, err := s.names(kind)
	if err != nil {
		return nil, err
	}
	out := &Listing{Configs: []ListItem{}, ConfigType: kind}
	for _, n := range names {
		loc, ok := s.locate(kind, n)
		if !ok {
			continue
		}
		item := ListItem{Metadata: s.readMeta(loc, n)}
		if kind == KindModel {
			if cfg, err := readObject(loc.config); err == nil {
				s.describe(&item.Metadata, cfg)
				if p := dataBackendOf(cfg); p != "" {
					item.DataBackendConfig = &p
					item.DataloaderPath = &p
					// Asked through the confined reader: a listing must not say whether
					// a path outside the roots exists.
					abs, err := options.ResolveConfigPath(s.dir, p)
					item.HasDataloader = err == nil && s.CheckFile(abs) == nil
				}
				if w, ok := cfg["--webhook_config"].(string); ok && w != "" {
					item.WebhookConfig = &w
				}
			}
		}
		out.Configs = append(out.Configs, item)
	}
	out.Count = len(out.Configs)
	if kind == KindModel {
		if name, ok, _ := s.ActiveName(); ok {
			out.Active = &name
		}
	}
	return out, nil
}

// dataBackendOf returns a stored config's dataloader path (either spelling).
func dataBackendOf(cfg map[string]any) string {
	if v, ok := cfg[dataBackendKey].(string); ok && v != "" {
		return v
	}
	v, _ := cfg["--"+dataBackendKey].(string)
	return v
}

// names returns the names of the configurations of a kind.
func (s *Service) names(kind Kind) ([]string, error) {
	seen := map[string]bool{}
	if kind == KindWebhook {
		ents, err := os.ReadDir(filepath.Join(s.dir, "webhooks"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		for _, e := range ents {
			if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && e.Type().IsRegular() && nameRE.MatchString(n) {
				seen[n] = true
			}
		}
		return sortedKeys(seen), nil
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") {
			continue
		}
		if e.IsDir() {
			if n == "webhooks" || n == "templates" || !nameRE.MatchString(n) {
				continue
			}
			if _, ok := s.locate(kind, n); ok {
				seen[n] = true
			}
			continue
		}
		base, ok := strings.CutSuffix(n, ".json")
		if !ok || strings.HasSuffix(base, ".metadata") || !nameRE.MatchString(base) || !e.Type().IsRegular() {
			continue
		}
		if kind == KindModel || kind == KindDataloader {
			if _, ok := s.locate(kind, base); ok {
				seen[base] = true
			}
		}
	}
	return sortedKeys(seen), nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ActiveName returns the active environment's name, if one is set and still exists.
func (s *Service) ActiveName() (string, bool, error) {
	var name string
	ok, err := s.settings.Get(activeSetting, &name)
	if err != nil || !ok || name == "" {
		return "", false, err
	}
	if _, exists := s.locate(KindModel, name); !exists {
		return "", false, nil
	}
	return name, true, nil
}

// Active returns the active environment, or a Loaded with an empty name and config when
// none is active.
func (s *Service) Active() (*Loaded, error) {
	name, ok, err := s.ActiveName()
	if err != nil {
		return nil, err
	}
	if !ok {
		return &Loaded{Config: map[string]any{}}, nil
	}
	l, err := s.Get(KindModel, name)
	if err != nil {
		return nil, err
	}
	l.ConfigType = ""
	return l, nil
}

// Activate makes a model configuration the active one.
func (s *Service) Activate(name string) (string, error) {
	name, err := CleanName(name)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.locate(KindModel, name); !ok {
		return "", notFound(name)
	}
	if err := s.settings.Put(activeSetting, name); err != nil {
		return "", fmt.Errorf("store active configuration: %w", err)
	}
	return name, nil
}

// Delete removes a configuration. Deleting a model configuration removes its whole
// environment folder (config, metadata and the dataloader inside it).
func (s *Service) Delete(kind Kind, name string) error {
	name, err := CleanName(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	loc, ok := s.locate(kind, name)
	if !ok {
		return notFound(name)
	}
	if kind == KindModel {
		if active, ok, _ := s.ActiveName(); ok && active == name {
			return errmsg.New(ErrActive, "Cannot delete the active configuration")
		}
		if loc.folder != "" {
			return os.RemoveAll(loc.folder)
		}
		if loc.meta != "" {
			if err := os.Remove(loc.meta); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	if err := os.Remove(loc.config); err != nil {
		return err
	}
	return syncDir(filepath.Dir(loc.config))
}
