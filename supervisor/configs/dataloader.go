package configs

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"simpletuner/internal/jsondoc"
	"simpletuner/options"
)

// Allowed values of the dataloader keys the validator checks (SimpleTuner's values).
var (
	backendTypes      = []string{"local", "aws", "memory", "csv", "huggingface", "webshart"}
	datasetTypes      = []string{"image", "video", "audio", "text_embeds", "image_embeds", "conditioning_image_embeds", "conditioning", "caption", "eval"}
	captionStrategies = []string{"filename", "textfile", "instanceprompt", "instance_prompt", "parquet", "webshart", "huggingface", "csv"}
	resolutionTypes   = []string{"pixel_area", "pixel", "area"}
	cropStyles        = []string{"random", "center", "centre", "corner", "face"}
	cropAspects       = []string{"closest", "random", "square", "preserve"}
	conditioningTypes = []string{"controlnet", "mask", "reference_strict", "reference_loose"}
	metadataBackends  = []string{"discovery", "parquet", "huggingface", "webshart"}
)

// sampleTypes are the dataset types whose samples live in instance_data_dir.
var sampleTypes = []string{"image", "video", "audio", "conditioning"}

// DataloaderCheck tunes ValidateDataloader.
type DataloaderCheck struct {
	// AtStart makes a missing or unreadable instance_data_dir an error (a job cannot
	// start without its data); at save time it is a warning, since the data may be
	// uploaded after the dataloader is written.
	AtStart bool
	// DirReadable, when set, is asked about each local instance_data_dir; it returns nil
	// for a readable directory. Nil skips the check.
	DirReadable func(path string) error
	// Folders, when set, are the roots instance_data_dir and the cache_dir* keys must
	// lie in; a folder outside them is an error at any time. Nil skips the check.
	Folders *Folders
}

// ValidateDataloader checks a dataloader JSON document (multidatabackend.json) and
// returns every problem found, in document order. Only error issues make it invalid.
func ValidateDataloader(data []byte, chk DataloaderCheck) options.Issues {
	var doc any
	switch err := jsondoc.DecodeNumbers(data, &doc); {
	case errors.Is(err, jsondoc.ErrTrailing):
		return options.Issues{dlErr("", "Dataloader config has extra data after the JSON list")}
	case err != nil:
		return options.Issues{dlErr("", "Dataloader config is not valid JSON: %v", err)}
	}
	return ValidateDatasets(doc, chk)
}

// ValidateDatasets checks an already decoded dataloader document (see ValidateDataloader).
func ValidateDatasets(doc any, chk DataloaderCheck) options.Issues {
	list, ok := doc.([]any)
	if !ok {
		return options.Issues{dlErr("", "Dataloader config must be a JSON list of datasets, like [{\"id\": \"my-images\", \"type\": \"local\", ...}]")}
	}
	if len(list) == 0 {
		return options.Issues{dlErr("", "Dataloader config must contain at least one dataset")}
	}
	var issues options.Issues
	ids := map[string]bool{}
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			issues = append(issues, dlErr(loc(i, ""), "Dataset #%d must be a JSON object", i+1))
			continue
		}
		id, _ := m["id"].(string)
		if strings.TrimSpace(id) == "" {
			issues = append(issues, dlErr(loc(i, "id"), "Dataset #%d is missing 'id': give every dataset a unique id", i+1))
		} else if ids[id] {
			issues = append(issues, dlErr(loc(i, "id"), "You can only have one backend named %s", clip(id)))
		} else {
			ids[id] = true
		}
	}
	defaults, textEmbeds := 0, 0
	for i, m := range list {
		ds, ok := m.(map[string]any)
		if !ok {
			continue
		}
		name := datasetName(i, ds)
		if t, ok := ds["type"]; !ok || t == nil || t == "" {
			issues = append(issues, dlErr(loc(i, "type"), "%s is missing 'type' (one of %s)", name, strings.Join(backendTypes, ", ")))
		} else {
			issues = append(issues, enumCheck(i, name, ds, "type", backendTypes)...)
		}
		issues = append(issues, enumCheck(i, name, ds, "dataset_type", datasetTypes)...)
		issues = append(issues, enumCheck(i, name, ds, "caption_strategy", captionStrategies)...)
		issues = append(issues, enumCheck(i, name, ds, "resolution_type", resolutionTypes)...)
		issues = append(issues, enumCheck(i, name, ds, "crop_style", cropStyles)...)
		issues = append(issues, enumCheck(i, name, ds, "crop_aspect", cropAspects)...)
		issues = append(issues, enumCheck(i, name, ds, "conditioning_type", conditioningTypes)...)
		issues = append(issues, enumCheck(i, name, ds, "metadata_backend", metadataBackends)...)
		dtype := "image"
		if s, ok := ds["dataset_type"].(string); ok && s != "" {
			dtype = s
		}
		if dtype == "text_embeds" {
			textEmbeds++
			if b, _ := ds["default"].(bool); b {
				defaults++
			}
		}
		if cs, _ := ds["caption_strategy"].(string); (cs == "instanceprompt" || cs == "instance_prompt") && !nonEmptyString(ds["instance_prompt"]) {
			issues = append(issues, dlErr(loc(i, "instance_prompt"), "%s uses caption_strategy=%s but has no instance_prompt", name, cs))
		}
		for _, key := range []string{"resolution", "minimum_image_size", "maximum_image_size", "target_downsample_size", "repeats"} {
			if v, ok := ds[key]; ok && v != nil {
				if f, ok := number(v); !ok || f < 0 {
					issues = append(issues, dlErr(loc(i, key), "%s: %s must be a number of at least 0; got %s", name, key, show(v)))
				}
			}
		}
		issues = append(issues, conditioningData(i, name, ds, ids)...)
		folderIssues, dataOK := datasetFolders(i, name, ds, chk.Folders)
		issues = append(issues, folderIssues...)
		if ds["type"] == "local" && slices.Contains(sampleTypes, dtype) && dataOK {
			issues = append(issues, instanceDir(i, name, ds, chk)...)
		}
	}
	switch {
	case defaults > 1:
		issues = append(issues, dlErr("", "Only one text embed backend can be marked as default."))
	case defaults == 0 && textEmbeds == 0:
		issues = append(issues, dlErr("", "The dataloader needs a text_embeds dataset with \"default\": true (e.g. {\"id\": \"text-embeds\", \"type\": \"local\", \"dataset_type\": \"text_embeds\", \"default\": true, \"cache_dir\": \"cache/text\"})"))
	case defaults == 0:
		issues = append(issues, dlErr("", "No text_embeds dataset is marked as default: set \"default\": true on exactly one of them"))
	}
	return issues
}

