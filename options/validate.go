package options

import (
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
)

// ValidateOptions tune Validate for the caller.
type ValidateOptions struct {
	// StrictEpochs rejects a configuration that sets both --num_train_epochs and
	// --max_train_steps above 0. SimpleTuner's validate endpoint does; start does not.
	StrictEpochs bool
	// Permissions are the ones the submitter holds ("job.hooks", …). Options that need
	// a permission the submitter lacks are errors.
	Permissions []string
	// CheckFile, when set, is asked about file paths the configuration points at (after
	// path resolution, see Config.ResolvePaths). It returns nil for a file that may be
	// used, an error wrapping fs.ErrNotExist for a missing one (SimpleTuner's "not found"
	// messages), or another error whose text is shown after the option name: it must not
	// quote the file or say whether a path it refuses exists. Nil skips those checks,
	// which keeps Validate free of filesystem access.
	CheckFile func(path string) error
}

// Validate checks a resolved configuration and returns every error, warning and
// suggestion found, in a stable order. Messages use SimpleTuner's wording where it has
// one (its validation messages). Only errors make the configuration invalid; a warning is
// e.g. an option that does not apply to the chosen model family, or a tracker the
// trainer cannot feed.
func (r *Registry) Validate(c *Config, vo ValidateOptions) Issues {
	v := validator{r: r, c: c, vo: vo}
	for _, o := range r.opts {
		v.option(o)
	}
	v.family()
	v.schedule()
	v.training()
	v.validation()
	v.files()
	v.hooks()
	return v.issues
}

type validator struct {
	r      *Registry
	c      *Config
	vo     ValidateOptions
	issues Issues
}

func (v *validator) add(i Issue) { v.issues = append(v.issues, i) }

// set reports whether an option has a non-empty value.
func (v *validator) set(name string) bool {
	x, ok := v.c.Get(name)
	return ok && x != ""
}

// option runs the checks that need only the option itself: required, empty, allowed
// values, range, format, and whether it applies to the chosen family and model type.
func (v *validator) option(o *Option) {
	val := v.c.values[o.Name]
	if val == nil {
		if o.Required {
			v.add(errIssue(o.Name, ErrRequired, "%s", o.RequiredMessage))
		}
		return
	}
	if val == "" {
		if o.NonEmpty {
			v.add(errIssue(o.Name, ErrInvalidValue, "Field '%s' cannot be empty", o.Name))
		}
		return
	}
	switch o.Type {
	case Enum:
		s, _ := val.(string)
		if !slices.Contains(o.Values, s) {
			v.add(v.badEnum(o, s))
		}
	case List:
		v.list(o, val.([]string))
	case Int, Float:
		f, _ := v.c.Float(o.Name)
		if !o.Range.contains(f) {
			v.add(errIssue(o.Name, ErrInvalidValue, "%s must be %s; got %s", o.Name, rangePhrase(o.Range), FormatValue(val)))
		}
	}
	if o.check != nil {
		if msg := o.check(val); msg != "" {
			v.add(errIssue(o.Name, ErrInvalidValue, "invalid value for %s: %s", o.Name, msg))
		}
	}
	if v.c.sources[o.Name] != FromDefault && !v.c.applies(o) {
		fam, mt := clip(v.c.String("--model_family")), clip(v.c.String("--model_type"))
		if len(o.Families) > 0 && !slices.Contains(o.Families, fam) {
			v.add(warnIssue(o.Name, "%s does not apply to model family '%s' and is ignored", o.Name, fam))
		} else {
			v.add(warnIssue(o.Name, "%s only applies when --model_type is %s; it is ignored for '%s'", o.Name, strings.Join(o.ModelTypes, " or "), mt))
		}
	}
}

func (v *validator) badEnum(o *Option, s string) Issue {
	switch o.Name {
	case "--model_family":
		return errIssue(o.Name, ErrInvalidValue, "Unknown model family: %s (known: %s)", clip(s), strings.Join(o.Values, ", "))
	case "--model_type":
		return errIssue(o.Name, ErrInvalidValue, "Unknown model type: %s (want %s)", clip(s), strings.Join(o.Values, " or "))
	case "--optimizer":
		return errIssue(o.Name, ErrInvalidValue, "unsupported optimizer %q; supported: %s", clip(s), strings.Join(o.Values, ", "))
	}
	return errIssue(o.Name, ErrInvalidValue, "invalid value %q for %s; allowed: %s", clip(s), o.Name, strings.Join(o.Values, ", "))
}

