package configs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"simpletuner/internal/errmsg"
	"simpletuner/internal/safefile"
	"simpletuner/options"
	"simpletuner/supervisor/configs/configstest"
)

// TestDataloaderFolders: instance_data_dir under the data roots, cache_dir* under the
// cache roots, relative values only when they stay in the job's folder.
func TestDataloaderFolders(t *testing.T) {
	base := t.TempDir()
	data, cache, out, other := filepath.Join(base, "datasets"), filepath.Join(base, "cache"), filepath.Join(base, "output"), filepath.Join(base, "other")
	for _, d := range []string{data, cache, out, other} {
		os.MkdirAll(d, 0o755)
	}
	os.Symlink(other, filepath.Join(data, "link-out"))
	f := &Folders{Data: safefile.New(data), Cache: safefile.New(cache, out)}
	te := func(extra string) string {
		return `{"id": "te", "type": "local", "dataset_type": "text_embeds", "default": true` + extra + `}`
	}
	ds := func(dir, extra string) string {
		return `{"id": "a", "type": "local", "dataset_type": "image", "instance_data_dir": "` + dir + `"` + extra + `}`
	}
	readable := func(string) error { return errors.New("probed") }
	tests := []struct {
		name string
		doc  string
		errs []string // messages, with base written as B
	}{
		{name: "inside the roots", doc: list(ds(data+"/a", `, "cache_dir_vae": "`+cache+`/vae/a"`), te(`, "cache_dir": "`+out+`/text"`))},
		{name: "relative folders stay in the job's folder", doc: list(ds(data+"/a", `, "cache_dir_vae": "cache/vae"`), te(`, "cache_dir": "cache/text"`))},
		{name: "empty and null are unset", doc: list(ds(data+"/a", `, "cache_dir_vae": null`), te(`, "cache_dir": ""`))},
		{name: "cache outside", doc: list(ds(data+"/a", ""), te(`, "cache_dir": "/anywhere/made/by/api"`)),
			errs: []string{"Dataset 'te': cache_dir '/anywhere/made/by/api' is outside the folders caches may use (B/cache, B/output; an admin may allow more with --allow-data-root)"}},
		{name: "any cache_dir key", doc: list(ds(data+"/a", `, "cache_dir_vae": "/tmp/x", "cache_dir_text": "`+data+`"`), te("")),
			errs: []string{
				"Dataset 'a': cache_dir_text 'B/datasets' is outside the folders caches may use (B/cache, B/output; an admin may allow more with --allow-data-root)",
				"Dataset 'a': cache_dir_vae '/tmp/x' is outside the folders caches may use (B/cache, B/output; an admin may allow more with --allow-data-root)"}},
		{name: "cache climbing out", doc: list(ds(data+"/a", ""), te(`, "cache_dir": "../../etc"`)),
			errs: []string{"Dataset 'te': cache_dir '../../etc' climbs out of the job's folder; use an absolute path under B/cache or B/output"}},
		{name: "relative data", doc: list(ds("datasets/a", ""), te("")),
			errs: []string{"Dataset 'a': instance_data_dir 'datasets/a' is not an absolute path; use the absolute path of a folder under B/datasets"}},
		{name: "cache not a string", doc: list(ds(data+"/a", ""), te(`, "cache_dir": 3`)),
			errs: []string{"Dataset 'te': cache_dir must be a folder path; got 3"}},
		{name: "data outside, not probed", doc: list(ds(other, ""), te("")),
			errs: []string{"Dataset 'a': instance_data_dir 'B/other' is outside the folders datasets may use (B/datasets; an admin may allow more with --allow-data-root)"}},
		{name: "data in the cache root", doc: list(ds(cache+"/x", ""), te("")),
			errs: []string{"Dataset 'a': instance_data_dir 'B/cache/x' is outside the folders datasets may use (B/datasets; an admin may allow more with --allow-data-root)"}},
		{name: "data through a link out", doc: list(ds(data+"/link-out/x", ""), te("")),
			errs: []string{"Dataset 'a': instance_data_dir 'B/datasets/link-out/x' is outside the folders datasets may use (B/datasets; an admin may allow more with --allow-data-root)"}},
		{name: "dot-dot out of the root", doc: list(ds(data+"/../other", ""), te("")),
			errs: []string{"Dataset 'a': instance_data_dir 'B/datasets/../other' is outside the folders datasets may use (B/datasets; an admin may allow more with --allow-data-root)"}},
		{name: "checked on every dataset type", doc: list(`{"id": "s3", "type": "aws", "instance_data_dir": "/srv/x"}`, te("")),
			errs: []string{
				"Dataset 's3': type 'aws' is not supported by this trainer (supported: local, memory)",
				"Dataset 's3': instance_data_dir '/srv/x' is outside the folders datasets may use (B/datasets; an admin may allow more with --allow-data-root)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			issues := ValidateDataloader([]byte(tt.doc), DataloaderCheck{AtStart: true, DirReadable: readable, Folders: f})
			var got []string
			for _, i := range issues.Errors() {
				if strings.Contains(i.Message, "probed") {
					continue // the readability check of an accepted folder
				}
				if !errors.Is(i, options.ErrPathEscape) && !errors.Is(i, options.ErrInvalidValue) {
					t.Errorf("issue %q wraps %v", i.Message, i.Err)
				}
				if !strings.HasPrefix(i.Option, "datasets[") {
					t.Errorf("issue %q names option %q", i.Message, i.Option)
				}
				got = append(got, strings.ReplaceAll(i.Message, base, "B"))
			}
			if !slices.Equal(got, tt.errs) {
				t.Errorf("errors = %q\nwant     %q", got, tt.errs)
			}
		})
	}
	// Without roots nothing is checked (a service built without them, as in tests).
	if is := ValidateDataloader([]byte(list(ds("/srv/x", ""), te(`, "cache_dir": "/anywhere"`))), DataloaderCheck{}); is.HasErrors() {
		t.Errorf("no roots: %q", is.Messages())
	}
}

