package configs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"simpletuner/internal/atomicfile"

	"simpletuner/internal/errmsg"
	"simpletuner/internal/jsondoc"
	"simpletuner/internal/safefile"
)

// encodeJSON renders a config the way SimpleTuner writes it: sorted keys, two-space
// indent, trailing newline, HTML not escaped (so "<token>" stays readable). Only the top
// levels are indented (jsondoc.Marshal): indenting every level let a small, deeply
// nested value grow into a file thousands of times its size.
func encodeJSON(v any) ([]byte, error) { return jsondoc.Marshal(v) }

// decodeJSON decodes one JSON document, keeping numbers as written (json.Number) so a
// stored "1e-4" or a large seed survives a load and save unchanged. Nesting is capped
// and nothing may follow the document (jsondoc.DecodeNumbers).
func decodeJSON(data []byte) (any, error) {
	var v any
	if err := jsondoc.DecodeNumbers(data, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// readJSON reads (see readOwn) and decodes a file. A missing file wraps fs.ErrNotExist.
func readJSON(path string) (any, error) {
	data, err := readOwn(path)
	if err != nil {
		return nil, err
	}
	v, err := decodeJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return v, nil
}

// File modes of everything the service writes. Configurations hold webhook secrets and
// paths, so, like the rest of the daemon's state, they are the daemon user's alone (the
// trainer runs as that user too).
const (
	fileMode fs.FileMode = 0o600
	dirMode  fs.FileMode = 0o700
)

// maxFileBytes caps the encoded size of a configuration file the service writes: far
// above any real configuration, and small enough that every later GET, list and job
// start reads it cheaply.
const maxFileBytes = 1 << 20

// writeFileAtomic replaces path with data so that a reader, or a crash at any moment,
// sees either the old file or the new one (internal/atomicfile). The file is fileMode;
// missing folders are dirMode.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return err
	}
	return atomicfile.Write(path, data, fileMode)
}

// writeJSONAtomic encodes v and writes it atomically; an encoding over maxFileBytes is
// refused with ErrTooLarge and nothing is written.
func writeJSONAtomic(path string, v any) error {
	data, err := encodeJSON(v)
	if err != nil {
		return err
	}
	if len(data) > maxFileBytes {
		return errmsg.New(ErrTooLarge, "%s would be %d bytes once written; a configuration file may be at most %d bytes (1 MiB): make it smaller",
			filepath.Base(path), len(data), maxFileBytes)
	}
	return writeFileAtomic(path, data)
}

// syncDir fsyncs a directory so that a rename inside it is durable (internal/atomicfile).
func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// firstByte returns the first non-space byte of a file (to tell a config object from a
// dataloader list without decoding it), or 0.
func firstByte(path string) byte {
	f, err := safefile.New(filepath.Dir(path)).Open(path, fileLimit)
	if err != nil {
		return 0
	}
	defer f.Close()
	buf := make([]byte, 512)
	n, _ := f.Read(buf)
	for _, c := range buf[:n] {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c
	}
	return 0
}

// dirReadable is the default instance_data_dir check: a directory we can list.
func dirReadable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errors.New("does not exist")
		}
		return errors.New("cannot be accessed")
	}
	if !st.IsDir() {
		return errors.New("not a directory")
	}
	f, err := os.Open(path)
	if err != nil {
		return errors.New("cannot be opened")
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
		return errors.New("cannot be listed")
	}
	return nil
}