func (v *validator) list(o *Option, l []string) {
	for _, e := range l {
		if len(o.Values) > 0 && !slices.Contains(o.Values, e) {
			v.add(errIssue(o.Name, ErrInvalidValue, "invalid value %q in %s; allowed: %s", clip(e), o.Name, strings.Join(o.Values, ", ")))
			continue
		}
		if o.Name == "--report_to" && !v.r.TrackerAvailable(e) {
			v.add(warnIssue(o.Name, "tracker %q is not available in this trainer; metrics stay in the event stream", e))
		}
	}
}

func rangePhrase(r Range) string {
	switch {
	case r.Min != nil && r.Max != nil:
		return fmt.Sprintf("between %s and %s", formatFloat(*r.Min), formatFloat(*r.Max))
	case r.Min != nil:
		return "at least " + formatFloat(*r.Min)
	default:
		return "at most " + formatFloat(*r.Max)
	}
}

// family checks the flavour against the family and the minimum resolution.
func (v *validator) family() {
	fam, ok := v.r.family[v.c.String("--model_family")]
	if !ok {
		return
	}
	if fl := v.c.String("--model_flavour"); fl != "" && len(fam.Flavours) > 0 && !slices.Contains(fam.Flavours, fl) {
		v.add(errIssue("--model_flavour", ErrInvalidValue, "Unknown model flavour '%s' for family '%s' (known: %s)", clip(fl), fam.Name, strings.Join(fam.Flavours, ", ")))
	}
	res, ok := v.c.Float("--resolution")
	if !ok || v.c.String("--resolution_type") == "area" {
		return // area resolutions are megapixels, not comparable to pixel bounds
	}
	if fam.MinResolution > 0 && res < float64(fam.MinResolution) {
		v.add(errIssue("--resolution", ErrInvalidValue, "Resolution must be at least %d", fam.MinResolution))
	}
	if res > 4096 {
		v.add(warnIssue("--resolution", "Resolution above 4096 may cause memory issues"))
	}
}

// schedule checks how long training runs.
func (v *validator) schedule() {
	epochs, _ := v.c.Int("--num_train_epochs")
	steps, _ := v.c.Int("--max_train_steps")
	switch {
	case epochs <= 0 && steps <= 0:
		v.add(errIssue("--max_train_steps", ErrInvalidValue, "Either num_train_epochs or max_train_steps must be greater than 0. You cannot set both to 0."))
	case v.vo.StrictEpochs && epochs > 0 && steps > 0:
		v.add(errIssue("--max_train_steps", ErrConflict, "num_train_epochs and max_train_steps cannot both be set. Set one of them to 0."))
	}
	if warm, _ := v.c.Int("--lr_warmup_steps"); steps > 0 && warm > steps {
		v.add(warnIssue("--lr_warmup_steps", "--lr_warmup_steps (%d) is more than --max_train_steps (%d); the learning rate never reaches its peak", warm, steps))
	}
}

// training checks combinations of model, LoRA and tracking options.
func (v *validator) training() {
	modelType := v.c.String("--model_type")
	if p := v.c.String("--base_model_precision"); modelType == "full" && p != "" && !noQuantisation[p] {
		v.add(errIssue("--base_model_precision", ErrConflict, "Full model training is incompatible with base model quantisation. Set base_model_precision to 'no_change' or switch to LoRA."))
	}
	if modelType == "lora" && v.c.String("--lora_type") == "standard" && v.c.sources["--lora_rank"] == FromDefault {
		v.add(Issue{Option: "--lora_rank", Severity: SevSuggestion, Message: "Consider setting '--lora_rank' for LoRA training"})
	}
	if !v.set("--tracker_project_name") {
		v.add(errIssue("--tracker_project_name", ErrRequired, "Project name is required."))
	}
	if v.c.Bool("--push_to_hub") && !v.set("--hub_model_id") {
		v.add(errIssue("--hub_model_id", ErrRequired, "--push_to_hub needs --hub_model_id: name the hub repository to upload to"))
	}
	if v.c.Bool("--push_checkpoints_to_hub") && !v.c.Bool("--push_to_hub") {
		v.add(warnIssue("--push_checkpoints_to_hub", "--push_checkpoints_to_hub has no effect without --push_to_hub"))
	}
	// The post-upload hook follows an upload (the daemon runs it when a checkpoint event
	// says the checkpoint was uploaded); with nothing set to upload it never runs.
	if hookSet(v.c.String("--post_upload_script")) && !v.c.Bool("--push_to_hub") && !v.set("--publishing_config") {
		v.add(warnIssue("--post_upload_script", "--post_upload_script runs after an upload, and nothing is uploaded without --push_to_hub or --publishing_config: it will not run (use --post_checkpoint_script to act on each local checkpoint)"))
	}
}

