package configs

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"simpletuner/internal/errmsg"
	"simpletuner/internal/jsondoc"
	"simpletuner/options"
)

// lycorisFile is the name of an environment's LyCORIS config in its folder (SimpleTuner's
// config/<env>/lycoris_config.json).
const lycorisFile = "lycoris_config.json"

// lycorisOption is the option that points a model config at its LyCORIS config.
const lycorisOption = "--lycoris_config"

// trainsLycoris reports whether a resolved configuration trains a LyCORIS adapter, so
// the trainer reads its --lycoris_config.
func trainsLycoris(c *options.Config) bool {
	return c.String("--model_type") == "lora" && c.String("--lora_type") == "lycoris"
}

// isInline reports whether an option value is a JSON document rather than a path.
func isInline(v string) bool {
	v = strings.TrimSpace(v)
	return strings.HasPrefix(v, "{") || strings.HasPrefix(v, "[")
}

// lycorisDefault points a new environment that trains LyCORIS and names no LyCORIS
// config at <name>/lycoris_config.json, the file CreateEnvironment writes with
// options.DefaultLycorisConfig; it returns that file's absolute path, or "" when the
// environment needs none. cfg is normalised (canonical keys).
func (s *Service) lycorisDefault(name string, cfg map[string]any) string {
	mt, _ := cfg["--model_type"].(string)
	lt, _ := cfg["--lora_type"].(string)
	if v, _ := cfg[lycorisOption].(string); mt != "lora" || lt != "lycoris" || strings.TrimSpace(v) != "" {
		return ""
	}
	cfg[lycorisOption] = name + "/" + lycorisFile
	return filepath.Join(s.dir, name, lycorisFile)
}

// LycorisIssues checks the LyCORIS config a resolved configuration trains with (its
// paths resolved): the inline document, or the file read as ReadFile reads it, against
// options.CheckLycoris. Nothing is said when no LyCORIS adapter is trained or the file is
// pending (about to be written by the caller); a file the registry already found missing
// is the caller's to skip.
func (s *Service) LycorisIssues(c *options.Config, pending ...string) options.Issues {
	if !trainsLycoris(c) {
		return nil
	}
	v := strings.TrimSpace(c.String(lycorisOption))
	var data []byte
	label := ""
	switch {
	case v == "":
		return options.Issues{{Option: lycorisOption, Severity: options.SevError, Err: options.ErrRequired,
			Message: "--lora_type=lycoris requires a LyCORIS config: set --lycoris_config to a JSON file in the configs directory"}}
	case isInline(v):
		data = []byte(v)
	default:
		for _, p := range pending {
			if p == v {
				return nil
			}
		}
		b, err := s.ReadFile(v)
		if err != nil {
			return options.Issues{{Option: lycorisOption, Severity: options.SevError, Err: options.ErrInvalidValue,
				Message: "LyCORIS config cannot be read: " + err.Error()}}
		}
		data, label = b, s.shownPath(v)
	}
	_, issues := options.ParseLycoris(data)
	if label != "" {
		for i := range issues {
			issues[i].Message = "LyCORIS config " + label + ": " + issues[i].Message
		}
	}
	return issues
}

// shownPath is a file path as messages show it: relative to the configs dir when inside
// it.
func (s *Service) shownPath(p string) string {
	if rel, err := filepath.Rel(s.dir, p); err == nil && filepath.IsLocal(rel) {
		return filepath.ToSlash(rel)
	}
	return p
}

// lycorisValue returns an environment's --lycoris_config value under any spelling, or
// the registry default when it sets none (set is false then).
func (s *Service) lycorisValue(cfg map[string]any) (value string, set bool) {
	for k, v := range cfg {
		if c, err := s.reg.Canonical(k); err == nil && c == lycorisOption {
			if str, _ := v.(string); strings.TrimSpace(str) != "" {
				return str, true
			}
		}
	}
	return s.reg.Defaults().String(lycorisOption), false
}

// LycorisBody is the answer of GET /api/configs/environments/{env}/lycoris.
type LycorisBody struct {
	EnvironmentID string `json:"environment_id"`
	Config        any    `json:"config"`
}

