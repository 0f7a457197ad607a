package validation

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Sentinel errors.
var (
	// ErrConfig: a validation setting (resolution list, prompt library) is malformed.
	ErrConfig = errors.New("validation: invalid setting")
	// ErrSample: the sampler failed (engine or model error).
	ErrSample = errors.New("validation: sampling failed")
)

// Resolution is one validation image size in pixels.
type Resolution struct{ W, H int }

// String renders the resolution as WxH.
func (r Resolution) String() string { return fmt.Sprintf("%dx%d", r.W, r.H) }

// ParseResolutions parses validation_resolution: a comma-separated list of "N" (square) or
// "WxH" entries. Every edge must be a positive multiple of align (the model's patch size).
func ParseResolutions(s string, align int) ([]Resolution, error) {
	if align < 1 {
		align = 1
	}
	var out []Resolution
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(strings.ToLower(part))
		if part == "" {
			continue
		}
		ws, hs, pair := strings.Cut(part, "x")
		w, err1 := strconv.Atoi(strings.TrimSpace(ws))
		h, err2 := w, error(nil)
		if pair {
			h, err2 = strconv.Atoi(strings.TrimSpace(hs))
		}
		if err1 != nil || err2 != nil || w <= 0 || h <= 0 {
			return nil, fmt.Errorf("%w: validation_resolution entry %q is not N or WxH", ErrConfig, part)
		}
		if w%align != 0 || h%align != 0 {
			return nil, fmt.Errorf("%w: validation_resolution %dx%d: both edges must be multiples of %d", ErrConfig, w, h, align)
		}
		out = append(out, Resolution{w, h})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: validation_resolution %q names no resolution", ErrConfig, s)
	}
	return out, nil
}

// Prompt is one validation prompt with the short name used in file names and events.
type Prompt struct {
	ShortName string
	Text      string
}

// DefaultShortName is the short name of --validation_prompt (SimpleTuner's "validation").
const DefaultShortName = "validation"

// LoadPromptLibrary reads user_prompt_library: a JSON object mapping short names to prompts,
// given inline or as a path to a JSON file.
func LoadPromptLibrary(value string) (map[string]string, error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return nil, nil
	}
	raw := []byte(value)
	if !strings.HasPrefix(value, "{") {
		b, err := os.ReadFile(value)
		if err != nil {
			return nil, fmt.Errorf("%w: user_prompt_library: %w", ErrConfig, err)
		}
		raw = b
	}
	var lib map[string]string
	if err := json.Unmarshal(raw, &lib); err != nil {
		return nil, fmt.Errorf("%w: user_prompt_library must be a JSON object of short name → prompt: %w", ErrConfig, err)
	}
	for k, v := range lib {
		if strings.TrimSpace(k) == "" || strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("%w: user_prompt_library has an empty short name or prompt (%q: %q)", ErrConfig, k, v)
		}
	}
	return lib, nil
}

// Prompts lists the validation prompts: --validation_prompt first (short name "validation"),
// then the library sorted by short name.
func Prompts(validationPrompt string, library map[string]string) []Prompt {
	var out []Prompt
	if strings.TrimSpace(validationPrompt) != "" {
		out = append(out, Prompt{DefaultShortName, validationPrompt})
	}
	names := make([]string, 0, len(library))
	for k := range library {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		out = append(out, Prompt{k, library[k]})
	}
	return out
}

// FileName is the PNG name of a validation image: step_<N>_<shortname>_<W>x<H>.png, with the
// short name reduced to letters, digits, '-' and '_' so it is always one safe path element.
func FileName(step int, shortName string, r Resolution) string {
	return fmt.Sprintf("step_%d_%s_%s.png", step, SafeName(shortName), r)
}

// SafeName maps a short name onto [A-Za-z0-9_-] (others become '_'; empty becomes "prompt").
func SafeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "prompt"
	}
	return b.String()
}
