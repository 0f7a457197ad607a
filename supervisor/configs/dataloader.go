package configs

import (
	"errors"
	"fmt"

	"simpletuner/internal/errmsg"
	"simpletuner/options"
	"simpletuner/plugins/dataloader"
)

// DataloaderCheck tunes ValidateDataloader.
type DataloaderCheck struct {
	// AtStart makes every problem an error: a job cannot start without its data or with
	// a setting the trainer does not implement. At save time a missing instance_data_dir
	// (the data may be uploaded after the dataloader is written) and an unsupported
	// SimpleTuner value (the document is still SimpleTuner's) are warnings.
	AtStart bool
	// Defaults are the options datasets fall back to (--resolution, --resolution_type,
	// --cache_dir_vae), as the trainer reads them; zero takes SimpleTuner's defaults.
	Defaults dataloader.Defaults
	// DirReadable, when set, is asked about each local instance_data_dir; it returns nil
	// for a readable directory. Nil skips the check.
	DirReadable func(path string) error
	// Folders, when set, are the roots instance_data_dir and the cache_dir* keys must
	// lie in; a folder outside them is an error at any time. Nil skips the check.
	Folders *Folders
}

// ValidateDataloader checks a dataloader JSON document (multidatabackend.json) and
// returns every problem found, in document order. Only error issues make it invalid.
// The document is read by the contract's parser (plugins/dataloader), the one the
// trainer trains from, so its answer at start is the trainer's; this adds what only the
// daemon can check, the folders on this machine.
func ValidateDataloader(data []byte, chk DataloaderCheck) options.Issues {
	doc, probs := dataloader.Decode(data)
	if probs != nil {
		return issuesOf(probs, chk)
	}
	return ValidateDatasets(doc, chk)
}

// ValidateDatasets checks an already decoded dataloader document (see ValidateDataloader).
func ValidateDatasets(doc any, chk DataloaderCheck) options.Issues {
	parsed, probs := dataloader.Read(doc, chk.Defaults)
	issues := issuesOf(probs, chk)
	if parsed == nil {
		return issues
	}
	list, _ := doc.([]any)
	for _, ds := range parsed.Datasets {
		raw, _ := list[ds.Index].(map[string]any)
		folderIssues, dataOK := datasetFolders(ds.Index, ds.Name(), raw, chk.Folders)
		issues = append(issues, folderIssues...)
		if dataOK && !ds.Disabled && ds.HasSamples() && ds.Type == dataloader.BackendLocal {
			issues = append(issues, instanceDir(ds, chk)...)
		}
	}
	return issues
}

// issuesOf reports the parser's problems as issues. A problem that does not make the
// document wrong — a folder not filled in, a value this trainer does not implement — is
// a warning until the job starts.
func issuesOf(probs dataloader.Problems, chk DataloaderCheck) options.Issues {
	var issues options.Issues
	for _, p := range probs {
		is := options.Issue{Option: p.Path(), Severity: options.SevError, Message: p.Message, Err: options.ErrInvalidValue}
		switch {
		case chk.AtStart && errors.Is(p, dataloader.ErrIncomplete):
			is.Err = options.ErrNotFound
		case !chk.AtStart && (errors.Is(p, dataloader.ErrIncomplete) || errors.Is(p, dataloader.ErrUnsupported)):
			is.Severity, is.Err = options.SevWarning, nil
		}
		issues = append(issues, is)
	}
	return issues
}

// instanceDir asks whether a local dataset's folder can be read on this machine: an
// error at start, a warning before (the data may be uploaded later).
func instanceDir(ds dataloader.Dataset, chk DataloaderCheck) options.Issues {
	if chk.DirReadable == nil || ds.InstanceDataDir == "" {
		return nil
	}
	err := chk.DirReadable(ds.InstanceDataDir)
	if err == nil {
		return nil
	}
	is := options.Issue{Option: fmt.Sprintf("datasets[%d].instance_data_dir", ds.Index), Severity: options.SevWarning,
		Message: fmt.Sprintf("%s: instance_data_dir '%s' is not a readable folder (%v); upload the data there or fix the path",
			ds.Name(), errmsg.Clip(ds.InstanceDataDir), err)}
	if chk.AtStart {
		is.Severity, is.Err = options.SevError, options.ErrNotFound
	}
	return options.Issues{is}
}
