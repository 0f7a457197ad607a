package configs

import (
	"embed"
	"encoding/json"
	"io/fs"
	"path"
	"simpletuner/internal/errmsg"
	"sort"
	"strings"
)

// examplesFS holds the bundled examples: examples/<name>/config.json, an optional
// multidatabackend.json and metadata.json ({"description": …}). They are embedded so the
// binary needs no data files next to it.
//
//go:embed examples
var examplesFS embed.FS

// Example is one bundled example, as GET /api/configs/examples lists it.
type Example struct {
	Name           string         `json:"name"`
	Defaults       map[string]any `json:"defaults"`
	Description    string         `json:"description"`
	ConfigPath     string         `json:"config_path"`
	DataloaderPath *string        `json:"dataloader_path"`
	HasDataloader  bool           `json:"has_dataloader"`

	dataloader any
}

// Examples returns the bundled examples, sorted by name.
func Examples() ([]Example, error) {
	ents, err := fs.ReadDir(examplesFS, "examples")
	if err != nil {
		return nil, err
	}
	var out []Example
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		ex, err := loadExample(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, *ex)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func loadExample(name string) (*Example, error) {
	dir := path.Join("examples", name)
	data, err := examplesFS.ReadFile(path.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	v, err := decodeJSON(data)
	if err != nil {
		return nil, err
	}
	cfg, _ := v.(map[string]any)
	ex := &Example{Name: name, Defaults: cfg, ConfigPath: path.Join(dir, "config.json")}
	if b, err := examplesFS.ReadFile(path.Join(dir, "metadata.json")); err == nil {
		var m struct {
			Description string `json:"description"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, err
		}
		ex.Description = m.Description
	}
	if b, err := examplesFS.ReadFile(path.Join(dir, "multidatabackend.json")); err == nil {
		if ex.dataloader, err = decodeJSON(b); err != nil {
			return nil, err
		}
		p := path.Join(dir, "multidatabackend.json")
		ex.DataloaderPath, ex.HasDataloader = &p, true
	}
	return ex, nil
}

// exampleByName finds a bundled example (404 listing the available ones otherwise).
func exampleByName(name string) (*Example, error) {
	all, err := Examples()
	if err != nil {
		return nil, err
	}
	var names []string
	for i := range all {
		if all[i].Name == name {
			return &all[i], nil
		}
		names = append(names, all[i].Name)
	}
	return nil, errmsg.New(ErrNotFound, "Example '%s' not found. Available examples: %s", errmsg.Clip(name), strings.Join(names, ", "))
}
