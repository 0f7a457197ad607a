package checkpoint

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"simpletuner/plugins"
	"simpletuner/trainerproc/safetensors"
)

// Options configures a Manager.
type Options struct {
	// FS performs every file operation; nil means OSFS.
	FS FS
	// Retention runs after every successful save.
	Retention Retention
	// OnWarning receives every warning (skipped or quarantined checkpoints, ignored entries,
	// cleanup failures); nil drops them.
	OnWarning func(Warning)
	// Leased, when set, reports checkpoints held outside this process (e.g. a hook or an
	// upload the supervisor runs); they are never pruned. Lease covers in-process holders.
	Leased func(name string) bool
}

// Manager manages the checkpoints of one output_dir. Its methods are safe for concurrent
// use; saves, pruning, cleanup and resume are serialised.
type Manager struct {
	dir  string
	fs   FS
	opts Options

	mu sync.Mutex // serialises Save, Prune, Cleanup and Resume

	leaseMu sync.Mutex // guards leases; held while a prune renames a victim away
	leases  map[string]int
}

// New returns a Manager for outputDir.
func New(outputDir string, opts Options) *Manager {
	fsys := opts.FS
	if fsys == nil {
		fsys = OSFS{}
	}
	return &Manager{dir: filepath.Clean(outputDir), fs: fsys, opts: opts, leases: map[string]int{}}
}

// Dir returns the output directory.
func (m *Manager) Dir() string { return m.dir }

func (m *Manager) warn(w Warning) {
	if m.opts.OnWarning != nil {
		m.opts.OnWarning(w)
	}
}

// Lease protects checkpoint name from retention until release is called (release is
// idempotent). A hook or upload takes a lease before it reads the checkpoint.
func (m *Manager) Lease(name string) (release func(), err error) {
	if _, _, ok := plugins.ParseCheckpointName(name); !ok {
		return nil, errf(ErrInvalid, "lease: %q is not a checkpoint name", name)
	}
	m.leaseMu.Lock()
	defer m.leaseMu.Unlock()
	if _, err := m.fs.Lstat(filepath.Join(m.dir, name)); err != nil {
		if isNotExist(err) {
			return nil, errf(ErrNotFound, "lease %s", name)
		}
		return nil, fmt.Errorf("checkpoint: lease %s: %w", name, err)
	}
	m.leases[name]++
	var once sync.Once
	return func() {
		once.Do(func() {
			m.leaseMu.Lock()
			if m.leases[name]--; m.leases[name] <= 0 {
				delete(m.leases, name)
			}
			m.leaseMu.Unlock()
		})
	}, nil
}

// leasedLocked reports whether name is leased; leaseMu must be held.
func (m *Manager) leasedLocked(name string) bool {
	if m.leases[name] > 0 {
		return true
	}
	return m.opts.Leased != nil && m.opts.Leased(name)
}

// Checkpoint is what the trainer hands to Save.
type Checkpoint struct {
	Step    int
	Rolling bool
	// State is written as training_state.json; State.GlobalStep must equal Step.
	State TrainingState
	// Tensors are safetensors files, e.g. LoRAWeightsFile or TransformerWeightsFile and
	// OptimizerFile.
	Tensors []TensorFile
	// Files are other files, e.g. TransformerConfigFile and OptimizerStateFile.
	Files []Blob
}

// TensorFile is one safetensors file of a checkpoint.
type TensorFile struct {
	Path     string // slash-separated, relative to the checkpoint dir
	Tensors  []safetensors.Tensor
	Metadata map[string]string
}

// Blob is one plain file of a checkpoint.
type Blob struct {
	Path string // slash-separated, relative to the checkpoint dir
	Data []byte
}

// Saved describes a successful save.
type Saved struct {
	Ref Ref
	// Pruned lists the checkpoints retention removed afterwards.
	Pruned []string
}

// pendingFile is one file to write: its relative path and a function producing its bytes.
type pendingFile struct {
	rel   string
	write func(io.Writer) error
}

// validRel checks a caller-supplied relative path: a valid path (validPath) that is not one
// of the names the package writes itself.
func validRel(rel string) error {
	if err := validPath(rel); err != nil {
		return err
	}
	if rel == TrainingStateFile {
		return errf(ErrInvalid, "file path %q is reserved", rel)
	}
	return nil
}

