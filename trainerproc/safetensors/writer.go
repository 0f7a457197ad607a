package safetensors

import (
	"fmt"
	"os"
	"path/filepath"
	"simpletuner/internal/atomicfile"
)

// Spec describes a tensor to be written: everything but its bytes, so that the header can be
// written before any data exists in memory.
type Spec struct {
	Name  string
	DType DType
	Shape []int
}

// FileWriter streams a safetensors file to disk tensor by tensor. The header is computed from
// the specs up front; each tensor's bytes then go to their final offset in a temporary file
// in the target directory, so the file is never assembled in memory. Commit makes it durable
// and atomically visible under its name: fsync, rename, fsync of the directory. Until then
// (or after Abort) no file exists under the final name.
type FileWriter struct {
	path     string
	f        *os.File
	start    int64
	layout   map[string]TensorInfo
	written  map[string]bool
	finished bool
}

// Create starts writing path with the given tensors (stored in the reference writer's
// order: descending dtype, then name) and metadata (nil for none).
func Create(path string, specs []Spec, metadata map[string]string) (*FileWriter, error) {
	head, layout, err := encodeSpecs(specs, metadata)
	if err != nil {
		return nil, err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	w := &FileWriter{path: path, f: f, start: int64(len(head)), layout: make(map[string]TensorInfo, len(layout)), written: map[string]bool{}}
	for _, ti := range layout {
		w.layout[ti.Name] = ti
	}
	var dataLen int64
	if n := len(layout); n > 0 {
		dataLen = layout[n-1].End
	}
	// Sizing the file first lets tensors arrive in any order and makes a full disk fail here
	// on filesystems that allocate eagerly rather than halfway through.
	if err := f.Truncate(int64(len(head)) + dataLen); err != nil {
		w.Abort()
		return nil, fmt.Errorf("safetensors: size %s: %w", path, err)
	}
	if _, err := f.WriteAt(head, 0); err != nil {
		w.Abort()
		return nil, fmt.Errorf("safetensors: write header of %s: %w", path, err)
	}
	return w, nil
}

// slot returns the layout of a tensor that has not been written yet.
func (w *FileWriter) slot(name string) (TensorInfo, error) {
	if w.finished {
		return TensorInfo{}, fmt.Errorf("%w: writer for %s is finished", ErrInvalid, w.path)
	}
	ti, ok := w.layout[name]
	if !ok {
		return TensorInfo{}, fmt.Errorf("%w: %q was not declared", ErrNotFound, name)
	}
	if w.written[name] {
		return TensorInfo{}, fmt.Errorf("%w: tensor %q written twice", ErrInvalid, name)
	}
	return ti, nil
}

// WriteTensor stores the raw little-endian bytes of a declared tensor.
func (w *FileWriter) WriteTensor(name string, data []byte) error {
	ti, err := w.slot(name)
	if err != nil {
		return err
	}
	if int64(len(data)) != ti.Size() {
		return fmt.Errorf("%w: tensor %q needs %d bytes, got %d", ErrInvalid, name, ti.Size(), len(data))
	}
	if _, err := w.f.WriteAt(data, w.start+ti.Begin); err != nil {
		return fmt.Errorf("safetensors: write tensor %q: %w", name, err)
	}
	w.written[name] = true
	return nil
}

// WriteFloat32 stores float32 values as the tensor's declared dtype (F32, F64, F16 or BF16,
// rounding to nearest even where it narrows), encoding a chunk at a time so that no encoded
// copy of the whole tensor is built.
func (w *FileWriter) WriteFloat32(name string, v []float32) error {
	ti, err := w.slot(name)
	if err != nil {
		return err
	}
	if !floatType(ti.DType) {
		return fmt.Errorf("%w: tensor %q: no float32 conversion to %s", ErrUnsupported, name, ti.DType)
	}
	if len(v) != ti.Numel() {
		return fmt.Errorf("%w: tensor %q has %d elements, got %d values", ErrInvalid, name, ti.Numel(), len(v))
	}
	es := ti.DType.Size()
	perChunk := max(chunkBytes/es, 1)
	buf := make([]byte, min(len(v), perChunk)*es)
	off := w.start + ti.Begin
	for done := 0; done < len(v); {
		n := min(len(v)-done, perChunk)
		raw := buf[:n*es]
		encodeFloat32(ti.DType, v[done:done+n], raw)
		if _, err := w.f.WriteAt(raw, off); err != nil {
			return fmt.Errorf("safetensors: write tensor %q: %w", name, err)
		}
		done += n
		off += int64(len(raw))
	}
	w.written[name] = true
	return nil
}

// Commit checks every declared tensor was written, then fsyncs the file, renames it over
// path and fsyncs the directory so the rename survives a crash. On error the temporary file
// is removed.
func (w *FileWriter) Commit() error {
	if w.finished {
		return fmt.Errorf("%w: writer for %s is finished", ErrInvalid, w.path)
	}
	for name := range w.layout {
		if !w.written[name] {
			w.Abort()
			return fmt.Errorf("%w: tensor %q was declared but never written to %s", ErrInvalid, name, w.path)
		}
	}
	tmp := w.f.Name()
	if err := w.f.Sync(); err != nil {
		w.Abort()
		return fmt.Errorf("safetensors: fsync %s: %w", tmp, err)
	}
	w.finished = true
	if err := w.f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("safetensors: close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, w.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("safetensors: %w", err)
	}
	return syncDir(filepath.Dir(w.path))
}

// Abort discards the temporary file; it is a no-op after Commit or a previous Abort.
func (w *FileWriter) Abort() {
	if w.finished {
		return
	}
	w.finished = true
	tmp := w.f.Name()
	w.f.Close()
	os.Remove(tmp)
}

// syncDir fsyncs a directory so that a rename inside it is durable (internal/atomicfile).
func syncDir(dir string) error {
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("safetensors: fsync %s: %w", dir, err)
	}
	return nil
}
