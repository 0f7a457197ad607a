package checkpoint

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"simpletuner/trainerproc/safetensors"
)

func TestSaveLoadRoundTripExact(t *testing.T) {
	dir := t.TempDir()
	m := New(dir, Options{})
	ck := sample(t, 500, false, 3)
	s := mustSave(t, m, ck)
	if s.Ref.Name != "checkpoint-500" || !s.Ref.Complete {
		t.Fatalf("saved ref = %+v", s.Ref)
	}
	if got := entries(t, dir); !reflect.DeepEqual(got, []string{"checkpoint-500"}) {
		t.Fatalf("output dir = %v", got)
	}
	l, err := m.Resume("latest")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l.State, ck.State) {
		t.Fatalf("state differs:\n got %+v\nwant %+v", l.State, ck.State)
	}
	if l.State.RNG["noise"][0] != math.MaxUint64 {
		t.Fatalf("uint64 RNG state lost precision: %v", l.State.RNG)
	}
	wantFiles := []string{OptimizerFile, OptimizerStateFile, TrainingStateFile, TransformerConfigFile, TransformerWeightsFile}
	if !reflect.DeepEqual(l.Files(), wantFiles) {
		t.Fatalf("files = %v", l.Files())
	}
	for _, tf := range ck.Tensors {
		got, meta, err := l.ReadTensors(tf.Path)
		if err != nil {
			t.Fatal(err)
		}
		if tf.Metadata != nil && !reflect.DeepEqual(meta, tf.Metadata) {
			t.Fatalf("%s metadata = %v", tf.Path, meta)
		}
		for _, want := range tf.Tensors {
			if g := got[want.Name]; !reflect.DeepEqual(g, want) {
				t.Fatalf("%s/%s: bytes differ", tf.Path, want.Name)
			}
		}
	}
	for _, b := range ck.Files {
		got, err := l.ReadFile(b.Path)
		if err != nil || string(got) != string(b.Data) {
			t.Fatalf("%s = %q, %v", b.Path, got, err)
		}
	}
	if _, err := l.ReadFile("nope.bin"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown file: %v", err)
	}
	guard, _ := os.ReadFile(filepath.Join(dir, "checkpoint-500", GuardFile))
	if string(guard) != GuardContent {
		t.Fatalf("guard = %q", guard)
	}
}

func TestLoRALayoutAndRolling(t *testing.T) {
	dir := t.TempDir()
	m := New(dir, Options{FS: noSyncFS{}})
	a, _ := safetensors.FromFloat32("transformer.blocks.0.attn.to_q.lora_A.weight", safetensors.F32, []int{1, 2}, []float32{1, 2})
	ck := Checkpoint{Step: 300, Rolling: true, State: TrainingState{GlobalStep: 300},
		Tensors: []TensorFile{{Path: LoRAWeightsFile, Tensors: []safetensors.Tensor{a}}}}
	s := mustSave(t, m, ck)
	if s.Ref.Name != "checkpoint-300-rolling" {
		t.Fatalf("name = %s", s.Ref.Name)
	}
	l, err := m.Resume("checkpoint-300-rolling")
	if err != nil {
		t.Fatal(err)
	}
	if !l.Ref.Rolling || l.Ref.Step != 300 || !l.Has(LoRAWeightsFile) {
		t.Fatalf("loaded %+v", l.Ref)
	}
	tr, err := l.OpenTensors(LoRAWeightsFile)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if got := tr.Names(); !reflect.DeepEqual(got, []string{a.Name}) {
		t.Fatalf("names = %v", got)
	}
}

