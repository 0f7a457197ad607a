package options

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// emptyMode says what an empty string means where it came from.
type emptyMode int

const (
	// emptyForm: an empty form field is "not submitted" (SimpleTuner drops it), except
	// for AllowEmpty ("" kept) and ZeroOnEmpty (0) options.
	emptyForm emptyMode = iota
	// emptyJSON: an empty JSON string is an explicit unset, except for AllowEmpty ("")
	// and NonEmpty options (kept so validation can say "cannot be empty").
	emptyJSON
)

// coerce turns a raw form, JSON or Go value into the option's typed value. present is
// false when the value should be treated as not given at all. A value of the right
// syntax but outside the allowed set or range is returned as is: Validate reports it
// with the merged context.
func (o *Option) coerce(raw any, mode emptyMode) (v any, present bool, issue *Issue) {
	if raw == nil {
		return nil, true, nil
	}
	if s, ok := raw.(string); ok {
		if o.Type != String || !o.AllowEmpty {
			s = strings.TrimSpace(s)
		}
		if s == "" {
			return o.empty(mode)
		}
		raw = s
	}
	switch o.Type {
	case Int:
		return o.coerceInt(raw)
	case Float:
		return o.coerceFloat(raw)
	case Bool:
		return o.coerceBool(raw)
	case Enum:
		s, ok := scalarString(raw)
		if !ok {
			return nil, false, o.invalid(raw, "one of "+strings.Join(o.Values, ", "))
		}
		return o.normaliseEnum(s), true, nil
	case List:
		return o.coerceList(raw)
	case JSON:
		switch raw.(type) {
		case []any, map[string]any:
			b, err := json.Marshal(raw)
			if err != nil {
				return nil, false, o.invalid(raw, "JSON")
			}
			return string(b), true, nil
		}
		fallthrough
	default: // String, Path
		s, ok := scalarString(raw)
		if !ok {
			return nil, false, o.invalid(raw, "text")
		}
		return s, true, nil
	}
}

func (o *Option) empty(mode emptyMode) (any, bool, *Issue) {
	switch {
	case o.AllowEmpty:
		return "", true, nil
	case o.ZeroOnEmpty:
		return 0, true, nil
	case mode == emptyJSON && o.NonEmpty:
		return "", true, nil
	case mode == emptyJSON:
		return nil, true, nil
	}
	return nil, false, nil
}

func (o *Option) invalid(raw any, want string) *Issue {
	if o.invalidMessage != "" {
		i := errIssue(o.Name, ErrInvalidValue, "%s", o.invalidMessage)
		return &i
	}
	i := errIssue(o.Name, ErrInvalidValue, "invalid value %s for %s: want %s", quoteRaw(raw), o.Name, want)
	return &i
}

func (o *Option) coerceInt(raw any) (any, bool, *Issue) {
	var f float64
	switch x := raw.(type) {
	case int:
		return x, true, nil
	case int64:
		if int64(int(x)) != x { // only on 32-bit platforms
			return nil, false, o.invalid(raw, "a whole number")
		}
		return int(x), true, nil
	case float64:
		f = x
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return o.coerceInt(n)
		}
		var err error
		if f, err = x.Float64(); err != nil {
			return nil, false, o.invalid(raw, "a whole number")
		}
	case string:
		if n, err := strconv.ParseInt(x, 10, 64); err == nil {
			return o.coerceInt(n)
		}
		var err error
		// "200.0" and "2e3" are whole numbers too; "10.5" is not.
		if f, err = strconv.ParseFloat(x, 64); err != nil {
			return nil, false, o.invalid(raw, "a whole number")
		}
	default:
		return nil, false, o.invalid(raw, "a whole number")
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return nil, false, o.invalid(raw, "a whole number")
	}
	return int(f), true, nil
}

func (o *Option) coerceFloat(raw any) (any, bool, *Issue) {
	var f float64
	switch x := raw.(type) {
	case float64:
		f = x
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return nil, false, o.invalid(raw, "a number")
		}
	case string:
		var err error
		if f, err = strconv.ParseFloat(x, 64); err != nil {
			return nil, false, o.invalid(raw, "a number")
		}
	default:
		return nil, false, o.invalid(raw, "a number")
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, false, o.invalid(raw, "a finite number")
	}
	return f, true, nil
}

