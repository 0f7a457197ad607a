package configs

import (
	"bytes"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"simpletuner/options"
)

// dataBackendKey is the one option SimpleTuner stores without its dashes
// (docs/compatibility.md §4); the
// store keeps that spelling so files stay interchangeable with SimpleTuner's.
const dataBackendKey = "data_backend_config"

// storedKey is the spelling a canonical option is written under.
func storedKey(canonical string) string {
	if canonical == "--"+dataBackendKey {
		return dataBackendKey
	}
	return canonical
}

// spelled is one submitted spelling of an option and its value.
type spelled struct {
	key   string
	value any
}

// jsonEqual compares two decoded JSON values by their encoding, so 1 and 1.0 from
// json.Number differ but equal structures match regardless of map order.
func jsonEqual(a, b any) bool {
	ea, err1 := json.Marshal(a)
	eb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ea, eb)
}

// errSpellingConflict: two spellings of one option were both changed, to different
// values, so there is no telling which one the client meant.
var errSpellingConflict = errors.New("spellings disagree")

// pickSpelling decides which value counts when a body carries several spellings of one
// option (a GET answers both data_backend_config and --data_backend_config, and a client
// edits one of them). Equal values are fine; otherwise the one value that differs from
// the stored value wins, which fixes SimpleTuner's rule (the bare key always wins, so an
// edit of the dashed key was silently ignored). Two different edits conflict.
func pickSpelling(vals []spelled, stored any, hasStored bool) (any, error) {
	var distinct []spelled
	for _, v := range vals {
		seen := false
		for _, d := range distinct {
			if jsonEqual(d.value, v.value) {
				seen = true
				break
			}
		}
		if !seen {
			distinct = append(distinct, v)
		}
	}
	if len(distinct) == 1 {
		return distinct[0].value, nil
	}
	if hasStored {
		var changed []spelled
		for _, d := range distinct {
			if !jsonEqual(d.value, stored) {
				changed = append(changed, d)
			}
		}
		if len(changed) == 1 {
			return changed[0].value, nil
		}
	}
	return nil, errSpellingConflict
}

// flatten applies SimpleTuner's save rules to a submitted config object: a nested
// "config" object is merged in, and "_metadata" and the other WebUI-only control keys
// (options.IsControlKey) are dropped.
func flatten(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k == "config" {
			if inner, ok := v.(map[string]any); ok {
				for ik, iv := range inner {
					out[ik] = iv
				}
				continue
			}
		}
		out[k] = v
	}
	for k := range out {
		if options.IsControlKey(k) {
			delete(out, k)
		}
	}
	return out
}

// normalise turns a submitted model config into the map that is stored: canonical
// "--" keys (data_backend_config bare), one value per option chosen by pickSpelling
// against the stored config, raw JSON values kept as sent (so "1e-4" stays "1e-4").
// Unknown keys and spelling conflicts are error issues.
func normalise(reg *options.Registry, submitted, stored map[string]any) (map[string]any, options.Issues) {
	var issues options.Issues
	storedCanon := map[string]any{}
	for k, v := range stored {
		if c, err := reg.Canonical(k); err == nil {
			storedCanon[c] = v
		}
	}
	groups := map[string][]spelled{}
	keys := make([]string, 0, len(submitted))
	for k := range submitted {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c, err := reg.Canonical(strings.TrimSpace(k))
		if err != nil {
			issues = append(issues, options.Issue{Option: k, Severity: options.SevError, Message: err.Error(), Err: options.ErrUnknownOption})
			continue
		}
		groups[c] = append(groups[c], spelled{key: k, value: submitted[k]})
	}
	out := make(map[string]any, len(groups))
	canon := make([]string, 0, len(groups))
	for c := range groups {
		canon = append(canon, c)
	}
	sort.Strings(canon)
	for _, c := range canon {
		old, has := storedCanon[c]
		v, err := pickSpelling(groups[c], old, has)
		if err != nil {
			var names []string
			for _, s := range groups[c] {
				b, _ := json.Marshal(s.value)
				names = append(names, s.key+"="+string(b))
			}
			issues = append(issues, options.Issue{Option: c, Severity: options.SevError, Err: options.ErrConflict,
				Message: "Conflicting values for " + c + ": " + strings.Join(names, ", ") + "; send one spelling, or the same value in each"})
			continue
		}
		out[storedKey(c)] = v
	}
	return out, issues
}

// withBothSpellings returns a copy of a stored model config that carries both
// data_backend_config and --data_backend_config, as SimpleTuner's load does.
func withBothSpellings(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	bare, hasBare := out[dataBackendKey]
	dashed, hasDashed := out["--"+dataBackendKey]
	switch {
	case hasBare && !hasDashed:
		out["--"+dataBackendKey] = bare
	case hasDashed && !hasBare:
		out[dataBackendKey] = dashed
	}
	return out
}
