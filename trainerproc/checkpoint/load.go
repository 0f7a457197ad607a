package checkpoint

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"simpletuner/plugins"
	"simpletuner/trainerproc/safetensors"
)

// Size caps for the JSON files read during verification, so a damaged or hostile file
// cannot exhaust memory.
const (
	maxManifestSize = 64 << 20
	maxStateSize    = 64 << 20
	maxGuardSize    = 64
)

// List returns the checkpoints in output_dir sorted by ascending step (standard before
// rolling at the same step). Entries whose names start with "checkpoint" but do not
// conform (checkpoints/, checkpoint-abc, checkpoint-100.safetensors), symlinks and plain
// files are skipped with a WarnIgnoredEntry warning; symlinks are never followed. A missing
// output_dir is an empty list.
func (m *Manager) List() ([]Ref, error) { return m.list(true) }

func (m *Manager) list(warn bool) ([]Ref, error) {
	entries, err := m.fs.ReadDir(m.dir)
	if err != nil {
		if isNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("checkpoint: list %s: %w", m.dir, err)
	}
	ignore := func(name, why string) {
		if warn {
			m.warn(Warning{Kind: WarnIgnoredEntry, Name: name, Path: filepath.Join(m.dir, name), Message: why})
		}
	}
	var refs []Ref
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "checkpoint") || strings.Contains(name, corruptSuffix) {
			continue // not ours, or already quarantined
		}
		step, rolling, ok := plugins.ParseCheckpointName(name)
		if !ok {
			if !strings.HasSuffix(name, "-tmp") { // SimpleTuner temp dirs: Cleanup's business
				ignore(name, "not a checkpoint name (want checkpoint-<step> or checkpoint-<step>-rolling); ignored")
			}
			continue
		}
		if e.Type()&fs.ModeSymlink != 0 {
			ignore(name, "is a symlink; checkpoints are never followed through links; ignored")
			continue
		}
		if !e.IsDir() {
			ignore(name, "is not a directory; ignored")
			continue
		}
		p := filepath.Join(m.dir, name)
		refs = append(refs, Ref{Name: name, Path: p, Step: step, Rolling: rolling,
			Complete: m.isRegular(filepath.Join(p, GuardFile)) && m.isRegular(filepath.Join(p, ManifestFile))})
	}
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].Step != refs[j].Step {
			return refs[i].Step < refs[j].Step
		}
		return !refs[i].Rolling && refs[j].Rolling
	})
	return refs, nil
}

func (m *Manager) isRegular(p string) bool {
	fi, err := m.fs.Lstat(p)
	return err == nil && fi.Mode().IsRegular()
}

// ResumeOrder returns the candidates for resume_from_checkpoint=latest, best first:
// descending step, a standard checkpoint before a rolling one of the same step.
func ResumeOrder(refs []Ref) []Ref {
	out := slices.Clone(refs)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Step != out[j].Step {
			return out[i].Step > out[j].Step
		}
		return !out[i].Rolling && out[j].Rolling
	})
	return out
}

// Loaded is a verified checkpoint: its training state, its manifest, and access to its
// files. Files are read through the same no-follow FS that verified them.
type Loaded struct {
	Ref      Ref
	State    TrainingState
	Manifest Manifest

	fs    FS
	index map[string]ManifestEntry
}