func conditioningData(i int, name string, ds map[string]any, ids map[string]bool) options.Issues {
	v, ok := ds["conditioning_data"]
	if !ok || v == nil {
		return nil
	}
	var refs []string
	switch x := v.(type) {
	case string:
		refs = []string{x}
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return options.Issues{dlErr(loc(i, "conditioning_data"), "%s: conditioning_data must be a dataset id or a list of ids; got %s", name, show(v))}
			}
			refs = append(refs, s)
		}
	default:
		return options.Issues{dlErr(loc(i, "conditioning_data"), "%s: conditioning_data must be a dataset id or a list of ids; got %s", name, show(v))}
	}
	var issues options.Issues
	for _, r := range refs {
		if !ids[r] {
			issues = append(issues, dlErr(loc(i, "conditioning_data"), "%s: conditioning_data refers to '%s', which is not the id of any dataset in this file", name, clip(r)))
		}
	}
	return issues
}

func instanceDir(i int, name string, ds map[string]any, chk DataloaderCheck) options.Issues {
	sev := options.SevWarning
	if chk.AtStart {
		sev = options.SevError
	}
	mk := func(format string, args ...any) options.Issues {
		is := options.Issue{Option: loc(i, "instance_data_dir"), Severity: sev, Message: fmt.Sprintf(format, args...)}
		if sev == options.SevError {
			is.Err = options.ErrNotFound
		}
		return options.Issues{is}
	}
	dir, ok := ds["instance_data_dir"].(string)
	if v, present := ds["instance_data_dir"]; present && v != nil && !ok {
		return options.Issues{dlErr(loc(i, "instance_data_dir"), "%s: instance_data_dir must be a folder path; got %s", name, show(v))}
	}
	if strings.TrimSpace(dir) == "" {
		return mk("%s: instance_data_dir is empty; point it at the folder that holds the training files", name)
	}
	if chk.DirReadable == nil {
		return nil
	}
	if err := chk.DirReadable(dir); err != nil {
		return mk("%s: instance_data_dir '%s' is not a readable folder (%v); upload the data there or fix the path", name, clip(dir), err)
	}
	return nil
}

func enumCheck(i int, name string, ds map[string]any, key string, allowed []string) options.Issues {
	v, ok := ds[key]
	if !ok || v == nil {
		return nil
	}
	s, isStr := v.(string)
	if !isStr {
		return options.Issues{dlErr(loc(i, key), "%s: %s must be a string (one of %s); got %s", name, key, strings.Join(allowed, ", "), show(v))}
	}
	if !slices.Contains(allowed, s) {
		return options.Issues{dlErr(loc(i, key), "%s: unknown %s '%s' (known: %s)", name, key, clip(s), strings.Join(allowed, ", "))}
	}
	return nil
}

func datasetName(i int, ds map[string]any) string {
	if id, ok := ds["id"].(string); ok && strings.TrimSpace(id) != "" {
		return "Dataset '" + clip(id) + "'"
	}
	return "Dataset #" + strconv.Itoa(i+1)
}

func loc(i int, key string) string {
	if key == "" {
		return "datasets[" + strconv.Itoa(i) + "]"
	}
	return "datasets[" + strconv.Itoa(i) + "]." + key
}

func dlErr(option, format string, args ...any) options.Issue {
	return options.Issue{Option: option, Severity: options.SevError, Message: fmt.Sprintf(format, args...), Err: options.ErrInvalidValue}
}

func nonEmptyString(v any) bool {
	s, ok := v.(string)
	return ok && strings.TrimSpace(s) != ""
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	}
	return 0, false
}

// show renders a JSON value briefly for a message.
func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return clip(string(b))
}

// clip shortens user input echoed in messages and makes control characters visible.
func clip(s string) string {
	if r := []rune(s); len(r) > 80 {
		s = string(r[:80]) + "…"
	}
	if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		q := strconv.Quote(s)
		return q[1 : len(q)-1]
	}
	return s
}