func TestSaveRejectsBadInput(t *testing.T) {
	m := New(t.TempDir(), Options{FS: noSyncFS{}})
	blob := func(p string) Checkpoint {
		return Checkpoint{Step: 1, State: TrainingState{GlobalStep: 1}, Files: []Blob{{Path: p, Data: []byte("x")}}}
	}
	bad := map[string]Checkpoint{
		"parent":       blob("../x"),
		"absolute":     blob("/etc/passwd"),
		"unclean":      blob("a//b"),
		"dot":          blob("./a"),
		"backslash":    blob(`a\b`),
		"reserved":     blob(TrainingStateFile),
		"guard":        blob(GuardFile),
		"manifest":     blob(ManifestFile),
		"step":         {Step: 2, State: TrainingState{GlobalStep: 1}},
		"negative":     {Step: -1, State: TrainingState{GlobalStep: -1}},
		"dup":          {Step: 1, State: TrainingState{GlobalStep: 1}, Files: []Blob{{Path: "a"}, {Path: "a"}}},
		"file and dir": {Step: 1, State: TrainingState{GlobalStep: 1}, Files: []Blob{{Path: "a"}, {Path: "a/b"}}},
		"nan lr":       {Step: 1, State: TrainingState{GlobalStep: 1, LearningRate: math.NaN()}},
		"bad tensor":   {Step: 1, State: TrainingState{GlobalStep: 1}, Tensors: []TensorFile{{Path: "w.safetensors", Tensors: []safetensors.Tensor{{Name: "x", DType: safetensors.F32, Shape: []int{2}}}}}},
	}
	for name, ck := range bad {
		if _, err := m.Save(context.Background(), ck); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := os.Stat(m.Dir()); err == nil && len(entries(t, m.Dir())) != 0 {
		t.Fatalf("rejected saves left entries: %v", entries(t, m.Dir()))
	}
}

// C6: the durability order of one save, read from the FaultFS log.
func TestC6SaveOrderOfOperations(t *testing.T) {
	dir := t.TempDir()
	ffs := NewFaultFS(noSyncFS{}, nil)
	m := New(dir, Options{FS: ffs})
	mustSave(t, m, sample(t, 10, false, 0))

	ops := ffs.Ops()
	index := func(match func(Op) bool, what string) int {
		for i, o := range ops {
			if match(o) {
				return i
			}
		}
		t.Fatalf("no %s in %v", what, ops)
		return -1
	}
	last := func(match func(Op) bool) int {
		n := -1
		for i, o := range ops {
			if match(o) {
				n = i
			}
		}
		return n
	}
	base := func(o Op) string { return filepath.Base(o.Path) }
	isTmpDir := func(p string) bool { return strings.HasPrefix(filepath.Base(p), tmpPrefix) }

	// Every payload file: create → write → sync → close, and its sync precedes the manifest.
	manifestCreate := index(func(o Op) bool { return o.Kind == OpCreate && base(o) == ManifestFile }, "manifest create")
	for _, f := range []string{TrainingStateFile, "diffusion_pytorch_model.safetensors", "config.json", OptimizerFile, OptimizerStateFile} {
		c := index(func(o Op) bool { return o.Kind == OpCreate && base(o) == f }, f+" create")
		s := index(func(o Op) bool { return o.Kind == OpSync && base(o) == f }, f+" sync")
		cl := index(func(o Op) bool { return o.Kind == OpClose && base(o) == f }, f+" close")
		if !(c < s && s < cl && cl < manifestCreate) {
			t.Fatalf("%s: create %d sync %d close %d manifest %d", f, c, s, cl, manifestCreate)
		}
	}
	subdirSync := index(func(o Op) bool { return o.Kind == OpSyncDir && base(o) == "transformer" }, "transformer dir fsync")
	manifestSync := index(func(o Op) bool { return o.Kind == OpSync && base(o) == ManifestFile }, "manifest sync")
	guardCreate := index(func(o Op) bool { return o.Kind == OpCreate && base(o) == GuardFile }, "guard create")
	guardSync := index(func(o Op) bool { return o.Kind == OpSync && base(o) == GuardFile }, "guard sync")
	tmpSync := index(func(o Op) bool { return o.Kind == OpSyncDir && isTmpDir(o.Path) }, "temp dir fsync")
	rename := index(func(o Op) bool { return o.Kind == OpRename && isTmpDir(o.Path) }, "rename")
	parentSync := last(func(o Op) bool { return o.Kind == OpSyncDir && o.Path == dir })
	order := []int{subdirSync, manifestCreate, manifestSync, guardCreate, guardSync, tmpSync, rename, parentSync}
	if !slices.IsSorted(order) {
		t.Fatalf("order (subdir, manifest create, manifest sync, guard create, guard sync, tmp fsync, rename, parent fsync) = %v\n%v", order, ops)
	}
	if r := ops[rename]; r.To != filepath.Join(dir, "checkpoint-10") {
		t.Fatalf("renamed to %s", r.To)
	}
	// The guard is the last file created.
	if lastCreate := last(func(o Op) bool { return o.Kind == OpCreate }); lastCreate != guardCreate {
		t.Fatalf("a file was created after the guard: %v", ops[lastCreate])
	}
}

// C6: an fsync failure anywhere before the rename aborts the save and removes the temp dir;
// a failing parent fsync after the rename fails the save and keeps retention from running.
func TestC6FsyncFailureAborts(t *testing.T) {
	eio := syscall.EIO
	base := func(o Op) string { return filepath.Base(o.Path) }
	cases := []struct {
		name   string
		fault  func(o Op, dir string) bool
		landed bool // the checkpoint dir exists afterwards
	}{
		{"payload file fsync", func(o Op, _ string) bool { return o.Kind == OpSync && base(o) == OptimizerFile }, false},
		{"state fsync", func(o Op, _ string) bool { return o.Kind == OpSync && base(o) == TrainingStateFile }, false},
		{"subdir fsync", func(o Op, _ string) bool { return o.Kind == OpSyncDir && base(o) == "transformer" }, false},
		{"manifest fsync", func(o Op, _ string) bool { return o.Kind == OpSync && base(o) == ManifestFile }, false},
		{"guard fsync", func(o Op, _ string) bool { return o.Kind == OpSync && base(o) == GuardFile }, false},
		{"guard close", func(o Op, _ string) bool { return o.Kind == OpClose && base(o) == GuardFile }, false},
		{"temp dir fsync", func(o Op, _ string) bool { return o.Kind == OpSyncDir && strings.HasPrefix(base(o), tmpPrefix) }, false},
		{"rename", func(o Op, _ string) bool { return o.Kind == OpRename }, false},
		{"parent fsync", func(o Op, dir string) bool { return o.Kind == OpSyncDir && o.Path == dir }, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			setup := New(dir, Options{FS: noSyncFS{}})
			mustSave(t, setup, sample(t, 100, false, 0))
			mustSave(t, setup, sample(t, 200, false, 0))
			armed := true
			ffs := NewFaultFS(noSyncFS{}, func(o Op) error {
				if armed && c.fault(o, dir) {
					armed = false
					return eio
				}
				return nil
			})
			m := New(dir, Options{FS: ffs, Retention: Retention{TotalLimit: 1}})
			_, err := m.Save(context.Background(), sample(t, 300, false, 0))
			if !errors.Is(err, ErrSaveFailed) || !errors.Is(err, syscall.EIO) {
				t.Fatalf("err = %v, want ErrSaveFailed wrapping EIO", err)
			}
			if armed {
				t.Fatal("the fault never fired")
			}
			got := entries(t, dir)
			if tmp := withPrefix(got, tmpPrefix); len(tmp) != 0 {
				t.Fatalf("temp dir left behind: %v", got)
			}
			want := []string{"checkpoint-100", "checkpoint-200"}
			if c.landed {
				want = append(want, "checkpoint-300")
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("output dir = %v, want %v (retention must not run after a failed save)", got, want)
			}
		})
	}
}

