package checkpoint

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sync"
)

// FS is every file-system operation the package performs, so that tests can fail any one
// of them (an fsync, a write with ENOSPC, a rename) and record their order.
type FS interface {
	MkdirAll(path string, perm fs.FileMode) error
	Mkdir(path string, perm fs.FileMode) error
	// Create makes a new file, failing if it exists.
	Create(path string) (WritableFile, error)
	// Open opens a file for reading without following a symlink in the last component.
	Open(path string) (ReadableFile, error)
	Lstat(path string) (fs.FileInfo, error)
	ReadDir(path string) ([]fs.DirEntry, error)
	Rename(oldpath, newpath string) error
	RemoveAll(path string) error
	// SyncDir fsyncs a directory so that entries created or renamed in it are durable.
	SyncDir(path string) error
}

// WritableFile is a file being written.
type WritableFile interface {
	io.Writer
	Sync() error
	Close() error
}

// ReadableFile is a file being read.
type ReadableFile interface {
	io.Reader
	io.ReaderAt
	io.Closer
	Stat() (fs.FileInfo, error)
}

// OSFS is the real file system.
type OSFS struct{}

// MkdirAll implements FS.
func (OSFS) MkdirAll(path string, perm fs.FileMode) error { return os.MkdirAll(path, perm) }

// Mkdir implements FS.
func (OSFS) Mkdir(path string, perm fs.FileMode) error { return os.Mkdir(path, perm) }

// Create implements FS.
func (OSFS) Create(path string) (WritableFile, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
}

// Open implements FS.
func (OSFS) Open(path string) (ReadableFile, error) {
	return os.OpenFile(path, os.O_RDONLY|noFollow, 0)
}

// Lstat implements FS.
func (OSFS) Lstat(path string) (fs.FileInfo, error) { return os.Lstat(path) }

// ReadDir implements FS.
func (OSFS) ReadDir(path string) ([]fs.DirEntry, error) { return os.ReadDir(path) }

// Rename implements FS.
func (OSFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

// RemoveAll implements FS.
func (OSFS) RemoveAll(path string) error { return os.RemoveAll(path) }

// SyncDir implements FS.
func (OSFS) SyncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync dir %s: %w", path, err)
	}
	return nil
}

// OpKind names a file-system operation recorded by FaultFS.
type OpKind string

// Operation kinds.
const (
	OpMkdirAll  OpKind = "mkdirall"
	OpMkdir     OpKind = "mkdir"
	OpCreate    OpKind = "create"
	OpWrite     OpKind = "write"
	OpSync      OpKind = "sync"
	OpClose     OpKind = "close"
	OpOpen      OpKind = "open"
	OpLstat     OpKind = "lstat"
	OpReadDir   OpKind = "readdir"
	OpRename    OpKind = "rename"
	OpRemoveAll OpKind = "removeall"
	OpSyncDir   OpKind = "syncdir"
)

// Op is one recorded operation. To is the new path of a rename.
type Op struct {
	Kind OpKind
	Path string
	To   string
}

// Mutating reports whether the operation changes the file system (reads are not).
func (o Op) Mutating() bool {
	switch o.Kind {
	case OpOpen, OpLstat, OpReadDir:
		return false
	}
	return true
}

// FaultFS wraps an FS, records every operation in order, and fails the ones Fault picks.
// A failed write still writes the first half of its buffer, as a real short write or a
// crash mid-write would.
type FaultFS struct {
	Base FS
	// Fault, when set, is called before each operation; a non-nil error fails it.
	Fault func(Op) error

	mu  sync.Mutex
	ops []Op
}

// NewFaultFS wraps base (OSFS when nil).
func NewFaultFS(base FS, fault func(Op) error) *FaultFS {
	if base == nil {
		base = OSFS{}
	}
	return &FaultFS{Base: base, Fault: fault}
}

// Ops returns a copy of the operations recorded so far.
func (f *FaultFS) Ops() []Op {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ops)
}