// validation checks the validation method and preview settings.
func (v *validator) validation() {
	if v.c.String("--validation_method") == "external-script" && !hookSet(v.c.String("--validation_external_script")) {
		v.add(errIssue("--validation_external_script", ErrRequired, "--validation_external_script is required when --validation_method=external-script."))
	}
}

// files checks the files the configuration points at, when the caller lets us ask.
func (v *validator) files() {
	if v.vo.CheckFile == nil {
		return
	}
	v.file("--user_prompt_library", "User prompt library not found at '%s'. Please provide a valid JSON file path.")
	if p := v.c.String("--data_backend_config"); !strings.Contains(p, "{env:") {
		v.file("--data_backend_config", "Data backend config not found at '%s'. Create the dataloader JSON there or point --data_backend_config at an existing file.")
	}
	// The trainer reads the LyCORIS config whether its path was chosen or is the default,
	// so the file must exist either way (a new LyCORIS environment gets one).
	if v.c.String("--model_type") == "lora" && v.c.String("--lora_type") == "lycoris" {
		v.file("--lycoris_config", "LyCORIS config not found at '%s'. Create it or point --lycoris_config at an existing file.")
	}
	v.file("--webhook_config", "--webhook_config file not found at '%s'")
	v.file("--publishing_config", "--publishing_config file not found at '%s'")
}

// file checks one file option whose value is a path (not inline JSON); notFound is the
// message for a missing file, with the path as its argument.
func (v *validator) file(name, notFound string) {
	p := v.c.String(name)
	if p == "" || isInlineJSON(p) {
		return
	}
	switch err := v.vo.CheckFile(p); {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		v.add(errIssue(name, ErrNotFound, notFound, clip(p)))
	default:
		v.add(errIssue(name, ErrInvalidValue, "%s: %v", name, err))
	}
}

// safeHookValue is what a value substituted into a hook script's argv may look like
// (docs/security.md row W6): no spaces, quotes or leading dash.
var safeHookValue = regexp.MustCompile(`^[A-Za-z0-9._][A-Za-z0-9._-]{0,127}$`)

// hooks checks permissions for options that run commands or weaken TLS, and that the
// values hook scripts receive cannot turn into extra arguments.
func (v *validator) hooks() {
	anyHook := false
	for _, o := range v.r.opts {
		if o.Permission == "" {
			continue
		}
		s, _ := v.c.values[o.Name].(string)
		if !hookSet(s) {
			continue
		}
		if o.Category == CatHooks || o.Name == "--validation_external_script" {
			anyHook = true
		}
		if !holds(v.vo.Permissions, o.Permission) {
			v.add(errIssue(o.Name, ErrPermission, "setting %s needs the %s permission; ask an admin, or leave it unset", o.Name, o.Permission))
		}
	}
	if wh := v.c.String("--webhook_config"); isInlineJSON(wh) && webhookSkipsTLS(wh) && !holds(v.vo.Permissions, PermHooks) {
		v.add(errIssue("--webhook_config", ErrPermission, "a webhook with ssl_no_verify=true needs the %s permission; remove ssl_no_verify or ask an admin", PermHooks))
	}
	if !anyHook {
		return
	}
	for _, name := range []string{"--tracker_run_name", "--tracker_project_name", "--model_flavour"} {
		if s := v.c.String(name); s != "" && !safeHookValue.MatchString(s) {
			v.add(errIssue(name, ErrInvalidValue, "%s is passed to hook scripts, so it may only use letters, digits, '.', '_' and '-' (at most 128, not starting with '-'); got %q", name, clip(s)))
		}
	}
}

// hookSet reports whether a hook template is set; SimpleTuner treats "" and "None" as
// "no hook".
func hookSet(s string) bool { return s != "" && s != "None" }

// holds reports whether perms grant p: exactly, through "*", or through a wildcard
// such as "job.*" (the permission grammar of supervisor/auth).
func holds(perms []string, p string) bool {
	for _, g := range perms {
		if g == "*" || g == p {
			return true
		}
		if prefix, ok := strings.CutSuffix(g, ".*"); ok && strings.HasPrefix(p, prefix+".") {
			return true
		}
	}
	return false
}
