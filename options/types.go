package options

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Type is the value type of an option. Typed values are Go values: String, Path, JSON
// and Enum hold a string, Int an int, Float a float64, Bool a bool and List a []string.
// A nil value means "unset".
type Type int

// The option types.
const (
	String Type = iota // free text
	Int                // whole number
	Float              // real number; "1e-4" accepted
	Bool               // true/false/1/0/yes/no/on/off
	Enum               // one of Option.Values
	Path               // a filesystem path
	JSON               // a path to a JSON file, or the JSON document itself
	List               // comma-separated strings; elements from Option.Values when given
)

var typeNames = [...]string{"string", "int", "float", "bool", "enum", "path", "json", "list"}

// String returns the lower-case name of the type ("int", "enum", …), as used in help.
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", int(t))
}

// SchemaType returns the JSON Schema / OpenAPI type of values of this type.
func (t Type) SchemaType() string {
	switch t {
	case Int:
		return "integer"
	case Float:
		return "number"
	case Bool:
		return "boolean"
	case List:
		return "array"
	default:
		return "string"
	}
}

// Category groups options in help output; categories print in declaration order.
type Category int

// The help categories, in the order WriteHelp prints them.
const (
	CatModel Category = iota
	CatData
	CatTraining
	CatOptimizer
	CatLoRA
	CatValidation
	CatCheckpoints
	CatHooks
	CatTracking
	CatHardware
	CatPublishing
	numCategories
)

var categoryNames = [...]string{
	"Model", "Data", "Training schedule", "Optimizer and learning rate", "LoRA / LyCORIS",
	"Validation", "Checkpoints", "Hook scripts", "Tracking and webhooks", "Hardware",
	"Publishing",
}

// String returns the heading the category prints under.
func (c Category) String() string {
	if c >= 0 && c < numCategories {
		return categoryNames[c]
	}
	return fmt.Sprintf("Category(%d)", int(c))
}

// Range bounds a numeric option. A nil bound is open.
type Range struct {
	Min, Max *float64
}

func (r Range) empty() bool { return r.Min == nil && r.Max == nil }

func (r Range) contains(v float64) bool {
	return (r.Min == nil || v >= *r.Min) && (r.Max == nil || v <= *r.Max)
}

// String renders the range as "0..1", ">=1" or "<=30".
func (r Range) String() string {
	switch {
	case r.Min != nil && r.Max != nil:
		return formatFloat(*r.Min) + ".." + formatFloat(*r.Max)
	case r.Min != nil:
		return ">=" + formatFloat(*r.Min)
	case r.Max != nil:
		return "<=" + formatFloat(*r.Max)
	}
	return ""
}

// Option describes one training option. Options returned by a Registry are copies;
// changing them does not change the registry.
type Option struct {
	// Name is the canonical spelling, with the leading "--" ("--learning_rate").
	Name string
	// Aliases are other accepted spellings, with "--". The bare spelling of the name
	// and of every alias (without "--") is always accepted too.
	Aliases []string
	Type    Type
	// Default is the typed registry default; nil means unset.
	Default any
	// Values lists the allowed values of an Enum, or of each List element. For
	// --model_family it is filled from the registry's families.
	Values []string
	// ValueAliases maps accepted legacy spellings to a value in Values.
	ValueAliases map[string]string
	// Range bounds Int and Float values.
	Range Range
	Help  string
	// Families lists the model families the option applies to; empty means all.
	// Setting it for another family is a warning, and the trainer never sees it.
	Families []string
	// ModelTypes lists the model types (full, lora) the option applies to; empty means all.
	ModelTypes []string
	// Permission names the permission a submitter needs to set the option ("job.hooks").
	Permission string
	// ServerOnly options are consumed by the daemon and never passed to the trainer.
	ServerOnly bool
	Category   Category
	// Required options must have a value after the merge; RequiredMessage says so.
	Required        bool
	RequiredMessage string
	// AllowEmpty keeps "" as a value; otherwise an empty form field is dropped and an
	// empty JSON string means unset.
	AllowEmpty bool
	// NonEmpty options reject an explicit "" ("Field '--output_dir' cannot be empty").
	NonEmpty bool
	// ZeroOnEmpty turns an empty form field into 0 (SimpleTuner does this for the
	// epoch/step counters, so "--max_train_steps=" means "not step-limited").
	ZeroOnEmpty bool
	// ConfigRelative: a relative value ending in .json resolves under the configs dir.
	ConfigRelative bool
	// OutputRelative: a relative value resolves under the output root.
	OutputRelative bool

	// check is an extra format check on a present, well-typed value; it returns a
	// message ("" when fine).
	check func(v any) string
	// invalidMessage replaces the generic type error (SimpleTuner's exact wording).
	invalidMessage string
}

