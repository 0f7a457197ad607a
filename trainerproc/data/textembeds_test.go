package data

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"weak"
)

// fakeT5 is a TextEncoder whose hidden state at (token k, feature d) is a function of the
// caption's bytes, the encoder's identity and the position; it counts its calls.
type fakeT5 struct {
	id    string
	d     int
	mu    sync.Mutex // guards calls and encoded
	calls int
	// encoded lists every caption encoded, in order.
	encoded []string
}

func (e *fakeT5) Identity() string { return e.id }

func (e *fakeT5) Encode(captions []string, maxLen int) (*TextEmbeddings, error) {
	e.mu.Lock()
	e.calls++
	e.encoded = append(e.encoded, captions...)
	e.mu.Unlock()
	return fakeEmbeddings(e.id, e.d, captions, maxLen), nil
}

func fakeEmbeddings(id string, d int, captions []string, maxLen int) *TextEmbeddings {
	te := &TextEmbeddings{B: len(captions), L: maxLen, D: d, Hidden: make([]float32, len(captions)*maxLen*d)}
	for i, c := range captions {
		n := min(len(c)+1, maxLen) // the bytes and an end token, cut at maxLen
		te.Lengths = append(te.Lengths, n)
		for k := range maxLen {
			for j := range d {
				v := float32(len(id)) / 8
				if k < len(c) {
					v += float32(c[k]) / 64
				}
				te.Hidden[(i*maxLen+k)*d+j] = v + float32(j)/16 - float32(k)/32
			}
		}
	}
	return te
}

func ensureText(t *testing.T, dir string, caps []string, maxLen int, enc TextEncoder, o EncodeOptions) *TextEmbedCache {
	t.Helper()
	c, err := EnsureTextEmbeds(context.Background(), dir, caps, maxLen, enc, o)
	if err != nil {
		t.Fatalf("EnsureTextEmbeds: %v", err)
	}
	return c
}