// Verify fully checks the checkpoint directory dir and loads its training state. wantStep
// < 0 skips the check that training_state.json's global_step matches. Errors wrap
// ErrIncomplete (no guard, no manifest, a listed file missing) or ErrCorrupt (anything
// else that disagrees: sizes, SHA-256, unlisted or non-regular files, a safetensors file
// that does not validate, an empty or unparsable training_state.json).
func Verify(fsys FS, dir string, wantStep int) (*Loaded, error) {
	if fsys == nil {
		fsys = OSFS{}
	}
	name := filepath.Base(dir)
	fi, err := fsys.Lstat(dir)
	if err != nil {
		if isNotExist(err) {
			return nil, errf(ErrNotFound, "%s", dir)
		}
		return nil, fmt.Errorf("checkpoint: %s: %w", dir, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, errf(ErrInvalid, "%s is a symlink; refusing to follow it", dir)
	}
	if !fi.IsDir() {
		return nil, errf(ErrInvalid, "%s is not a directory", dir)
	}

	guard, err := readSmall(fsys, filepath.Join(dir, GuardFile), maxGuardSize)
	if err != nil {
		if isNotExist(err) {
			return nil, errf(ErrIncomplete, "%s: no %s (the save never finished)", name, GuardFile)
		}
		return nil, fmt.Errorf("%w: %s: %s: %w", ErrCorrupt, name, GuardFile, err)
	}
	if strings.TrimSpace(string(guard)) != strings.TrimSpace(GuardContent) {
		return nil, errf(ErrCorrupt, "%s: %s holds %q", name, GuardFile, guard)
	}

	raw, err := readSmall(fsys, filepath.Join(dir, ManifestFile), maxManifestSize)
	if err != nil {
		if isNotExist(err) {
			return nil, errf(ErrIncomplete, "%s: no %s", name, ManifestFile)
		}
		return nil, fmt.Errorf("%w: %s: %s: %w", ErrCorrupt, name, ManifestFile, err)
	}
	man, err := parseManifest(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, name, err)
	}

	onDisk, err := walkFiles(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	index := make(map[string]ManifestEntry, len(man.Entries))
	for _, e := range man.Entries {
		index[e.Path] = e
	}
	for _, e := range man.Entries {
		if !onDisk[e.Path] {
			return nil, errf(ErrIncomplete, "%s: %s is listed in the manifest but missing", name, e.Path)
		}
	}
	for _, p := range sortedKeys(onDisk) {
		if _, ok := index[p]; !ok {
			return nil, errf(ErrCorrupt, "%s: %s is not in the manifest", name, p)
		}
	}
	if _, ok := index[TrainingStateFile]; !ok {
		return nil, errf(ErrIncomplete, "%s: no %s", name, TrainingStateFile)
	}
	for _, e := range man.Entries {
		if err := verifyFile(fsys, filepath.Join(dir, filepath.FromSlash(e.Path)), e); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}

	stateRaw, err := readSmall(fsys, filepath.Join(dir, TrainingStateFile), maxStateSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s: %w", ErrCorrupt, name, TrainingStateFile, err)
	}
	state, err := parseState(stateRaw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, name, err)
	}
	if wantStep >= 0 && state.GlobalStep != wantStep {
		return nil, errf(ErrCorrupt, "%s: %s says global_step %d", name, TrainingStateFile, state.GlobalStep)
	}

	ref := Ref{Name: name, Path: dir, Step: state.GlobalStep, Complete: true}
	if step, rolling, ok := plugins.ParseCheckpointName(name); ok {
		ref.Step, ref.Rolling = step, rolling
	}
	return &Loaded{Ref: ref, State: state, Manifest: man, fs: fsys, index: index}, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func parseManifest(raw []byte) (Manifest, error) {
	var man Manifest
	if err := json.Unmarshal(raw, &man); err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", ManifestFile, err)
	}
	if man.Version != 1 {
		return Manifest{}, fmt.Errorf("%s: version %d, want 1", ManifestFile, man.Version)
	}
	if len(man.Entries) != len(man.Files) {
		return Manifest{}, fmt.Errorf("%s: %d files but %d entries", ManifestFile, len(man.Files), len(man.Entries))
	}
	for i, e := range man.Entries {
		if err := validPath(e.Path); err != nil {
			return Manifest{}, fmt.Errorf("%s: %w", ManifestFile, err)
		}
		if man.Files[i] != e.Path || i > 0 && man.Entries[i-1].Path >= e.Path {
			return Manifest{}, fmt.Errorf("%s: files and entries disagree or are unsorted at %q", ManifestFile, e.Path)
		}
		if e.Size < 0 || len(e.SHA256) != 64 {
			return Manifest{}, fmt.Errorf("%s: bad size or sha256 for %q", ManifestFile, e.Path)
		}
	}
	return man, nil
}

// parseState decodes training_state.json, insisting on a non-empty JSON object that has
// global_step: a zero-length or garbage file must never silently reset the step.
func parseState(raw []byte) (TrainingState, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return TrainingState{}, fmt.Errorf("%s is empty", TrainingStateFile)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return TrainingState{}, fmt.Errorf("%s: %w", TrainingStateFile, err)
	}
	if _, ok := keys["global_step"]; !ok {
		return TrainingState{}, fmt.Errorf("%s has no global_step", TrainingStateFile)
	}
	var st TrainingState
	if err := json.Unmarshal(raw, &st); err != nil {
		return TrainingState{}, fmt.Errorf("%s: %w", TrainingStateFile, err)
	}
	if st.GlobalStep < 0 || st.Epoch < 0 || st.EpochStep < 0 {
		return TrainingState{}, fmt.Errorf("%s: negative step or epoch", TrainingStateFile)
	}
	return st, nil
}