// GetLycoris returns the LyCORIS config an environment trains with: the file its
// --lycoris_config names (the registry default when unset), or the inline document.
func (s *Service) GetLycoris(env string) (*LycorisBody, error) {
	env, err := CleanName(env)
	if err != nil {
		return nil, err
	}
	loc, ok := s.locate(KindModel, env)
	if !ok {
		return nil, notFound(env)
	}
	cfg, err := readObject(loc.config)
	if err != nil {
		return nil, loadErr(env, err)
	}
	none := errmsg.New(ErrNotFound, "No Lycoris configuration found for environment '%s'", env)
	v, _ := s.lycorisValue(cfg)
	data := []byte(v)
	if !isInline(v) {
		abs, err := options.ResolveConfigPath(s.dir, v)
		if err != nil {
			return nil, errmsg.New(ErrInvalid, "%s: %v", lycorisOption, err)
		}
		if data, err = s.ReadFile(abs); errors.Is(err, fs.ErrNotExist) {
			return nil, none
		} else if err != nil {
			return nil, err
		}
	}
	var doc any
	if err := jsondoc.DecodeNumbers(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: the LyCORIS config of '%s' is not valid JSON: %v", ErrCorrupt, env, err)
	}
	return &LycorisBody{EnvironmentID: env, Config: doc}, nil
}

// LycorisRequest is the body of PUT /api/configs/environments/{env}/lycoris and of POST
// /api/configs/lycoris/validate.
type LycorisRequest struct {
	Config any `json:"config"`
}

// LycorisSaved is the answer of PUT /api/configs/environments/{env}/lycoris.
type LycorisSaved struct {
	Message       string `json:"message"`
	EnvironmentID string `json:"environment_id"`
	Success       bool   `json:"success"`
	// Path is the file, relative to the configs dir; AbsolutePath is the same file.
	Path         string   `json:"path"`
	AbsolutePath string   `json:"absolute_path"`
	Warnings     []string `json:"warnings"`
}

// PutLycoris checks a LyCORIS config (options.CheckLycoris; errors come back as
// *ValidationError and nothing is written) and writes it where the environment's
// --lycoris_config points, or to <env>/lycoris_config.json when it points nowhere or
// holds inline JSON; the environment then names that file.
func (s *Service) PutLycoris(env string, doc any) (*LycorisSaved, error) {
	env, err := CleanName(env)
	if err != nil {
		return nil, err
	}
	issues := options.CheckLycoris(doc)
	if issues.HasErrors() {
		return nil, &ValidationError{Subject: "lycoris", Issues: issues}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	loc, ok := s.locate(KindModel, env)
	if !ok {
		return nil, errmsg.New(ErrNotFound, "Environment '%s' not found", env)
	}
	cfg, err := readObject(loc.config)
	if err != nil {
		return nil, loadErr(env, err)
	}
	rel := env + "/" + lycorisFile
	if v, set := s.lycorisValue(cfg); set && !isInline(v) {
		abs, err := options.ResolveConfigPath(s.dir, v)
		r, rerr := filepath.Rel(s.dir, abs)
		if err != nil || rerr != nil || !filepath.IsAbs(abs) || !filepath.IsLocal(r) || !strings.HasSuffix(r, ".json") {
			return nil, errmsg.New(ErrInvalid, "LyCORIS configuration files must reside within the configs directory; point %s at a .json file there", lycorisOption)
		}
		rel = filepath.ToSlash(r)
	}
	abs := filepath.Join(s.dir, filepath.FromSlash(rel))
	if err := writeJSONAtomic(abs, doc); err != nil {
		return nil, err
	}
	if v, _ := cfg[lycorisOption].(string); v != rel {
		for k := range cfg {
			if c, err := s.reg.Canonical(k); err == nil && c == lycorisOption {
				delete(cfg, k)
			}
		}
		cfg[lycorisOption] = rel
		if err := writeJSONAtomic(loc.config, cfg); err != nil {
			return nil, err
		}
	}
	if loc.meta != "" {
		meta := s.readMeta(loc, env)
		s.describe(&meta, cfg)
		meta.ModifiedAt = s.timestamp()
		if err := writeJSONAtomic(loc.meta, meta); err != nil {
			return nil, err
		}
	}
	return &LycorisSaved{Message: fmt.Sprintf("Lycoris configuration saved for environment '%s'", env), EnvironmentID: env, Success: true,
		Path: rel, AbsolutePath: abs, Warnings: nonNil(issues.Warnings().Messages())}, nil
}

// LycorisReport is the answer of POST /api/configs/lycoris/validate.
type LycorisReport struct {
	Valid    bool     `json:"valid"`
	Errors   []string `json:"errors"`
	Warnings []string `json:"warnings"`
}

// ValidateLycoris checks a LyCORIS config without saving it (options.CheckLycoris).
func ValidateLycoris(doc any) LycorisReport {
	is := options.CheckLycoris(doc)
	return LycorisReport{Valid: !is.HasErrors(), Errors: nonNil(is.Errors().Messages()), Warnings: nonNil(is.Warnings().Messages())}
}