// C2: ENOSPC while writing the weights: the save fails cleanly, the temp dir is removed,
// the previous checkpoint is intact and still latest, and retention (keep=1) does not run.
func TestC2DiskFullDuringSave(t *testing.T) {
	dir := t.TempDir()
	setup := New(dir, Options{FS: noSyncFS{}})
	mustSave(t, setup, sample(t, 100, false, 0))
	mustSave(t, setup, sample(t, 200, false, 0))
	ffs := NewFaultFS(noSyncFS{}, func(o Op) error {
		if o.Kind == OpWrite && filepath.Base(o.Path) == "diffusion_pytorch_model.safetensors" {
			return syscall.ENOSPC
		}
		return nil
	})
	var w warnings
	m := New(dir, Options{FS: ffs, Retention: Retention{TotalLimit: 1}, OnWarning: w.add})
	_, err := m.Save(context.Background(), sample(t, 300, false, 0))
	if !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrSaveFailed) {
		t.Fatalf("err = %v, want ENOSPC and ErrSaveFailed", err)
	}
	if got := entries(t, dir); !reflect.DeepEqual(got, []string{"checkpoint-100", "checkpoint-200"}) {
		t.Fatalf("output dir = %v", got)
	}
	for _, op := range ffs.Ops() {
		if op.Kind == OpRename || op.Kind == OpRemoveAll && !strings.HasPrefix(filepath.Base(op.Path), tmpPrefix) {
			t.Fatalf("failed save touched existing checkpoints: %+v", op)
		}
	}
	l, err := New(dir, Options{}).Resume("latest")
	if err != nil || l.Ref.Name != "checkpoint-200" {
		t.Fatalf("latest after failed save = %v, %v", l, err)
	}
	if len(w.ws) != 0 {
		t.Fatalf("unexpected warnings: %v", w.ws)
	}
}

