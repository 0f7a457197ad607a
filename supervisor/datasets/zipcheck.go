package datasets

import (
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"simpletuner/internal/errmsg"
	"strings"
	"unicode/utf8"
)

// Limits bound what one upload may do to the disk.
type Limits struct {
	// MaxFileBytes caps one uploaded file (default 5 GiB).
	MaxFileBytes int64
	// MaxEntries caps the entries of a zip archive (default 100 000, as SimpleTuner).
	MaxEntries int
	// MaxTotalBytes caps the uncompressed bytes one zip upload may extract (default
	// 10 GiB, the default upload cap): checked on the sizes the archive declares and again
	// on the bytes actually written.
	MaxTotalBytes int64
	// MaxRatio caps the compression ratio of each entry over RatioFloor bytes and of the
	// whole archive once it expands to more than RatioFloor bytes (default 200:1 above
	// 1 MiB): a bomb, not a dataset. Many small entries of zeros are a bomb too.
	MaxRatio   float64
	RatioFloor int64
	// MaxDepth caps the path components of a path or zip entry (default 32).
	MaxDepth int
	// MaxPixels caps width × height of an uploaded PNG, JPEG or GIF (default 100 MP).
	MaxPixels int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxFileBytes == 0 {
		l.MaxFileBytes = 5 << 30
	}
	if l.MaxEntries == 0 {
		l.MaxEntries = 100_000
	}
	if l.MaxTotalBytes == 0 {
		l.MaxTotalBytes = 10 << 30
	}
	if l.MaxRatio == 0 {
		l.MaxRatio = 200
	}
	if l.RatioFloor == 0 {
		l.RatioFloor = 1 << 20
	}
	if l.MaxDepth == 0 {
		l.MaxDepth = 32
	}
	if l.MaxPixels == 0 {
		l.MaxPixels = 100_000_000
	}
	return l
}

// Entry is what the archive check needs to know about one zip entry.
type Entry struct {
	Name         string
	Mode         fs.FileMode
	Compressed   uint64
	Uncompressed uint64
}