// clone returns a deep copy so callers cannot mutate the registry's tables.
func (o *Option) clone() Option {
	c := *o
	c.Aliases = slices.Clone(o.Aliases)
	c.Values = slices.Clone(o.Values)
	c.Families = slices.Clone(o.Families)
	c.ModelTypes = slices.Clone(o.ModelTypes)
	if o.ValueAliases != nil {
		c.ValueAliases = make(map[string]string, len(o.ValueAliases))
		for k, v := range o.ValueAliases {
			c.ValueAliases[k] = v
		}
	}
	if l, ok := o.Default.([]string); ok {
		c.Default = slices.Clone(l)
	}
	return c
}

// appliesTo reports whether the option is meaningful for a family and model type; an
// empty family or type (not chosen yet) counts as applicable.
func (o *Option) appliesTo(family, modelType string) bool {
	if family != "" && len(o.Families) > 0 && !slices.Contains(o.Families, family) {
		return false
	}
	if modelType != "" && len(o.ModelTypes) > 0 && !slices.Contains(o.ModelTypes, modelType) {
		return false
	}
	return true
}

// Values maps canonical option names ("--learning_rate") to typed values. A present key
// with a nil value is an explicit "unset" that overrides lower layers in a merge.
type Values map[string]any

// Source says which merge layer a resolved value came from.
type Source int

// The merge layers, lowest first.
const (
	FromDefault     Source = iota // the registry default
	FromEnvironment               // the active environment's config.json
	FromSubmitted                 // the submitted form, JSON body or CLI arguments
	FromServer                    // set by the daemon itself (allocated GPUs, resolved paths)
)

var sourceNames = [...]string{"default", "environment", "submitted", "server"}

// String returns "default", "environment", "submitted" or "server".
func (s Source) String() string {
	if s >= 0 && int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return fmt.Sprintf("Source(%d)", int(s))
}

// Severity ranks an Issue.
type Severity int

// Issue severities. Only errors make a configuration invalid.
const (
	SevError Severity = iota
	SevWarning
	SevSuggestion
)

var severityNames = [...]string{"error", "warning", "suggestion"}

// String returns "error", "warning" or "suggestion".
func (s Severity) String() string {
	if s >= 0 && int(s) < len(severityNames) {
		return severityNames[s]
	}
	return fmt.Sprintf("Severity(%d)", int(s))
}

// Issue is one finding from parsing or validation.
type Issue struct {
	// Option is the canonical name the issue is about, or the key as submitted when it
	// is not a known option; "" for issues about the configuration as a whole.
	Option   string
	Severity Severity
	// Message is meant for a person: it says what is wrong and what to do.
	Message string
	// Err is the sentinel the issue wraps (ErrInvalidValue, …); nil for warnings and
	// suggestions.
	Err error
}

// Error returns the message, so an error-level Issue can be returned as an error.
func (i Issue) Error() string { return i.Message }

// Unwrap returns the sentinel.
func (i Issue) Unwrap() error { return i.Err }

// Issues is a list of findings in the order they were found.
type Issues []Issue

// Errors returns the error-level issues.
func (is Issues) Errors() Issues { return is.filter(SevError) }

// Warnings returns the warning-level issues.
func (is Issues) Warnings() Issues { return is.filter(SevWarning) }

// Suggestions returns the suggestion-level issues.
func (is Issues) Suggestions() Issues { return is.filter(SevSuggestion) }

// For returns the issues about one option ("--data_backend_config").
func (is Issues) For(option string) Issues {
	var out Issues
	for _, x := range is {
		if x.Option == option {
			out = append(out, x)
		}
	}
	return out
}

// HasErrors reports whether any issue is an error.
func (is Issues) HasErrors() bool { return len(is.Errors()) > 0 }

// Messages returns the messages in order.
func (is Issues) Messages() []string {
	out := make([]string, len(is))
	for i, x := range is {
		out[i] = x.Message
	}
	return out
}

// Err joins the error-level issues into one error (errors.Is finds every sentinel),
// or returns nil when there are none.
func (is Issues) Err() error {
	errs := is.Errors()
	if len(errs) == 0 {
		return nil
	}
	list := make([]error, len(errs))
	for i := range errs {
		list[i] = errs[i]
	}
	return errors.Join(list...)
}

func (is Issues) filter(s Severity) Issues {
	var out Issues
	for _, x := range is {
		if x.Severity == s {
			out = append(out, x)
		}
	}
	return out
}

func errIssue(opt string, sentinel error, format string, args ...any) Issue {
	return Issue{Option: opt, Severity: SevError, Message: fmt.Sprintf(format, args...), Err: sentinel}
}

func warnIssue(opt string, format string, args ...any) Issue {
	return Issue{Option: opt, Severity: SevWarning, Message: fmt.Sprintf(format, args...)}
}

// bare strips the leading dashes of an option key.
func bare(name string) string { return strings.TrimLeft(name, "-") }
