package options

import (
	"fmt"
	"slices"
)

// Config is a resolved configuration: a typed value (possibly nil) for every registered
// option, and the merge layer each value came from. The zero value is not usable; get
// one from Registry.Defaults or Registry.Merge. A Config is not safe for concurrent
// mutation.
type Config struct {
	reg     *Registry
	values  map[string]any
	sources map[string]Source
}

// Defaults returns a Config holding the registry defaults only.
func (r *Registry) Defaults() *Config {
	c := &Config{reg: r, values: make(map[string]any, len(r.opts)), sources: make(map[string]Source, len(r.opts))}
	for _, o := range r.opts {
		c.values[o.Name] = o.clone().Default
		c.sources[o.Name] = FromDefault
	}
	return c
}

// Merge resolves registry defaults ← env ← submitted (later wins; a nil value in a layer
// unsets). Either layer may be nil. Afterwards it applies SimpleTuner's rewrites:
// --lr_scheduler=constant with warm-up steps becomes constant_with_warmup. Values that
// do not coerce are reported and skipped, so the lower layer's value stays.
func (r *Registry) Merge(env, submitted Values) (*Config, Issues) {
	c := r.Defaults()
	issues := c.Apply(env, FromEnvironment)
	issues = append(issues, c.Apply(submitted, FromSubmitted)...)
	c.normalise()
	return c, issues
}

// Apply layers values over the config, recording src as their source. Keys may be any
// accepted spelling; values are coerced as JSON values are.
func (c *Config) Apply(vals Values, src Source) Issues {
	var issues Issues
	for _, k := range sortedKeys(vals) {
		o := c.reg.lookup(k)
		if o == nil {
			issues = append(issues, c.reg.unknown(k))
			continue
		}
		v, present, issue := o.coerce(vals[k], emptyJSON)
		if issue != nil {
			issues = append(issues, *issue)
			continue
		}
		if present {
			c.values[o.Name] = v
			c.sources[o.Name] = src
		}
	}
	return issues
}

// normalise applies the rewrites SimpleTuner's server makes after merging.
func (c *Config) normalise() {
	if c.values["--lr_scheduler"] == "constant" {
		if w, ok := c.values["--lr_warmup_steps"].(int); ok && w > 0 {
			c.values["--lr_scheduler"] = "constant_with_warmup"
		}
	}
}

// Set coerces and stores one value with the given source (the daemon uses FromServer
// for allocated GPUs and resolved paths). Errors wrap ErrUnknownOption or ErrInvalidValue.
func (c *Config) Set(name string, raw any, src Source) error {
	canon, v, err := c.reg.Coerce(name, raw)
	if err != nil {
		return fmt.Errorf("set %s: %w", name, err)
	}
	c.values[canon] = v
	c.sources[canon] = src
	return nil
}

// Unset clears an option (stores nil) with the given source.
func (c *Config) Unset(name string, src Source) error {
	o := c.reg.lookup(name)
	if o == nil {
		return fmt.Errorf("unset: %w", c.reg.unknown(name))
	}
	c.values[o.Name] = nil
	c.sources[o.Name] = src
	return nil
}

// Registry returns the registry the config was resolved with.
func (c *Config) Registry() *Registry { return c.reg }

// Get returns the typed value of an option (any spelling); ok is false when the option
// is unknown or unset.
func (c *Config) Get(name string) (v any, ok bool) {
	o := c.reg.lookup(name)
	if o == nil {
		return nil, false
	}
	v = c.values[o.Name]
	if l, isList := v.([]string); isList {
		v = slices.Clone(l)
	}
	return v, v != nil
}

// Source returns the layer an option's value came from (FromDefault for unknown names).
func (c *Config) Source(name string) Source {
	if o := c.reg.lookup(name); o != nil {
		return c.sources[o.Name]
	}
	return FromDefault
}

// String returns a text-valued option, or "" when unset.
func (c *Config) String(name string) string {
	v, _ := c.Get(name)
	s, _ := v.(string)
	return s
}

// Int returns an integer option; ok is false when unset.
func (c *Config) Int(name string) (int, bool) {
	v, _ := c.Get(name)
	n, ok := v.(int)
	return n, ok
}

// Float returns a numeric option; ok is false when unset.
func (c *Config) Float(name string) (float64, bool) {
	v, _ := c.Get(name)
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	}
	return 0, false
}

// Bool returns a boolean option; unset is false.
func (c *Config) Bool(name string) bool {
	v, _ := c.Get(name)
	b, _ := v.(bool)
	return b
}

// List returns a list option; unset is nil.
func (c *Config) List(name string) []string {
	v, _ := c.Get(name)
	l, _ := v.([]string)
	return l
}

// Values returns a copy of every option's typed value, nil ones included.
func (c *Config) Values() Values {
	out := make(Values, len(c.values))
	for k, v := range c.values {
		if l, ok := v.([]string); ok {
			v = slices.Clone(l)
		}
		out[k] = v
	}
	return out
}

// Clone returns an independent copy.
func (c *Config) Clone() *Config {
	d := &Config{reg: c.reg, values: c.Values(), sources: make(map[string]Source, len(c.sources))}
	for k, s := range c.sources {
		d.sources[k] = s
	}
	return d
}

// applies reports whether an option is meaningful for the config's family and model type.
func (c *Config) applies(o *Option) bool {
	return o.appliesTo(c.String("--model_family"), c.String("--model_type"))
}

// Map returns every option under its "--" key as SimpleTuner stores configs: unset
// options as nil (JSON null), lists as comma-joined strings, numbers and booleans as
// themselves. Server-only options are included; the result is for storing, not argv.
func (c *Config) Map() map[string]any {
	out := make(map[string]any, len(c.values))
	for k, v := range c.values {
		if l, ok := v.([]string); ok {
			v = FormatValue(l)
		}
		out[k] = v
	}
	return out
}

// Args returns the trainer's argv: "--key=value" for every set option, sorted by name,
// leaving out unset options, server-only options and options that do not apply to the
// chosen model family or type.
func (c *Config) Args() []string {
	var out []string
	for _, o := range c.reg.opts {
		v := c.values[o.Name]
		if v == nil || o.ServerOnly || !c.applies(o) {
			continue
		}
		out = append(out, o.Name+"="+FormatValue(v))
	}
	return out
}

// Provenance returns the source of every option that did not come from the registry
// defaults, keyed by canonical name.
func (c *Config) Provenance() map[string]Source {
	out := map[string]Source{}
	for k, s := range c.sources {
		if s != FromDefault {
			out[k] = s
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