// C5: saving a step that already exists (resume, then save the same step) replaces it
// instead of failing with ENOTEMPTY, and leaves no trash.
func TestC5SameStepReplaces(t *testing.T) {
	dir := t.TempDir()
	m := New(dir, Options{FS: noSyncFS{}})
	mustSave(t, m, sample(t, 400, false, 1))
	if err := os.WriteFile(filepath.Join(dir, "checkpoint-400", "stale.txt"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustSave(t, m, sample(t, 400, false, 2))
	if got := entries(t, dir); !reflect.DeepEqual(got, []string{"checkpoint-400"}) {
		t.Fatalf("output dir = %v", got)
	}
	l, err := m.Resume("latest")
	if err != nil {
		t.Fatal(err)
	}
	if l.State.Epoch != 2 {
		t.Fatalf("content is from the old save (marker %d)", l.State.Epoch)
	}
}

// C3: every kind of damage makes latest fall back to the previous checkpoint with a warning,
// and the damaged dir is renamed to <name>.corrupt with its content untouched.
func TestC3CorruptCheckpointSkippedAndQuarantined(t *testing.T) {
	weights := filepath.FromSlash(TransformerWeightsFile)
	truncate := func(t *testing.T, d string) {
		p := filepath.Join(d, weights)
		st, _ := os.Stat(p)
		if err := os.Truncate(p, st.Size()-3); err != nil {
			t.Fatal(err)
		}
	}
	write := func(rel, data string) func(*testing.T, string) {
		return func(t *testing.T, d string) {
			if err := os.WriteFile(filepath.Join(d, filepath.FromSlash(rel)), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []struct {
		name   string
		mutate func(*testing.T, string)
		want   error
	}{
		{"missing guard", func(t *testing.T, d string) { os.Remove(filepath.Join(d, GuardFile)) }, ErrIncomplete},
		{"bad guard", write(GuardFile, "partial"), ErrCorrupt},
		{"missing manifest", func(t *testing.T, d string) { os.Remove(filepath.Join(d, ManifestFile)) }, ErrIncomplete},
		{"garbage manifest", write(ManifestFile, "{not json"), ErrCorrupt},
		{"missing file", func(t *testing.T, d string) { os.Remove(filepath.Join(d, OptimizerFile)) }, ErrIncomplete},
		{"extra file", write("transformer/extra.bin", "x"), ErrCorrupt},
		{"symlink inside", func(t *testing.T, d string) {
			os.Remove(filepath.Join(d, OptimizerStateFile))
			if err := os.Symlink("/etc/hostname", filepath.Join(d, OptimizerStateFile)); err != nil {
				t.Fatal(err)
			}
		}, ErrCorrupt},
		{"hash mismatch", func(t *testing.T, d string) {
			p := filepath.Join(d, weights)
			b, _ := os.ReadFile(p)
			b[len(b)-1] ^= 1
			os.WriteFile(p, b, 0o644)
		}, ErrCorrupt},
		{"truncated safetensors", truncate, ErrCorrupt},
		{"truncated safetensors, manifest agrees", func(t *testing.T, d string) { truncate(t, d); rewriteManifest(t, d) }, safetensors.ErrCorrupt},
		{"empty training state", write(TrainingStateFile, ""), ErrCorrupt},
		{"empty training state, manifest agrees", func(t *testing.T, d string) { write(TrainingStateFile, "")(t, d); rewriteManifest(t, d) }, ErrCorrupt},
		{"invalid training state, manifest agrees", func(t *testing.T, d string) { write(TrainingStateFile, `{"epoch":1}`)(t, d); rewriteManifest(t, d) }, ErrCorrupt},
		{"wrong global_step, manifest agrees", func(t *testing.T, d string) {
			write(TrainingStateFile, `{"global_step":7}`)(t, d)
			rewriteManifest(t, d)
		}, ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			var w warnings
			m := New(dir, Options{FS: noSyncFS{}, OnWarning: w.add})
			mustSave(t, m, sample(t, 100, false, 0))
			mustSave(t, m, sample(t, 200, false, 0))
			bad := filepath.Join(dir, "checkpoint-200")
			c.mutate(t, bad)
			before := snapshot(t, bad)

			_, verr := Verify(nil, bad, 200)
			if !errors.Is(verr, c.want) {
				t.Fatalf("Verify err = %v, want %v", verr, c.want)
			}
			if _, err := m.Resume("checkpoint-200"); err == nil {
				t.Fatal("an explicitly named damaged checkpoint was loaded")
			}
			l, err := m.Resume("latest")
			if err != nil {
				t.Fatal(err)
			}
			if l.Ref.Name != "checkpoint-100" {
				t.Fatalf("resumed from %s, want checkpoint-100", l.Ref.Name)
			}
			if got := w.names(WarnInvalidCheckpoint); !reflect.DeepEqual(got, []string{"checkpoint-200"}) {
				t.Fatalf("invalid warnings = %v", got)
			}
			if got := w.names(WarnQuarantined); !reflect.DeepEqual(got, []string{"checkpoint-200"}) {
				t.Fatalf("quarantine warnings = %v", got)
			}
			if got := entries(t, dir); !reflect.DeepEqual(got, []string{"checkpoint-100", "checkpoint-200.corrupt"}) {
				t.Fatalf("output dir = %v", got)
			}
			if after := snapshot(t, bad+corruptSuffix); !reflect.DeepEqual(after, before) {
				t.Fatal("quarantine changed the evidence")
			}
		})
	}
}

// snapshot maps every path under dir to its content (symlinks to their target).
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if fi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			out[rel] = "->" + target
			return nil
		}
		b, err := os.ReadFile(p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestQuarantineDoesNotClobber(t *testing.T) {
	dir := t.TempDir()
	m := New(dir, Options{FS: noSyncFS{}})
	mustSave(t, m, sample(t, 100, false, 0))
	for range 2 {
		mustSave(t, m, sample(t, 200, false, 0))
		os.Remove(filepath.Join(dir, "checkpoint-200", GuardFile))
		if l, err := m.Resume("latest"); err != nil || l.Ref.Step != 100 {
			t.Fatalf("resume = %v, %v", l, err)
		}
	}
	want := []string{"checkpoint-100", "checkpoint-200.corrupt", "checkpoint-200.corrupt.1"}
	if got := entries(t, dir); !reflect.DeepEqual(got, want) {
		t.Fatalf("output dir = %v, want %v", got, want)
	}
}

func TestResumeNothing(t *testing.T) {
	dir := t.TempDir()
	m := New(filepath.Join(dir, "missing"), Options{})
	if _, err := m.Resume("latest"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty: %v", err)
	}
	if _, err := m.Resume(""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("disabled: %v", err)
	}
	if _, err := m.Resume("checkpoint-5"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("named missing: %v", err)
	}
	if _, err := m.Resume("s3://b/checkpoint-5"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("remote: %v", err)
	}
}

func TestResumeAbsolutePath(t *testing.T) {
	dir := t.TempDir()
	src := New(filepath.Join(dir, "other-run"), Options{FS: noSyncFS{}})
	mustSave(t, src, sample(t, 70, false, 0))
	m := New(filepath.Join(dir, "run"), Options{})
	l, err := m.Resume(filepath.Join(dir, "other-run", "checkpoint-70"))
	if err != nil || l.State.GlobalStep != 70 {
		t.Fatalf("absolute path: %v, %v", l, err)
	}
	// A copy under another name still loads; its step comes from the state.
	if err := os.Rename(filepath.Join(dir, "other-run", "checkpoint-70"), filepath.Join(dir, "keep")); err != nil {
		t.Fatal(err)
	}
	if l, err = m.Resume(filepath.Join(dir, "keep")); err != nil || l.Ref.Step != 70 {
		t.Fatalf("renamed copy: %v, %v", l, err)
	}
	// A symlink given as the path is refused, not followed.
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "keep"), link); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Resume(link); !errors.Is(err, ErrInvalid) {
		t.Fatalf("symlink path: %v", err)
	}
}

// C7: odd entries beside a valid checkpoint are ignored with warnings, the symlink is not
// followed (even though it points at a valid, newer checkpoint) and nothing outside the
// output dir is touched.
func TestC7OddEntriesIgnored(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "out")
	outside := filepath.Join(root, "elsewhere")
	var w warnings
	m := New(dir, Options{FS: noSyncFS{}, OnWarning: w.add, Retention: Retention{TotalLimit: 1}})
	mustSave(t, m, sample(t, 50, false, 0))
	ext := New(outside, Options{FS: noSyncFS{}})
	mustSave(t, ext, sample(t, 999, false, 0))
	os.Remove(filepath.Join(outside, "checkpoint-999", GuardFile)) // would be quarantined if followed
	before := snapshot(t, outside)

	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(dir, "checkpoints"), 0o755))
	must(os.Mkdir(filepath.Join(dir, "checkpoint-abc"), 0o755))
	must(os.Mkdir(filepath.Join(dir, "checkpoint-0070"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "checkpoint-100.safetensors"), []byte("x"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "checkpoint-120"), []byte("x"), 0o644))
	must(os.Symlink(filepath.Join(outside, "checkpoint-999"), filepath.Join(dir, "checkpoint-999")))
	must(os.Symlink("/etc", filepath.Join(dir, "checkpoint-998")))
	must(os.Mkdir(filepath.Join(dir, "validation_images"), 0o755))

	l, err := m.Resume("latest")
	if err != nil || l.Ref.Name != "checkpoint-50" {
		t.Fatalf("resume = %v, %v", l, err)
	}
	want := []string{"checkpoint-0070", "checkpoint-100.safetensors", "checkpoint-120", "checkpoint-998", "checkpoint-999", "checkpoint-abc", "checkpoints"}
	if got := w.names(WarnIgnoredEntry); !reflect.DeepEqual(got, want) {
		t.Fatalf("ignored-entry warnings = %v, want %v", got, want)
	}
	if got := w.of(WarnQuarantined); len(got) != 0 {
		t.Fatalf("quarantined: %v", got)
	}
	// Retention and cleanup do not touch them either.
	mustSave(t, m, sample(t, 60, false, 0))
	if _, err := m.Cleanup(); err != nil {
		t.Fatal(err)
	}
	got := entries(t, dir)
	for _, n := range append(want, "validation_images", "checkpoint-60") {
		if !slices.Contains(got, n) {
			t.Fatalf("%s disappeared: %v", n, got)
		}
	}
	if slices.Contains(got, "checkpoint-50") {
		t.Fatalf("retention (keep 1) did not prune checkpoint-50: %v", got)
	}
	if after := snapshot(t, outside); !reflect.DeepEqual(after, before) {
		t.Fatal("something outside the output dir changed")
	}
	if fi, err := os.Lstat(filepath.Join(dir, "checkpoint-999")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("symlink changed: %v %v", fi, err)
	}
}