// validPath checks a relative path: clean, slash-separated, inside the checkpoint, and not
// the manifest or the guard.
func validPath(rel string) error {
	if rel == "" || path.IsAbs(rel) || strings.Contains(rel, `\`) || path.Clean(rel) != rel ||
		rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return errf(ErrInvalid, "file path %q must be a clean relative path inside the checkpoint", rel)
	}
	for _, part := range strings.Split(rel, "/") {
		if part == "" || part == "." || part == ".." || strings.ContainsRune(part, 0) {
			return errf(ErrInvalid, "file path %q has an invalid component", rel)
		}
	}
	switch rel {
	case ManifestFile, GuardFile:
		return errf(ErrInvalid, "file path %q is reserved", rel)
	}
	return nil
}

// plan validates ck and lists the files to write, sorted by path.
func plan(ck Checkpoint) ([]pendingFile, error) {
	if ck.Step < 0 {
		return nil, errf(ErrInvalid, "negative step %d", ck.Step)
	}
	if ck.State.GlobalStep != ck.Step {
		return nil, errf(ErrInvalid, "training state global_step %d does not match step %d", ck.State.GlobalStep, ck.Step)
	}
	state, err := marshalJSON(ck.State)
	if err != nil {
		return nil, errf(ErrInvalid, "training state: %v", err)
	}
	files := []pendingFile{{rel: TrainingStateFile, write: writeBytes(state)}}
	for _, tf := range ck.Tensors {
		if err := validRel(tf.Path); err != nil {
			return nil, err
		}
		if _, _, err := safetensors.EncodeHeader(tf.Tensors, tf.Metadata); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, tf.Path, err)
		}
		files = append(files, pendingFile{rel: tf.Path, write: func(w io.Writer) error {
			_, err := safetensors.Write(w, tf.Tensors, tf.Metadata)
			return err
		}})
	}
	for _, b := range ck.Files {
		if err := validRel(b.Path); err != nil {
			return nil, err
		}
		files = append(files, pendingFile{rel: b.Path, write: writeBytes(b.Data)})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].rel < files[j].rel })
	for i := 1; i < len(files); i++ {
		if files[i].rel == files[i-1].rel {
			return nil, errf(ErrInvalid, "file %q given twice", files[i].rel)
		}
		// A file cannot also be a directory of another file ("a" and "a/b").
		if strings.HasPrefix(files[i].rel, files[i-1].rel+"/") {
			return nil, errf(ErrInvalid, "file %q is also a directory of %q", files[i-1].rel, files[i].rel)
		}
	}
	return files, nil
}

func writeBytes(b []byte) func(io.Writer) error {
	return func(w io.Writer) error { _, err := w.Write(b); return err }
}

// marshalJSON encodes v compactly, without HTML escaping, with a trailing newline. Compact
// output keeps raw sub-messages (scheduler, sampler states) byte-identical on reload.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func randSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// countingHash tracks the size and SHA-256 of everything written through it.
type countingHash struct {
	n int64
	h hashWriter
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

// Write counts and hashes p; it never fails.
func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

// writeFile creates path, writes it, fsyncs it and closes it; any error is fatal.
func (m *Manager) writeFile(p string, write func(io.Writer) error) (size int64, sum string, err error) {
	f, err := m.fs.Create(p)
	if err != nil {
		return 0, "", err
	}
	ch := &countingHash{h: sha256.New()}
	if err := write(io.MultiWriter(f, ch)); err != nil {
		f.Close()
		return 0, "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, "", err
	}
	if err := f.Close(); err != nil {
		return 0, "", err
	}
	return ch.n, hex.EncodeToString(ch.h.Sum(nil)), nil
}

// Save writes ck durably as output_dir/checkpoint-<step>[-rolling]/ and then applies
// retention. The sequence is: stage everything in output_dir/.tmp-checkpoint-…, fsync each
// file (and each sub-directory), write and fsync the manifest, write and fsync the guard,
// fsync the temp dir, rename it into place (moving an existing checkpoint of the same
// step aside first and deleting it afterwards), fsync output_dir. Any error before the
// rename removes the temp dir and returns an error wrapping ErrSaveFailed and the cause;
// retention runs only after the parent fsync succeeded. A failure of that last fsync
// leaves the complete checkpoint in place but still fails the save, since its durability
// is unknown.
func (m *Manager) Save(ctx context.Context, ck Checkpoint) (Saved, error) {
	files, err := plan(ck)
	if err != nil {
		return Saved{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	name := plugins.CheckpointName(ck.Step, ck.Rolling)
	fail := func(stage string, err error) (Saved, error) {
		return Saved{}, fmt.Errorf("%w: %s: %s: %w", ErrSaveFailed, name, stage, err)
	}

	if err := m.fs.MkdirAll(m.dir, 0o755); err != nil {
		return fail("create output dir", err)
	}
	tmpName := tmpPrefix + strconv.Itoa(ck.Step)
	if ck.Rolling {
		tmpName += RollingSuffix
	}
	tmp := filepath.Join(m.dir, tmpName+"-"+randSuffix())
	if err := m.fs.Mkdir(tmp, 0o755); err != nil {
		return fail("create temp dir", err)
	}
	renamed := false
	defer func() {
		if !renamed {
			if err := m.fs.RemoveAll(tmp); err != nil {
				m.warn(Warning{Kind: WarnCleanupFailed, Name: filepath.Base(tmp), Path: tmp,
					Message: "could not remove the temp dir of a failed save; Cleanup will retry", Err: err})
			}
		}
	}()

	// Files, creating sub-directories as needed.
	dirs := map[string]bool{}
	entries := make([]ManifestEntry, 0, len(files))
	for _, pf := range files {
		if err := ctx.Err(); err != nil {
			return fail("cancelled", err)
		}
		if err := m.mkdirs(tmp, path.Dir(pf.rel), dirs); err != nil {
			return fail("create dir for "+pf.rel, err)
		}
		size, sum, err := m.writeFile(filepath.Join(tmp, filepath.FromSlash(pf.rel)), pf.write)
		if err != nil {
			return fail("write "+pf.rel, err)
		}
		entries = append(entries, ManifestEntry{Path: pf.rel, Size: size, SHA256: sum})
	}
	// Sub-directories deepest first, so each one's entries are durable before its parent's.
	subdirs := make([]string, 0, len(dirs))
	for d := range dirs {
		subdirs = append(subdirs, d)
	}
	sort.Slice(subdirs, func(i, j int) bool {
		if a, b := strings.Count(subdirs[i], "/"), strings.Count(subdirs[j], "/"); a != b {
			return a > b
		}
		return subdirs[i] < subdirs[j]
	})
	for _, d := range subdirs {
		if err := m.fs.SyncDir(filepath.Join(tmp, filepath.FromSlash(d))); err != nil {
			return fail("fsync dir "+d, err)
		}
	}

	// Manifest, then guard.
	man := Manifest{Version: 1, Checkpoint: name, Metadata: ManifestMetadata{GlobalStep: ck.Step, Rolling: ck.Rolling, Format: manifestFormat}, Entries: entries}
	for _, e := range entries {
		man.Files = append(man.Files, e.Path)
	}
	manBytes, err := marshalJSON(man)
	if err != nil {
		return fail("encode manifest", err)
	}
	if _, _, err := m.writeFile(filepath.Join(tmp, ManifestFile), writeBytes(manBytes)); err != nil {
		return fail("write manifest", err)
	}
	if _, _, err := m.writeFile(filepath.Join(tmp, GuardFile), writeBytes([]byte(GuardContent))); err != nil {
		return fail("write guard", err)
	}
	if err := m.fs.SyncDir(tmp); err != nil {
		return fail("fsync temp dir", err)
	}
	if err := ctx.Err(); err != nil {
		return fail("cancelled", err)
	}

	// Into place. An existing checkpoint of the same step (a run resumed from before it)
	// is moved aside first: rename cannot replace a non-empty directory.
	final := filepath.Join(m.dir, name)
	replaced := ""
	if _, err := m.fs.Lstat(final); err == nil {
		replaced = filepath.Join(m.dir, replacedPrefix+name+"-"+randSuffix())
		if err := m.fs.Rename(final, replaced); err != nil {
			return fail("move the existing "+name+" aside", err)
		}
	} else if !isNotExist(err) {
		return fail("stat "+name, err)
	}
	if err := m.fs.Rename(tmp, final); err != nil {
		if replaced != "" {
			if rerr := m.fs.Rename(replaced, final); rerr != nil {
				err = errors.Join(err, fmt.Errorf("restore previous %s: %w", name, rerr))
			}
		}
		return fail("rename into place", err)
	}
	renamed = true
	if err := m.fs.SyncDir(m.dir); err != nil {
		return fail("fsync output dir", err)
	}
	if replaced != "" {
		if err := m.fs.RemoveAll(replaced); err != nil {
			m.warn(Warning{Kind: WarnCleanupFailed, Name: filepath.Base(replaced), Path: replaced,
				Message: "could not remove the replaced checkpoint; Cleanup will retry", Err: err})
		}
	}

	saved := Saved{Ref: Ref{Name: name, Path: final, Step: ck.Step, Rolling: ck.Rolling, Complete: true}}
	pruned, err := m.pruneLocked(name)
	saved.Pruned = pruned
	if err != nil {
		m.warn(Warning{Kind: WarnPruneFailed, Name: name, Path: final, Message: "retention after save", Err: err})
	}
	return saved, nil
}

// mkdirs creates rel (slash-separated) and its parents under root, top down, skipping the
// ones already in made and adding the new ones to it.
func (m *Manager) mkdirs(root, rel string, made map[string]bool) error {
	if rel == "." {
		return nil
	}
	parts := strings.Split(rel, "/")
	for i := range parts {
		d := strings.Join(parts[:i+1], "/")
		if made[d] {
			continue
		}
		if err := m.fs.Mkdir(filepath.Join(root, filepath.FromSlash(d)), 0o755); err != nil {
			return err
		}
		made[d] = true
	}
	return nil
}
