package options

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Family is a model family a trainer can train (the name and flavours a trainer's Info
// RPC reports), with the rules the registry validates it by.
type Family struct {
	Name string
	// Flavours lists the accepted --model_flavour values; empty accepts any flavour.
	Flavours []string
	// DefaultFlavour is used when --model_flavour is unset ("" = none).
	DefaultFlavour string
	// MinResolution is the smallest numeric --resolution (pixel units) the family
	// trains at; 0 means no minimum. SimpleTuner's latent families use 256.
	MinResolution int
	// DefaultResolution is the --resolution (pixel_area) a new environment of the family
	// starts with, in its config and its starter dataloader; 0 means the option's own
	// default (SimpleTuner's 1024, sized for latent models).
	DefaultResolution int
}

// Capabilities describe what a trainer understands. The daemon and the CLI's train build
// them from the families the installed trainer reports in its Info, and a trainer from
// its own family registry (both through plugins.OptionFamilies); Default() is the
// fallback when no trainer can be asked, and what tests without a trainer use.
type Capabilities struct {
	// Families are the model families; nil means DefaultFamilies().
	Families []Family
	// Trackers are the --report_to trackers the trainer can feed, besides "none"
	// (which is always available). A known tracker missing here is a warning, not an
	// error: metrics then stay in the event stream.
	Trackers []string
}

// DefaultFamilies is the static fallback family list, used when no trainer could be asked
// for its own: the project's pixel-space diffusion transformer, as the bundled trainers
// report it (their tests hold the two equal). Its default resolution is its default
// flavour's sample size (16 px for tiny):
// attention runs over every 2×2 pixel patch, so SimpleTuner's 1024 px would be 262144
// tokens, whose attention scores alone need hundreds of GiB.
func DefaultFamilies() []Family {
	return []Family{{Name: "dit", Flavours: []string{"tiny", "small", "base", "xl"}, DefaultFlavour: "tiny", DefaultResolution: 16}}
}

// SimpleTunerFamilies lists SimpleTuner's model families (docs/compatibility.md §12) with the
// flavours the tutorial uses. A daemon may append them to its trainer's families so
// that SimpleTuner configurations (pixart_sigma, flux, …) validate before a trainer for
// them exists; this package never adds them by itself.
func SimpleTunerFamilies() []Family {
	names := []string{
		"ace_step", "anima", "auraflow", "boogu_image", "chroma", "cosmos2image", "cosmos3",
		"deepfloyd", "ernie", "flux", "flux2", "heartmula", "hidream", "hunyuanvideo", "ideogram",
		"infinitetalk", "kandinsky5-image", "kandinsky5-video", "kolors", "krea2", "longcat_image",
		"longcat_video", "ltxvideo", "ltxvideo2", "lumina2", "mageflow", "minimaxh3", "minimaxmusic",
		"omnigen", "pixart_sigma", "qwen_image", "sana", "sanavideo", "sd1x", "sd2x", "sd3", "sdxl",
		"stable_cascade", "wan", "z_image", "z_image_omni", "zlab_i1",
	}
	out := make([]Family, 0, len(names))
	for _, n := range names {
		f := Family{Name: n, MinResolution: 256}
		switch n {
		case "pixart_sigma":
			f.Flavours = []string{"900M-1024-v0.6", "900M-1024-v0.7-stage1", "900M-1024-v0.7-stage2", "600M-512", "600M-1024", "600M-2048"}
			f.DefaultFlavour = "900M-1024-v0.6"
		case "flux":
			f.Flavours = []string{"krea", "dev", "schnell", "kontext", "fluxbooru", "libreflux"}
			f.DefaultFlavour = "krea"
		}
		out = append(out, f)
	}
	return out
}

// knownTrackers are the --report_to values SimpleTuner accepts.
var knownTrackers = []string{"all", "comet_ml", "custom-tracker", "none", "simpletuner", "swanlab", "tensorboard", "wandb"}

// Registry is the read-only set of training options for one set of Capabilities. It is
// safe for concurrent use.
type Registry struct {
	opts     []*Option          // sorted by Name
	byKey    map[string]*Option // bare canonical names and bare aliases
	families []Family           // sorted by Name
	family   map[string]*Family
	trackers map[string]bool // available trackers, "none" included
}

var familyName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// New builds a registry for the given capabilities. Family names must be unique and
// look like identifiers; a default flavour must be one of the flavours.
func New(caps Capabilities) (*Registry, error) {
	fams := caps.Families
	if fams == nil {
		fams = DefaultFamilies()
	}
	r := &Registry{family: map[string]*Family{}, trackers: map[string]bool{"none": true}}
	seen := map[string]bool{}
	for _, f := range fams {
		if !familyName.MatchString(f.Name) {
			return nil, fmt.Errorf("%w: model family name %q", ErrInvalidRegistry, f.Name)
		}
		if seen[f.Name] {
			return nil, fmt.Errorf("%w: model family %q listed twice", ErrInvalidRegistry, f.Name)
		}
		if f.DefaultFlavour != "" && len(f.Flavours) > 0 && !slices.Contains(f.Flavours, f.DefaultFlavour) {
			return nil, fmt.Errorf("%w: default flavour %q of family %q is not one of its flavours", ErrInvalidRegistry, f.DefaultFlavour, f.Name)
		}
		seen[f.Name] = true
		f.Flavours = slices.Clone(f.Flavours)
		r.families = append(r.families, f)
	}
	// The index points into r.families, which is never appended to after this.
	sort.Slice(r.families, func(i, j int) bool { return r.families[i].Name < r.families[j].Name })
	for i := range r.families {
		r.family[r.families[i].Name] = &r.families[i]
	}
	for _, t := range caps.Trackers {
		if !slices.Contains(knownTrackers, t) {
			return nil, fmt.Errorf("%w: tracker %q is not one of %s", ErrInvalidRegistry, t, strings.Join(knownTrackers, ", "))
		}
		r.trackers[t] = true
	}

	r.opts = optionTable(r.familyNames())
	sort.Slice(r.opts, func(i, j int) bool { return r.opts[i].Name < r.opts[j].Name })
	r.byKey = make(map[string]*Option, 2*len(r.opts))
	for _, o := range r.opts {
		for _, k := range append([]string{o.Name}, o.Aliases...) {
			b := bare(k)
			if prev, dup := r.byKey[b]; dup {
				return nil, fmt.Errorf("%w: %s is claimed by both %s and %s", ErrInvalidRegistry, k, prev.Name, o.Name)
			}
			r.byKey[b] = o
		}
	}
	return r, nil
}

// defaultRegistry is built once and never modified afterwards.
var defaultRegistry = sync.OnceValue(func() *Registry {
	r, err := New(Capabilities{})
	if err != nil {
		panic("options: built-in registry is inconsistent: " + err.Error())
	}
	return r
})

// Default returns the shared registry for the static fallback capabilities (family
// "dit", no trackers): for a daemon whose trainer cannot be asked, and for code with no
// trainer at all. It is read-only; build your own with New for other capabilities.
func Default() *Registry { return defaultRegistry() }

func (r *Registry) familyNames() []string {
	names := make([]string, len(r.families))
	for i, f := range r.families {
		names[i] = f.Name
	}
	return names
}

// Families returns a copy of the registry's model families, sorted by name.
func (r *Registry) Families() []Family {
	out := make([]Family, len(r.families))
	for i, f := range r.families {
		f.Flavours = slices.Clone(f.Flavours)
		out[i] = f
	}
	return out
}

// Family returns the named model family.
func (r *Registry) Family(name string) (Family, bool) {
	f, ok := r.family[name]
	if !ok {
		return Family{}, false
	}
	c := *f
	c.Flavours = slices.Clone(f.Flavours)
	return c, true
}

// DefaultResolution is the --resolution a new environment of family starts with: the
// family's DefaultResolution, else the option's default.
func (r *Registry) DefaultResolution(family string) float64 {
	if f, ok := r.family[family]; ok && f.DefaultResolution > 0 {
		return float64(f.DefaultResolution)
	}
	if o := r.lookup("--resolution"); o != nil {
		if v, ok := o.Default.(float64); ok {
			return v
		}
	}
	return 1024
}

// TrackerAvailable reports whether the trainer can report to the tracker.
func (r *Registry) TrackerAvailable(name string) bool { return r.trackers[name] }

// Options returns copies of every option, sorted by canonical name.
func (r *Registry) Options() []Option {
	out := make([]Option, len(r.opts))
	for i, o := range r.opts {
		out[i] = o.clone()
	}
	return out
}

// Len returns the number of registered options.
func (r *Registry) Len() int { return len(r.opts) }

// Lookup finds an option by canonical name or alias, with or without the leading "--".
func (r *Registry) Lookup(name string) (Option, bool) {
	o := r.lookup(name)
	if o == nil {
		return Option{}, false
	}
	return o.clone(), true
}

func (r *Registry) lookup(name string) *Option {
	return r.byKey[bare(strings.TrimSpace(name))]
}

// Canonical returns the canonical "--name" for a name or alias. An unknown name gives an
// error wrapping ErrUnknownOption that suggests the closest known name.
func (r *Registry) Canonical(name string) (string, error) {
	if o := r.lookup(name); o != nil {
		return o.Name, nil
	}
	return "", r.unknown(name)
}

func (r *Registry) unknown(name string) Issue {
	shown := "--" + clip(bare(strings.TrimSpace(name)))
	if s := r.Suggest(name); s != "" {
		return errIssue(shown, ErrUnknownOption, "unknown option %s; did you mean %s?", shown, s)
	}
	return errIssue(shown, ErrUnknownOption, "unknown option %s; run 'simpletuner train --help' for the list", shown)
}

// Suggest returns the canonical name closest to an unknown name (by edit distance over
// names and aliases), or "" when nothing is close enough to be a plausible typo.
func (r *Registry) Suggest(name string) string {
	b := strings.ToLower(bare(strings.TrimSpace(name)))
	// No option name is anywhere near 64 bytes; skipping long input keeps a hostile
	// key from costing len(key)×len(name) work per option.
	if b == "" || len(b) > 64 {
		return ""
	}
	best, bestD := "", -1
	for k, o := range r.byKey {
		d := editDistance(b, k)
		if bestD < 0 || d < bestD || (d == bestD && o.Name < best) {
			best, bestD = o.Name, d
		}
	}
	// Allow about one edit per three characters, at least two: "learning_rat" finds
	// "learning_rate", but "foo" does not find "--seed".
	limit := max(2, len(b)/3)
	if bestD < 0 || bestD > limit {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