// TestReadFileMessages: the service's reader answers in sentences, the same one for every
// path outside the roots.
func TestReadFileMessages(t *testing.T) {
	base := t.TempDir()
	s, err := New(Options{Dir: filepath.Join(base, "config"), Registry: options.Default(), Settings: &configstest.MemSettings{},
		FileRoots: []string{filepath.Join(base, "shared")}})
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(base, "shared"), 0o755)
	os.MkdirAll(filepath.Join(base, "outside"), 0o755)
	os.WriteFile(filepath.Join(s.Dir(), "ok.json"), []byte(`[]`), 0o600)
	os.WriteFile(filepath.Join(base, "shared", "ok.json"), []byte(`[]`), 0o600)
	os.WriteFile(filepath.Join(s.Dir(), "big.json"), make([]byte, safefile.DefaultLimit+1), 0o600)
	os.WriteFile(filepath.Join(base, "outside", "secret.json"), []byte(`{"secret": 1}`), 0o600)
	syscall.Mkfifo(filepath.Join(s.Dir(), "fifo.json"), 0o600)
	for _, tc := range []struct {
		path     string
		sentinel error
		msg      string
	}{
		{path: filepath.Join(s.Dir(), "ok.json")},
		{path: filepath.Join(base, "shared", "ok.json")},
		{path: filepath.Join(s.Dir(), "nope.json"), sentinel: fs.ErrNotExist, msg: "'B/config/nope.json' does not exist"},
		{path: filepath.Join(s.Dir(), "fifo.json"), sentinel: ErrInvalid, msg: "'B/config/fifo.json' is not a regular file"},
		{path: filepath.Join(s.Dir(), "big.json"), sentinel: ErrInvalid, msg: "'B/config/big.json' is larger than 1 MiB"},
		{path: filepath.Join(base, "outside", "secret.json"), sentinel: ErrInvalid, msg: errOutsideFiles.Error()},
		{path: filepath.Join(base, "outside", "nope.json"), sentinel: ErrInvalid, msg: errOutsideFiles.Error()},
		{path: "/dev/zero", sentinel: ErrInvalid, msg: errOutsideFiles.Error()},
	} {
		_, err := s.ReadFile(tc.path)
		if tc.sentinel == nil {
			if err != nil || s.CheckFile(tc.path) != nil {
				t.Errorf("%s: %v", tc.path, err)
			}
			continue
		}
		var em *errmsg.Error
		if !errors.Is(err, tc.sentinel) || !errors.As(err, &em) || strings.ReplaceAll(err.Error(), base, "B") != tc.msg {
			t.Errorf("%s: %v; want %q wrapping %v", tc.path, err, tc.msg, tc.sentinel)
		}
		if cerr := s.CheckFile(tc.path); cerr == nil || cerr.Error() != err.Error() {
			t.Errorf("%s: CheckFile %v, ReadFile %v", tc.path, cerr, err)
		}
	}
}

// TestOptionFolders: --cache_dir_vae, the default of every dataset's cache_dir_vae, is
// held to the cache roots too.
func TestOptionFolders(t *testing.T) {
	base := t.TempDir()
	s, err := New(Options{Dir: filepath.Join(base, "config"), Registry: options.Default(), Settings: &configstest.MemSettings{},
		Folders: &Folders{Data: safefile.New(filepath.Join(base, "datasets")), Cache: safefile.New(filepath.Join(base, "cache"))}})
	if err != nil {
		t.Fatal(err)
	}
	for v, ok := range map[string]bool{"": true, filepath.Join(base, "cache", "vae"): true, "vae": true, "/tmp/vae": false, "../vae": false} {
		c := s.Registry().Defaults()
		if v != "" {
			if err := c.Set("--cache_dir_vae", v, options.FromSubmitted); err != nil {
				t.Fatal(err)
			}
		}
		is := s.OptionFolders(c)
		if ok != (len(is) == 0) || (!ok && (is[0].Option != "--cache_dir_vae" || !errors.Is(is[0], options.ErrPathEscape))) {
			t.Errorf("--cache_dir_vae=%q: %v", v, is)
		}
	}
}