// CheckEntryName rejects a zip entry name that could write outside the extraction
// directory or confuse a reader: absolute paths, drive letters, backslashes, "..",
// control characters, invalid UTF-8, empty components, too deep or too long names.
// A trailing "/" (a directory entry) is allowed.
func CheckEntryName(name string, maxDepth int) error {
	n := strings.TrimSuffix(name, "/")
	switch {
	case n == "":
		return fmt.Errorf("empty name")
	case !utf8.ValidString(n):
		return fmt.Errorf("name is not valid UTF-8")
	case hasControl(n):
		return fmt.Errorf("control characters in the name")
	case strings.Contains(n, `\`):
		return fmt.Errorf("backslash in the name")
	case strings.HasPrefix(n, "/"):
		return fmt.Errorf("absolute path")
	case len(n) >= 2 && n[1] == ':' && (n[0]|0x20 >= 'a' && n[0]|0x20 <= 'z'):
		return fmt.Errorf("drive letter")
	}
	parts := strings.Split(n, "/")
	if len(parts) > maxDepth {
		return fmt.Errorf("more than %d path components", maxDepth)
	}
	for _, p := range parts {
		switch {
		case p == "..":
			return fmt.Errorf("'..' in the path")
		case p == "" || p == ".":
			return fmt.Errorf("empty or '.' path component")
		case len(p) > 255:
			return fmt.Errorf("a path component is longer than 255 bytes")
		}
	}
	return nil
}

// ExtractBudget is the most bytes an archive of size bytes may extract: MaxTotalBytes,
// and no more than MaxRatio times the archive (RatioFloor at least). Extraction counts
// the bytes it writes against it, so a header that understates its entry's size, or
// entries that share their compressed data, cannot extract more than CheckArchive
// allowed.
func ExtractBudget(size int64, l Limits) int64 {
	l = l.withDefaults()
	byRatio := l.MaxRatio * float64(max(size, 0))
	if byRatio < float64(l.RatioFloor) {
		byRatio = float64(l.RatioFloor)
	}
	if byRatio >= float64(l.MaxTotalBytes) {
		return l.MaxTotalBytes
	}
	return int64(byRatio)
}

// CheckArchive decides whether an archive of size bytes may be extracted at all. Any bad
// entry rejects the whole archive, with an error naming it; so does an archive whose
// entries together expand more than MaxRatio:1 (measured against the smaller of the
// archive's size and its entries' compressed sizes, which entries sharing data inflate).
func CheckArchive(entries []Entry, size int64, l Limits) error {
	l = l.withDefaults()
	if len(entries) > l.MaxEntries {
		return errmsg.New(ErrArchive, "Archive rejected: %d entries (at most %d)", len(entries), l.MaxEntries)
	}
	var total, compressed uint64
	for _, e := range entries {
		if err := CheckEntryName(e.Name, l.MaxDepth); err != nil {
			return errmsg.New(ErrArchive, "Archive rejected: entry %q: %v", e.Name, err)
		}
		isDir := strings.HasSuffix(e.Name, "/") || e.Mode.IsDir()
		if !isDir && !e.Mode.IsRegular() {
			return errmsg.New(ErrArchive, "Archive rejected: entry %q is a %s, not a regular file", e.Name, modeWord(e.Mode))
		}
		if isDir {
			continue
		}
		total += e.Uncompressed
		compressed += e.Compressed
		if total > uint64(l.MaxTotalBytes) {
			return errmsg.New(ErrArchive, "Archive rejected: more than %d bytes uncompressed (at entry %q)", l.MaxTotalBytes, e.Name)
		}
		if e.Uncompressed > uint64(l.RatioFloor) {
			if e.Compressed == 0 || float64(e.Uncompressed)/float64(e.Compressed) > l.MaxRatio {
				return errmsg.New(ErrArchive, "Archive rejected: entry %q compresses more than %.0f:1 (%d bytes from %d)", e.Name, l.MaxRatio, e.Uncompressed, e.Compressed)
			}
		}
	}
	if total > uint64(l.RatioFloor) {
		from := min(compressed, uint64(max(size, 0)))
		if from == 0 || float64(total)/float64(from) > l.MaxRatio {
			return errmsg.New(ErrArchive, "Archive rejected: its entries expand more than %.0f:1 (%d bytes from %d)", l.MaxRatio, total, from)
		}
	}
	return nil
}

func modeWord(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeDevice != 0:
		return "device"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file"
}

// directoryCount reads the entry count and central-directory size from the end of a
// zip file without parsing the directory, so an archive claiming a million entries is
// refused before archive/zip allocates a header for each.
func directoryCount(r io.ReaderAt, size int64) (count, dirSize uint64, ok bool) {
	const eocdLen = 22
	if size < eocdLen {
		return 0, 0, false
	}
	tail := int64(eocdLen + 65535)
	if tail > size {
		tail = size
	}
	buf := make([]byte, tail)
	if _, err := r.ReadAt(buf, size-tail); err != nil && err != io.EOF {
		return 0, 0, false
	}
	for i := len(buf) - eocdLen; i >= 0; i-- {
		if binary.LittleEndian.Uint32(buf[i:]) != 0x06054b50 {
			continue
		}
		count = uint64(binary.LittleEndian.Uint16(buf[i+10:]))
		dirSize = uint64(binary.LittleEndian.Uint32(buf[i+12:]))
		if count != 0xffff && dirSize != 0xffffffff {
			return count, dirSize, true
		}
		// zip64: the locator sits just before the end record.
		loc := i - 20
		if loc < 0 || binary.LittleEndian.Uint32(buf[loc:]) != 0x07064b50 {
			return 0, 0, false
		}
		off := int64(binary.LittleEndian.Uint64(buf[loc+8:]))
		rec := make([]byte, 56)
		if off < 0 || off+56 > size {
			return 0, 0, false
		}
		if _, err := r.ReadAt(rec, off); err != nil || binary.LittleEndian.Uint32(rec) != 0x06064b50 {
			return 0, 0, false
		}
		return binary.LittleEndian.Uint64(rec[32:]), binary.LittleEndian.Uint64(rec[40:]), true
	}
	return 0, 0, false
}