// TestTextEmbedInvalidation: entries are reused until the encoder, the max length or the
// dtype changes; the empty caption is always there; duplicates are encoded once.
func TestTextEmbedInvalidation(t *testing.T) {
	dir := t.TempDir()
	caps := []string{"a red cat", "a blue dog", "a red cat", "ünïcødé 猫 🐈"}
	steps := []struct {
		name   string
		id     string
		maxLen int
		dtype  DType
		caps   []string
		want   EncodeStats
	}{
		{"first run", "t5-a", 12, Float32, caps, EncodeStats{Built: 4}}, // 3 distinct + ""
		{"second run", "t5-a", 12, Float32, caps, EncodeStats{Hits: 4}},
		{"new caption", "t5-a", 12, Float32, append(slices.Clone(caps), "a green bird"), EncodeStats{Hits: 4, Built: 1}},
		{"max length changed", "t5-a", 16, Float32, caps, EncodeStats{Built: 4, Stale: 4}},
		{"encoder changed", "t5-b", 16, Float32, caps, EncodeStats{Built: 4, Stale: 4}},
		{"dtype changed", "t5-b", 16, Float16, caps, EncodeStats{Built: 4, Stale: 4}},
		{"unchanged", "t5-b", 16, Float16, caps, EncodeStats{Hits: 4}},
		{"no captions: the empty one", "t5-b", 16, Float16, nil, EncodeStats{Hits: 1}},
	}
	for _, st := range steps {
		enc := &fakeT5{id: st.id, d: 3}
		c := ensureText(t, dir, st.caps, st.maxLen, enc, EncodeOptions{DType: st.dtype})
		if c.Stats() != st.want || len(enc.encoded) != st.want.Built {
			t.Errorf("%s: stats %+v, encoded %q; want %+v", st.name, c.Stats(), enc.encoded, st.want)
		}
		if st.name == "first run" && !slices.Contains(enc.encoded, "") {
			t.Errorf("the empty caption was not encoded: %q", enc.encoded)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.te")); len(files) != 5 {
		t.Errorf("%d entry files, want 5 (stale entries are replaced in place)", len(files))
	}
}

// TestTextEmbedBatches: captions are encoded write_batch_size at a time, with progress.
func TestTextEmbedBatches(t *testing.T) {
	var caps []string
	for i := range 10 {
		caps = append(caps, fmt.Sprintf("caption %d", i))
	}
	enc := &fakeT5{id: "t5", d: 2}
	var progress []EncodeProgress
	c := ensureText(t, t.TempDir(), caps, 8, enc, EncodeOptions{BatchSize: 4, Progress: func(p EncodeProgress) { progress = append(progress, p) }})
	// 11 captions with the empty one: 4 + 4 + 3.
	if enc.calls != 3 || c.Stats().Built != 11 {
		t.Fatalf("%d calls, stats %+v", enc.calls, c.Stats())
	}
	want := []EncodeProgress{{11, 0, 11, 0}, {11, 0, 11, 4}, {11, 0, 11, 8}, {11, 0, 11, 11}}
	if !slices.Equal(progress, want) {
		t.Errorf("progress %v, want %v", progress, want)
	}
}

// TestTextEmbedLoad: Load returns the encoder's hidden states and mask (exact in float32,
// within float16 precision), from files or from memory, and names the file of a missing entry.
func TestTextEmbedLoad(t *testing.T) {
	caps := []string{"a red cat", "a much longer caption that is cut"}
	for _, tc := range []struct {
		name  string
		dir   string
		dtype DType
		tol   float64
	}{
		{"float32 files", t.TempDir(), Float32, 0},
		{"float16 files", t.TempDir(), Float16, 2e-3},
		{"memory", "", Float16, 0}, // memory keeps what the encoder returned
	} {
		c := ensureText(t, tc.dir, caps, 12, &fakeT5{id: "t5", d: 3}, EncodeOptions{DType: tc.dtype})
		order := []string{caps[1], "", caps[0]}
		tb, err := c.Load(order)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want := fakeEmbeddings("t5", 3, order, 12)
		if tb.B != 3 || tb.L != 12 || tb.D != 3 || !close32(tb.Hidden, want.Hidden, tc.tol) || !slices.Equal(tb.Lengths, want.Lengths) {
			t.Fatalf("%s: loaded %dx%dx%d, lengths %v; want lengths %v", tc.name, tb.B, tb.L, tb.D, tb.Lengths, want.Lengths)
		}
		if tb.Lengths[0] != 12 || tb.Lengths[1] != 1 || tb.Mask[11] != 1 || tb.Mask[12] != 1 || tb.Mask[13] != 0 || tb.Mask[24+9] != 1 || tb.Mask[24+10] != 0 {
			t.Errorf("%s: mask %v for lengths %v", tc.name, tb.Mask, tb.Lengths)
		}
		_, err = c.Load([]string{"never cached"})
		if !errors.Is(err, ErrNotCached) || (tc.dir != "" && !strings.Contains(err.Error(), textFile(tc.dir, "never cached"))) {
			t.Errorf("%s: uncached caption: %v", tc.name, err)
		}
	}
}

// TestTextEmbedCorruptAndRewritten: a corrupt entry is rebuilt at the next check; an entry
// rewritten by a job with another encoder is refused by Load.
func TestTextEmbedCorruptAndRewritten(t *testing.T) {
	dir := t.TempDir()
	caps := []string{"one", "two"}
	enc := &fakeT5{id: "t5", d: 4}
	c := ensureText(t, dir, caps, 6, enc, EncodeOptions{})
	p := textFile(dir, "two")
	b, _ := os.ReadFile(p)
	b[headerSize+9] ^= 0x40
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Load([]string{"two"}); !errors.Is(err, ErrCache) {
		t.Errorf("corrupt entry loaded: %v", err)
	}
	if err := os.Truncate(textFile(dir, "one"), 30); err != nil {
		t.Fatal(err)
	}
	if c2 := ensureText(t, dir, caps, 6, enc, EncodeOptions{}); c2.Stats() != (EncodeStats{Hits: 1, Built: 2, Corrupt: 2}) {
		t.Errorf("after corruption: %+v", c2.Stats())
	}
	if _, err := c.Load(caps); err != nil {
		t.Errorf("rebuilt entries: %v", err)
	}
	ensureText(t, dir, caps, 6, &fakeT5{id: "other", d: 4}, EncodeOptions{})
	if _, err := c.Load(caps); !errors.Is(err, ErrCache) || !strings.Contains(err.Error(), "rewritten") {
		t.Errorf("entry of another encoder loaded: %v", err)
	}
}

// TestTextEmbedFreesEncoder: once EnsureTextEmbeds returns, nothing it returned keeps the
// encoder alive, so the caller can free it before loading the transformer.
func TestTextEmbedFreesEncoder(t *testing.T) {
	enc := &fakeT5{id: "t5", d: 2}
	wp := weak.Make(enc)
	c := ensureText(t, t.TempDir(), []string{"x"}, 4, enc, EncodeOptions{})
	enc = nil
	runtime.GC()
	if wp.Value() != nil {
		t.Fatal("the encoder is still reachable after EnsureTextEmbeds")
	}
	if _, err := c.Load([]string{"x", ""}); err != nil {
		t.Fatal(err)
	}
}

// TestTextEmbedErrors: bad arguments, encoder errors and cancellation.
func TestTextEmbedErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := EnsureTextEmbeds(context.Background(), dir, nil, 0, &fakeT5{id: "t5", d: 2}, EncodeOptions{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("max length 0: %v", err)
	}
	if _, err := EnsureTextEmbeds(context.Background(), dir, nil, 4, &fakeT5{d: 2}, EncodeOptions{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("empty identity: %v", err)
	}
	if _, err := EnsureTextEmbeds(context.Background(), dir, nil, 4, &fakeT5{id: "t5", d: 0}, EncodeOptions{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("zero width: %v", err)
	}
	if _, err := EnsureTextEmbeds(context.Background(), dir, nil, 4, &fakeT5{id: "t5", d: 2}, EncodeOptions{DType: 7}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad dtype: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := EnsureTextEmbeds(ctx, dir, []string{"a"}, 4, &fakeT5{id: "t5", d: 2}, EncodeOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// helperEnv makes the test binary, re-executed by the concurrent-process tests, act as
// another job writing the same entries: "text:<cache dir>" or "latent:<fixture dir>".
const helperEnv = "DATA_CACHE_WRITER"

// TestCacheWriterProcess is the body of a helper process: it rewrites the same entries many
// times over. It does nothing in a normal run.
func TestCacheWriterProcess(t *testing.T) {
	mode, dir, ok := strings.Cut(os.Getenv(helperEnv), ":")
	if !ok {
		t.Skip("helper process only")
	}
	switch mode {
	case "text":
		c := &TextEmbedCache{dir: dir, identity: "t5", maxLen: 16, dtype: Float16}
		for range 200 {
			if err := c.build(writerCaptions, &fakeT5{id: "t5", d: 64}); err != nil {
				t.Fatal(err)
			}
		}
	case "latent":
		// Alternating VAEs make every run rewrite every entry.
		l := latentFixtureAt(dir).loader(t)
		for i := range 20 {
			if _, err := EnsureLatents(context.Background(), l.LatentItems(), &fakeVAE{id: []string{"a", "b"}[i%2]}, EncodeOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// startWriters starts n helper processes in the given mode; each one's exit status arrives on
// the returned channel.
func startWriters(t *testing.T, n int, mode, dir string) chan error {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, n+4)
	for range n {
		cmd := exec.Command(exe, "-test.run=^TestCacheWriterProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+mode+":"+dir)
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			if err := cmd.Wait(); err != nil {
				done <- fmt.Errorf("%w: %s", err, out)
				return
			}
			done <- nil
		}()
	}
	return done
}

// raceUntilDone calls read until running writers have reported on done, failing the test on
// a writer's error or a read's.
func raceUntilDone(t *testing.T, done chan error, running int, read func() error) int {
	t.Helper()
	reads := 0
	for running > 0 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("writer: %v", err)
			}
			running--
		default:
		}
		if err := read(); err != nil {
			t.Fatalf("a reader saw a broken entry while writers raced: %v", err)
		}
		reads++
	}
	return reads
}

var writerCaptions = []string{"", "shared caption"}

// TestTextEmbedConcurrentProcesses: two processes (and this one's goroutines) writing the same
// entries at once never let a reader see a torn entry, and leave valid ones behind.
func TestTextEmbedConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	done := startWriters(t, 2, "text", dir)
	for range 2 {
		go func() {
			c := &TextEmbedCache{dir: dir, identity: "t5", maxLen: 16, dtype: Float16}
			var err error
			for range 100 {
				if err = c.build(writerCaptions, &fakeT5{id: "t5", d: 64}); err != nil {
					break
				}
			}
			done <- err
		}()
	}
	// Every read finds no file yet or a whole valid entry.
	reader := &TextEmbedCache{dir: dir, identity: "t5", maxLen: 16, dtype: Float16}
	reads := raceUntilDone(t, done, 4, func() error {
		if _, err := reader.Load(writerCaptions); err != nil && !errors.Is(err, ErrNotCached) {
			return err
		}
		return nil
	})
	c := ensureText(t, dir, writerCaptions, 16, &fakeT5{id: "t5", d: 64}, EncodeOptions{DType: Float16})
	if c.Stats() != (EncodeStats{Hits: 2}) {
		t.Fatalf("after the race: %+v (%d reads during it)", c.Stats(), reads)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".tmp-*")); len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

// TestLoaderCaptionsToTextCache: the loader's captions fill the text cache that its batches
// then read from.
func TestLoaderCaptionsToTextCache(t *testing.T) {
	f := newLatentFixture(t)
	l := f.loader(t)
	if caps := l.Captions(); !slices.Equal(caps, []string{"a", "b", "c"}) {
		t.Fatalf("captions %q", caps)
	}
	c := ensureText(t, filepath.Join(f.root, "text"), l.Captions(), 8, &fakeT5{id: "t5", d: 2}, EncodeOptions{})
	if c.Stats().Built != 4 {
		t.Fatalf("stats %+v", c.Stats())
	}
	if _, err := c.Load(firstBatch(t, l, 1).Captions); err != nil {
		t.Fatal(err)
	}
}