// walkFiles lists the regular files under dir (slash-separated, relative), except the
// manifest and guard at the top. Symlinks and special files make the checkpoint corrupt.
func walkFiles(fsys FS, dir string) (map[string]bool, error) {
	out := map[string]bool{}
	var walk func(rel string) error
	walk = func(rel string) error {
		entries, err := fsys.ReadDir(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return fmt.Errorf("%w: read dir %q: %w", ErrCorrupt, rel, err)
		}
		for _, e := range entries {
			p := path.Join(rel, e.Name())
			switch {
			case e.Type()&fs.ModeSymlink != 0:
				return errf(ErrCorrupt, "%s is a symlink", p)
			case e.IsDir():
				if err := walk(p); err != nil {
					return err
				}
			case e.Type().IsRegular():
				if rel == "." && (e.Name() == ManifestFile || e.Name() == GuardFile) {
					continue
				}
				out[p] = true
			default:
				return errf(ErrCorrupt, "%s is not a regular file", p)
			}
		}
		return nil
	}
	return out, walk(".")
}

// verifyFile checks one file's size and SHA-256 and, for safetensors, its header.
func verifyFile(fsys FS, p string, e ManifestEntry) error {
	f, err := fsys.Open(p)
	if err != nil {
		return fmt.Errorf("%w: open %s: %w", ErrCorrupt, e.Path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%w: stat %s: %w", ErrCorrupt, e.Path, err)
	}
	if !st.Mode().IsRegular() {
		return errf(ErrCorrupt, "%s is not a regular file", e.Path)
	}
	if st.Size() != e.Size {
		what := "size differs from the manifest"
		if st.Size() < e.Size {
			what = "truncated"
		}
		return errf(ErrCorrupt, "%s: %s (%d bytes, manifest says %d)", e.Path, what, st.Size(), e.Size)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, e.Size)); err != nil {
		return fmt.Errorf("%w: read %s: %w", ErrCorrupt, e.Path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.SHA256 {
		return errf(ErrCorrupt, "%s: SHA-256 %s does not match the manifest's %s", e.Path, got, e.SHA256)
	}
	if strings.HasSuffix(e.Path, ".safetensors") {
		if _, err := safetensors.ReadHeader(f, st.Size()); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrCorrupt, e.Path, err)
		}
	}
	return nil
}

func readSmall(fsys FS, p string, limit int64) ([]byte, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", filepath.Base(p), limit)
	}
	return b, nil
}

// Files lists the checkpoint's files (as in the manifest).
func (l *Loaded) Files() []string { return slices.Clone(l.Manifest.Files) }

// Has reports whether the checkpoint contains rel.
func (l *Loaded) Has(rel string) bool { _, ok := l.index[rel]; return ok }

func (l *Loaded) open(rel string) (ReadableFile, ManifestEntry, error) {
	e, ok := l.index[rel]
	if !ok {
		return nil, ManifestEntry{}, errf(ErrNotFound, "%s has no file %q", l.Ref.Name, rel)
	}
	f, err := l.fs.Open(filepath.Join(l.Ref.Path, filepath.FromSlash(rel)))
	if err != nil {
		return nil, e, fmt.Errorf("%w: %s: open %s: %w", ErrCorrupt, l.Ref.Name, rel, err)
	}
	st, err := f.Stat()
	if err != nil || st.Size() != e.Size {
		f.Close()
		return nil, e, errf(ErrCorrupt, "%s: %s changed since it was verified", l.Ref.Name, rel)
	}
	return f, e, nil
}

// ReadFile returns the bytes of one file of the checkpoint.
func (l *Loaded) ReadFile(rel string) ([]byte, error) {
	f, e, err := l.open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, e.Size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("%w: %s: read %s: %w", ErrCorrupt, l.Ref.Name, rel, err)
	}
	return b, nil
}

// TensorReader reads tensors from one safetensors file of a checkpoint; Close it.
type TensorReader struct {
	*safetensors.Reader
	f ReadableFile
}

// Close closes the file.
func (t *TensorReader) Close() error { return t.f.Close() }

// OpenTensors opens a safetensors file of the checkpoint for reading tensor by tensor.
func (l *Loaded) OpenTensors(rel string) (*TensorReader, error) {
	f, e, err := l.open(rel)
	if err != nil {
		return nil, err
	}
	r, err := safetensors.NewReader(f, e.Size)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s: %s: %w", ErrCorrupt, l.Ref.Name, rel, err)
	}
	return &TensorReader{Reader: r, f: f}, nil
}

// ReadTensors reads every tensor of a safetensors file of the checkpoint, keyed by name,
// and the file's metadata.
func (l *Loaded) ReadTensors(rel string) (map[string]safetensors.Tensor, map[string]string, error) {
	tr, err := l.OpenTensors(rel)
	if err != nil {
		return nil, nil, err
	}
	defer tr.Close()
	all, err := tr.All()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %s: %w", ErrCorrupt, l.Ref.Name, rel, err)
	}
	out := make(map[string]safetensors.Tensor, len(all))
	for _, t := range all {
		out[t.Name] = t
	}
	return out, tr.Metadata(), nil
}