// Reset forgets the recorded operations.
func (f *FaultFS) Reset() {
	f.mu.Lock()
	f.ops = nil
	f.mu.Unlock()
}

func (f *FaultFS) do(op Op) error {
	f.mu.Lock()
	f.ops = append(f.ops, op)
	fault := f.Fault
	f.mu.Unlock()
	if fault != nil {
		if err := fault(op); err != nil {
			return &fs.PathError{Op: string(op.Kind), Path: op.Path, Err: err}
		}
	}
	return nil
}

// MkdirAll implements FS.
func (f *FaultFS) MkdirAll(path string, perm fs.FileMode) error {
	if err := f.do(Op{Kind: OpMkdirAll, Path: path}); err != nil {
		return err
	}
	return f.Base.MkdirAll(path, perm)
}

// Mkdir implements FS.
func (f *FaultFS) Mkdir(path string, perm fs.FileMode) error {
	if err := f.do(Op{Kind: OpMkdir, Path: path}); err != nil {
		return err
	}
	return f.Base.Mkdir(path, perm)
}

// Create implements FS.
func (f *FaultFS) Create(path string) (WritableFile, error) {
	if err := f.do(Op{Kind: OpCreate, Path: path}); err != nil {
		return nil, err
	}
	w, err := f.Base.Create(path)
	if err != nil {
		return nil, err
	}
	return &faultFile{fs: f, path: path, w: w}, nil
}

// Open implements FS.
func (f *FaultFS) Open(path string) (ReadableFile, error) {
	if err := f.do(Op{Kind: OpOpen, Path: path}); err != nil {
		return nil, err
	}
	return f.Base.Open(path)
}

// Lstat implements FS.
func (f *FaultFS) Lstat(path string) (fs.FileInfo, error) {
	if err := f.do(Op{Kind: OpLstat, Path: path}); err != nil {
		return nil, err
	}
	return f.Base.Lstat(path)
}

// ReadDir implements FS.
func (f *FaultFS) ReadDir(path string) ([]fs.DirEntry, error) {
	if err := f.do(Op{Kind: OpReadDir, Path: path}); err != nil {
		return nil, err
	}
	return f.Base.ReadDir(path)
}

// Rename implements FS.
func (f *FaultFS) Rename(oldpath, newpath string) error {
	if err := f.do(Op{Kind: OpRename, Path: oldpath, To: newpath}); err != nil {
		return err
	}
	return f.Base.Rename(oldpath, newpath)
}

// RemoveAll implements FS.
func (f *FaultFS) RemoveAll(path string) error {
	if err := f.do(Op{Kind: OpRemoveAll, Path: path}); err != nil {
		return err
	}
	return f.Base.RemoveAll(path)
}

// SyncDir implements FS.
func (f *FaultFS) SyncDir(path string) error {
	if err := f.do(Op{Kind: OpSyncDir, Path: path}); err != nil {
		return err
	}
	return f.Base.SyncDir(path)
}

type faultFile struct {
	fs   *FaultFS
	path string
	w    WritableFile
}

// Write implements WritableFile, failing (after a short write) when Fault says so.
func (ff *faultFile) Write(p []byte) (int, error) {
	if err := ff.fs.do(Op{Kind: OpWrite, Path: ff.path}); err != nil {
		n, _ := ff.w.Write(p[:len(p)/2])
		return n, err
	}
	return ff.w.Write(p)
}

// Sync implements WritableFile.
func (ff *faultFile) Sync() error {
	if err := ff.fs.do(Op{Kind: OpSync, Path: ff.path}); err != nil {
		return err
	}
	return ff.w.Sync()
}

// Close implements WritableFile.
func (ff *faultFile) Close() error {
	err := ff.fs.do(Op{Kind: OpClose, Path: ff.path})
	// The real file is always closed so a failed Close does not leak a descriptor.
	if cerr := ff.w.Close(); err == nil {
		err = cerr
	}
	return err
}

// isNotExist reports a missing path through any wrapping.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