// C4: leased checkpoints survive retention; keep=1 never leaves zero complete checkpoints.
func TestC4RetentionLeases(t *testing.T) {
	dir := t.TempDir()
	external := map[string]bool{}
	m := New(dir, Options{FS: noSyncFS{}, Retention: Retention{TotalLimit: 1}, Leased: func(n string) bool { return external[n] }})
	mustSave(t, m, sample(t, 100, false, 0))
	release, err := m.Lease("checkpoint-100")
	if err != nil {
		t.Fatal(err)
	}
	s := mustSave(t, m, sample(t, 200, false, 0))
	if len(s.Pruned) != 0 {
		t.Fatalf("pruned %v while leased", s.Pruned)
	}
	external["checkpoint-200"] = true
	s = mustSave(t, m, sample(t, 300, false, 0))
	if len(s.Pruned) != 0 {
		t.Fatalf("pruned %v while leased", s.Pruned)
	}
	if got := entries(t, dir); !reflect.DeepEqual(got, []string{"checkpoint-100", "checkpoint-200", "checkpoint-300"}) {
		t.Fatalf("output dir = %v", got)
	}
	release()
	release() // idempotent
	delete(external, "checkpoint-200")
	s = mustSave(t, m, sample(t, 400, false, 0))
	if !reflect.DeepEqual(s.Pruned, []string{"checkpoint-100", "checkpoint-200", "checkpoint-300"}) {
		t.Fatalf("pruned = %v", s.Pruned)
	}
	if got := entries(t, dir); !reflect.DeepEqual(got, []string{"checkpoint-400"}) {
		t.Fatalf("output dir = %v", got)
	}
	if _, err := m.Lease("checkpoint-100"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lease of a pruned checkpoint: %v", err)
	}
	if _, err := m.Lease("../x"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("lease of a bad name: %v", err)
	}
}