// ResumeKind is what resume_from_checkpoint asks for.
type ResumeKind int

// Resume kinds.
const (
	// ResumeNone: start fresh ("", "none", "null", "false").
	ResumeNone ResumeKind = iota
	// ResumeLatest: the newest checkpoint that verifies ("latest").
	ResumeLatest
	// ResumeName: a checkpoint in output_dir by name ("checkpoint-500").
	ResumeName
	// ResumePath: a checkpoint directory by absolute path.
	ResumePath
)

// ResumeSpec is a parsed resume_from_checkpoint value.
type ResumeSpec struct {
	Kind ResumeKind
	Name string // ResumeName
	Path string // ResumePath, cleaned
}

// ParseResumeSpec parses resume_from_checkpoint. Remote URIs (s3://…) and relative paths
// other than a bare checkpoint name are rejected with ErrInvalid rather than guessed at.
func ParseResumeSpec(s string) (ResumeSpec, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "", "none", "null", "false":
		return ResumeSpec{Kind: ResumeNone}, nil
	case "latest":
		return ResumeSpec{Kind: ResumeLatest}, nil
	}
	if strings.Contains(s, "://") {
		return ResumeSpec{}, errf(ErrInvalid, "resume_from_checkpoint %q: remote checkpoints are not supported", s)
	}
	if filepath.IsAbs(s) {
		return ResumeSpec{Kind: ResumePath, Path: filepath.Clean(s)}, nil
	}
	if _, _, ok := plugins.ParseCheckpointName(s); ok {
		return ResumeSpec{Kind: ResumeName, Name: s}, nil
	}
	return ResumeSpec{}, errf(ErrInvalid, "resume_from_checkpoint %q: want latest, a checkpoint name like checkpoint-500, or an absolute path", s)
}

// Resume selects and loads the checkpoint resume_from_checkpoint asks for. For "latest",
// candidates are tried newest first; one that fails verification is reported
// (WarnInvalidCheckpoint) and, when it is damaged rather than unreadable, quarantined as
// <name>.corrupt (WarnQuarantined), and the next older one is tried. A named or
// absolute-path checkpoint that fails verification is an error: the user asked for that
// one. Nothing to resume from returns ErrNotFound. Call Cleanup first.
func (m *Manager) Resume(spec string) (*Loaded, error) {
	rs, err := ParseResumeSpec(spec)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch rs.Kind {
	case ResumeNone:
		return nil, errf(ErrNotFound, "resume_from_checkpoint is disabled")
	case ResumeName:
		step, _, _ := plugins.ParseCheckpointName(rs.Name)
		return Verify(m.fs, filepath.Join(m.dir, rs.Name), step)
	case ResumePath:
		want := -1
		if step, _, ok := plugins.ParseCheckpointName(filepath.Base(rs.Path)); ok {
			want = step
		}
		return Verify(m.fs, rs.Path, want)
	}
	refs, err := m.list(true)
	if err != nil {
		return nil, err
	}
	for _, ref := range ResumeOrder(refs) {
		l, err := Verify(m.fs, ref.Path, ref.Step)
		if err == nil {
			return l, nil
		}
		m.warn(Warning{Kind: WarnInvalidCheckpoint, Name: ref.Name, Path: ref.Path,
			Message: "cannot resume from it; trying the previous checkpoint", Err: err})
		if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrIncomplete) {
			m.quarantine(ref)
		}
	}
	return nil, errf(ErrNotFound, "no valid checkpoint in %s", m.dir)
}

// quarantine renames a damaged checkpoint to <name>.corrupt (or .corrupt.<n>), keeping
// the evidence while taking it out of every later scan.
func (m *Manager) quarantine(ref Ref) {
	target := ref.Path + corruptSuffix
	for i := 1; ; i++ {
		if _, err := m.fs.Lstat(target); isNotExist(err) {
			break
		}
		if i > 100 {
			target = ref.Path + corruptSuffix + "." + randSuffix()
			break
		}
		target = fmt.Sprintf("%s%s.%d", ref.Path, corruptSuffix, i)
	}
	if err := m.fs.Rename(ref.Path, target); err != nil {
		m.warn(Warning{Kind: WarnCleanupFailed, Name: ref.Name, Path: ref.Path, Message: "could not quarantine", Err: err})
		return
	}
	_ = m.fs.SyncDir(m.dir) // best effort: a lost rename only means re-quarantining later
	m.warn(Warning{Kind: WarnQuarantined, Name: ref.Name, Path: target, Message: "renamed to " + filepath.Base(target) + " for inspection"})
}
