package options

import (
	"encoding/json"
	"sort"
	"strings"
)

// controlKeys are form and config keys that steer the server rather than the trainer
// (SimpleTuner consumes them in build_config_bundle or drops them as WebUI-only). They
// are never options and never forwarded.
var controlKeys = map[string]bool{
	"__active_tab__":                  true,
	"__disabled_fields__":             true,
	"__replace_active_config__":       true,
	"merge_environment_config":        true,
	"configs_dir":                     true,
	"datasets_dir":                    true,
	"preserve_defaults":               true,
	"create_backup":                   true,
	"uploadMode":                      true,
	"ui-accelerate-mode":              true,
	"num_validation_images":           true,
	"allow_dataset_paths_outside_dir": true,
	"discord_webhooks":                true,
	"_metadata":                       true,
}

// IsControlKey reports whether a form or config key steers the server (such as
// __active_tab__ or merge_environment_config) instead of naming an option.
func IsControlKey(key string) bool { return controlKeys[bare(strings.TrimSpace(key))] }

// Submission is a parsed form or JSON config: option values, plus the control keys that
// came with them.
type Submission struct {
	// Values holds canonical names and typed values. A nil value is an explicit unset.
	Values Values
	// Control holds the control keys by their bare name, e.g. "__active_tab__",
	// "merge_environment_config", "__replace_active_config__"; the server acts on them.
	Control map[string]string
}

// ParseForm parses multipart or urlencoded form fields. Keys may be "--flag" or "flag";
// for repeated keys the last non-empty value wins, except that list options collect
// every value. Empty fields are dropped (they do not override lower layers) unless the
// option keeps "" or reads it as 0. Fields named in __disabled_fields__ are dropped
// unless they are required. Unknown keys give an error issue that suggests the closest
// name; values that do not parse give ErrInvalidValue issues and are left out.
func (r *Registry) ParseForm(form map[string][]string) (Submission, Issues) {
	sub := Submission{Values: Values{}, Control: map[string]string{}}
	var issues Issues
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	// Sorted so that "--x" and "x" given together resolve the same way every time, and
	// issues come out in a stable order.
	sort.Strings(keys)
	for _, k := range keys {
		vals := form[k]
		if IsControlKey(k) {
			sub.Control[bare(strings.TrimSpace(k))] = lastNonEmpty(vals)
			continue
		}
		o := r.lookup(k)
		if o == nil {
			issues = append(issues, r.unknown(k))
			continue
		}
		var raw any = lastNonEmpty(vals)
		if o.Type == List && raw != "" {
			raw = vals // every value counts; all-empty stays "" so it is dropped like others
		}
		v, present, issue := o.coerce(raw, emptyForm)
		if issue != nil {
			issues = append(issues, *issue)
			continue
		}
		if present {
			sub.Values[o.Name] = v
		}
	}
	if disabled := sub.Control["__disabled_fields__"]; disabled != "" {
		for _, f := range strings.Split(disabled, ",") {
			if o := r.lookup(f); o != nil && !o.Required {
				delete(sub.Values, o.Name)
			}
		}
	}
	return sub, issues
}

func lastNonEmpty(vals []string) string {
	for i := len(vals) - 1; i >= 0; i-- {
		if strings.TrimSpace(vals[i]) != "" {
			return vals[i]
		}
	}
	return ""
}

// ParseMap parses a JSON config object (an environment's config.json, a PUT body's
// "config", or a JSON training request). Keys may be "--flag" or "flag"; values may be
// JSON strings, numbers, booleans, null (explicit unset) or, for JSON options, inline
// arrays and objects. When both spellings of a key are present the bare one wins, as
// SimpleTuner's config store does for data_backend_config.
func (r *Registry) ParseMap(m map[string]any) (Submission, Issues) {
	sub := Submission{Values: Values{}, Control: map[string]string{}}
	var issues Issues
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // "--x" sorts before "x", so the bare spelling is applied last
	for _, k := range keys {
		raw := m[k]
		if IsControlKey(k) {
			s, ok := scalarString(raw)
			if !ok {
				b, _ := json.Marshal(raw)
				s = string(b)
			}
			sub.Control[bare(strings.TrimSpace(k))] = s
			continue
		}
		o := r.lookup(k)
		if o == nil {
			issues = append(issues, r.unknown(k))
			continue
		}
		v, present, issue := o.coerce(raw, emptyJSON)
		if issue != nil {
			issues = append(issues, *issue)
			continue
		}
		if present {
			sub.Values[o.Name] = v
		}
	}
	return sub, issues
}

// ParseJSON decodes a JSON object and parses it with ParseMap. Numbers keep their
// literal form until coercion, so large integers are not rounded.
func (r *Registry) ParseJSON(data []byte) (Submission, Issues) {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return Submission{Values: Values{}, Control: map[string]string{}},
			Issues{errIssue("", ErrInvalidValue, "configuration is not a JSON object: %v", err)}
	}
	return r.ParseMap(m)
}

// ParseArgs parses command-line style arguments: "--key=value", "key=value", or a lone
// "--flag" for a boolean option (meaning true). It is the inverse of Config.Args.
func (r *Registry) ParseArgs(args []string) (Values, Issues) {
	vals := Values{}
	var issues Issues
	for _, a := range args {
		k, v, hasValue := strings.Cut(a, "=")
		o := r.lookup(k)
		if o == nil {
			issues = append(issues, r.unknown(k))
			continue
		}
		var raw any = v
		if !hasValue {
			if o.Type != Bool {
				issues = append(issues, errIssue(o.Name, ErrInvalidValue, "%s needs a value: write %s=VALUE", o.Name, o.Name))
				continue
			}
			raw = true
		}
		val, present, issue := o.coerce(raw, emptyJSON)
		if issue != nil {
			issues = append(issues, *issue)
			continue
		}
		if present {
			vals[o.Name] = val
		}
	}
	return vals, issues
}