func TestRetentionRollingSeparate(t *testing.T) {
	dir := t.TempDir()
	m := New(dir, Options{FS: noSyncFS{}, Retention: Retention{TotalLimit: 2, RollingTotalLimit: 1}})
	for _, s := range []struct {
		step    int
		rolling bool
	}{{100, false}, {150, true}, {200, false}, {250, true}, {300, false}, {350, true}} {
		mustSave(t, m, sample(t, s.step, s.rolling, 0))
	}
	want := []string{"checkpoint-200", "checkpoint-300", "checkpoint-350-rolling"}
	if got := entries(t, dir); !reflect.DeepEqual(got, want) {
		t.Fatalf("output dir = %v, want %v", got, want)
	}
	if l, err := m.Resume("latest"); err != nil || l.Ref.Name != "checkpoint-350-rolling" {
		t.Fatalf("latest = %v, %v", l, err)
	}
}

func TestCleanup(t *testing.T) {
	dir := t.TempDir()
	var w warnings
	m := New(dir, Options{FS: noSyncFS{}, OnWarning: w.add})
	mustSave(t, m, sample(t, 100, false, 0))
	mustSave(t, m, sample(t, 200, false, 0))
	mk := func(name string) {
		if err := os.MkdirAll(filepath.Join(dir, name, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mk(".tmp-checkpoint-300-0a0b0c0d")
	mk(".trash-checkpoint-50-01020304")
	mk("checkpoint-400-tmp")
	mk("notes")
	mk("checkpoint-7.corrupt")
	// A same-step save that crashed between its two renames: checkpoint-200 moved aside
	// while its replacement never arrived must be restored, not deleted.
	if err := os.Rename(filepath.Join(dir, "checkpoint-200"), filepath.Join(dir, replacedPrefix+"checkpoint-200-aabbccdd")); err != nil {
		t.Fatal(err)
	}
	// One whose replacement did arrive is just trash.
	mk(replacedPrefix + "checkpoint-100-11223344")
	removed, err := m.Cleanup()
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 4 {
		t.Fatalf("removed = %v", removed)
	}
	want := []string{"checkpoint-100", "checkpoint-200", "checkpoint-7.corrupt", "notes"}
	if got := entries(t, dir); !reflect.DeepEqual(got, want) {
		t.Fatalf("output dir = %v, want %v", got, want)
	}
	if got := w.names(WarnRestored); !reflect.DeepEqual(got, []string{"checkpoint-200"}) {
		t.Fatalf("restored = %v", got)
	}
	if l, err := m.Resume("latest"); err != nil || l.Ref.Name != "checkpoint-200" {
		t.Fatalf("latest = %v, %v", l, err)
	}
}