// ParseBool accepts true/false, 1/0, yes/no and on/off in any case.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "yes", "on":
		return true, nil
	case "false", "0", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("%w: %q is not a boolean (true/false, 1/0, yes/no, on/off)", ErrInvalidValue, s)
}

func (o *Option) coerceBool(raw any) (any, bool, *Issue) {
	switch x := raw.(type) {
	case bool:
		return x, true, nil
	case string:
		if b, err := ParseBool(x); err == nil {
			return b, true, nil
		}
	case float64:
		if x == 0 || x == 1 {
			return x == 1, true, nil
		}
	case int:
		if x == 0 || x == 1 {
			return x == 1, true, nil
		}
	case json.Number:
		return o.coerceBool(x.String())
	}
	return nil, false, o.invalid(raw, "true or false (also 1/0, yes/no, on/off)")
}

func (o *Option) coerceList(raw any) (any, bool, *Issue) {
	var parts []string
	switch x := raw.(type) {
	case []string:
		for _, s := range x {
			parts = append(parts, strings.Split(s, ",")...)
		}
	case []any:
		for _, e := range x {
			s, ok := scalarString(e)
			if !ok {
				return nil, false, o.invalid(raw, "a comma-separated list")
			}
			parts = append(parts, strings.Split(s, ",")...)
		}
	default:
		s, ok := scalarString(raw)
		if !ok {
			return nil, false, o.invalid(raw, "a comma-separated list")
		}
		parts = strings.Split(s, ",")
	}
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, o.normaliseEnum(p))
		}
	}
	if len(out) == 0 {
		return nil, true, nil
	}
	return out, true, nil
}

// normaliseEnum maps legacy and loose spellings onto an allowed value: value aliases
// first, then a match that ignores case and treats '-' and '_' alike
// ("external_script" → "external-script"). Anything else is returned unchanged.
func (o *Option) normaliseEnum(s string) string {
	if len(o.Values) == 0 || slices.Contains(o.Values, s) {
		return s
	}
	if v, ok := o.ValueAliases[s]; ok {
		return v
	}
	loose := func(x string) string { return strings.ReplaceAll(strings.ToLower(x), "-", "_") }
	for _, v := range o.Values {
		if loose(v) == loose(s) {
			return v
		}
	}
	for k, v := range o.ValueAliases {
		if loose(k) == loose(s) {
			return v
		}
	}
	return s
}

// scalarString renders strings, numbers and booleans as text; it refuses containers.
func scalarString(raw any) (string, bool) {
	switch x := raw.(type) {
	case string:
		return x, true
	case float64:
		return formatFloat(x), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// formatFloat writes the shortest text that parses back to f, without an exponent for
// whole numbers a person would type out (2147483647, not 2.147483647e+09).
func formatFloat(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// quoteRaw shows a rejected value briefly and safely in a message.
func quoteRaw(raw any) string {
	s, ok := scalarString(raw)
	if !ok {
		b, err := json.Marshal(raw)
		if err != nil {
			return fmt.Sprintf("%T", raw)
		}
		s = string(b)
	}
	return strconv.Quote(clip(s))
}

// clip shortens user-supplied text quoted in a message, so a huge value cannot make a
// huge error response.
func clip(s string) string {
	const maxShown = 80
	if len(s) <= maxShown {
		return s
	}
	cut := maxShown
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// FormatValue renders a typed value the way argv and help show it: lists joined by
// commas, floats in the shortest form that parses back, nil as "".
func FormatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case []string:
		return strings.Join(x, ",")
	case float64:
		return formatFloat(x)
	}
	s, ok := scalarString(v)
	if !ok {
		return fmt.Sprint(v)
	}
	return s
}

// Coerce converts one raw value (a string from a form or argv, or a JSON-decoded value)
// for the named option into its typed value. It returns the canonical name; errors wrap
// ErrUnknownOption or ErrInvalidValue. An empty string yields nil (unset) except for
// options that keep it. Allowed values and ranges are checked by Validate, not here.
func (r *Registry) Coerce(name string, raw any) (string, any, error) {
	o := r.lookup(name)
	if o == nil {
		return "", nil, r.unknown(name)
	}
	v, _, issue := o.coerce(raw, emptyJSON)
	if issue != nil {
		return o.Name, nil, *issue
	}
	return o.Name, v, nil
}
