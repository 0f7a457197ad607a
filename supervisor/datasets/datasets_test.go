package datasets

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckEntryName(t *testing.T) {
	tests := []struct {
		name, err string
	}{
		{"a.png", ""},
		{"dir/", ""},
		{"a/b/c.txt", ""},
		{"a..b.png", ""}, // SimpleTuner's substring check rejects this; it is harmless
		{"", "empty name"},
		{"/", "empty name"},
		{"../x", "'..' in the path"},
		{"a/../../x", "'..' in the path"},
		{"/abs", "absolute path"},
		{`..\..\x`, "backslash in the name"},
		{"C:/x", "drive letter"},
		{"c:x", "drive letter"},
		{"a\x00b", "control characters in the name"},
		{"a\x1bb", "control characters in the name"},
		{"a//b", "empty or '.' path component"},
		{"./a", "empty or '.' path component"},
		{"\xff", "name is not valid UTF-8"},
		{strings.Repeat("d/", 32) + "x", "more than 32 path components"},
		{strings.Repeat("n", 256), "a path component is longer than 255 bytes"},
	}
	for _, tt := range tests {
		err := CheckEntryName(tt.name, 32)
		if (err == nil) != (tt.err == "") || err != nil && err.Error() != tt.err {
			t.Errorf("CheckEntryName(%q) = %v, want %q", tt.name, err, tt.err)
		}
	}
}

func TestCheckArchive(t *testing.T) {
	l := Limits{MaxEntries: 3, MaxTotalBytes: 100 << 20}
	reg := fs.FileMode(0o644)
	// 1 MiB entries of zeros, each about 1 KiB compressed: no entry is over the per-entry
	// floor, the archive as a whole is a bomb.
	zeros := make([]Entry, 3)
	for i := range zeros {
		zeros[i] = Entry{Name: fmt.Sprintf("z%d.txt", i), Mode: reg, Compressed: 1 << 10, Uncompressed: 1 << 20}
	}
	tests := []struct {
		name    string
		entries []Entry
		size    int64 // the archive's bytes (default: the entries' compressed sizes plus 100 each)
		err     string
	}{
		{"fine", []Entry{{Name: "a/", Mode: fs.ModeDir}, {Name: "a/b.png", Mode: reg, Compressed: 10, Uncompressed: 20}}, 0, ""},
		{"too many", []Entry{{Name: "a", Mode: reg}, {Name: "b", Mode: reg}, {Name: "c", Mode: reg}, {Name: "d", Mode: reg}}, 0, "Archive rejected: 4 entries (at most 3)"},
		{"symlink", []Entry{{Name: "l", Mode: fs.ModeSymlink}}, 0, `Archive rejected: entry "l" is a symlink, not a regular file`},
		{"pipe", []Entry{{Name: "p", Mode: fs.ModeNamedPipe}}, 0, `Archive rejected: entry "p" is a named pipe, not a regular file`},
		{"total", []Entry{{Name: "a", Mode: reg, Compressed: 60 << 20, Uncompressed: 60 << 20}, {Name: "b", Mode: reg, Compressed: 60 << 20, Uncompressed: 60 << 20}},
			0, `Archive rejected: more than 104857600 bytes uncompressed (at entry "b")`},
		{"ratio", []Entry{{Name: "z", Mode: reg, Compressed: 10 << 10, Uncompressed: 10 << 20}}, 0, `Archive rejected: entry "z" compresses more than 200:1 (10485760 bytes from 10240)`},
		{"small files may compress well", []Entry{{Name: "z", Mode: reg, Compressed: 1, Uncompressed: 1 << 19}}, 0, ""},
		{"zero compressed size", []Entry{{Name: "z", Mode: reg, Compressed: 0, Uncompressed: 2 << 20}}, 0, `Archive rejected: entry "z" compresses more than 200:1 (2097152 bytes from 0)`},
		{"bad name", []Entry{{Name: "../x", Mode: reg}}, 0, `Archive rejected: entry "../x": '..' in the path`},
		{"many small entries of zeros", zeros, 0, `Archive rejected: its entries expand more than 200:1 (3145728 bytes from 3072)`},
		{"shared compressed data: the archive's size counts", []Entry{{Name: "a", Mode: reg, Compressed: 1 << 20, Uncompressed: 1 << 20}, {Name: "b", Mode: reg, Compressed: 1 << 20, Uncompressed: 1 << 20}},
			4 << 10, `Archive rejected: its entries expand more than 200:1 (2097152 bytes from 4096)`},
		{"a total under the floor may compress well", []Entry{{Name: "a", Mode: reg, Compressed: 10, Uncompressed: 1 << 19}, {Name: "b", Mode: reg, Compressed: 10, Uncompressed: 1 << 19}}, 0, ""},
		{"images barely compress", []Entry{{Name: "a.png", Mode: reg, Compressed: 3 << 20, Uncompressed: 3 << 20}, {Name: "a.txt", Mode: reg, Compressed: 40, Uncompressed: 50}}, 0, ""},
	}
	for _, tt := range tests {
		size := tt.size
		if size == 0 {
			for _, e := range tt.entries {
				size += int64(e.Compressed) + 100
			}
		}
		err := CheckArchive(tt.entries, size, l)
		if (err == nil) != (tt.err == "") || err != nil && (err.Error() != tt.err || !errors.Is(err, ErrArchive)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.err)
		}
	}
}

func TestExtractBudget(t *testing.T) {
	l := Limits{MaxTotalBytes: 100 << 20}
	for _, tt := range []struct {
		size, want int64
	}{
		{0, 1 << 20},           // the ratio floor: a tiny archive may still extract 1 MiB
		{1 << 10, 1 << 20},     // 200 KiB by ratio, the floor is larger
		{10 << 10, 2000 << 10}, // 200:1
		{1 << 20, 100 << 20},   // 200 MiB by ratio, capped by MaxTotalBytes
		{-1, 1 << 20},          // nonsense sizes count as empty
	} {
		if got := ExtractBudget(tt.size, l); got != tt.want {
			t.Errorf("ExtractBudget(%d) = %d, want %d", tt.size, got, tt.want)
		}
	}
	if got := ExtractBudget(1<<40, Limits{}); got != 10<<30 {
		t.Errorf("default cap: %d, want 10 GiB", got)
	}
}

func TestCheckNames(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  string
	}{
		{"ok.png", ""}, {"OK.JPEG", ""}, {"cap.txt", ""}, {"meta.jsonl", ""},
		{"a/b.png", "Invalid filename: a/b.png"}, {`a\b.png`, `Invalid filename: "a\\b.png"`}, {".x.png", "Invalid filename: .x.png"},
		{"..", "Invalid filename: .."}, {"", "Invalid filename: "}, {"a\nb.png", `Invalid filename: "a\nb.png"`},
		{"run.sh", "Unsupported file type: run.sh"}, {"noext", "Unsupported file type: noext"}, {"x.zip", "Unsupported file type: x.zip"},
	} {
		err := CheckFileName(tt.name)
		if (err == nil) != (tt.err == "") || err != nil && (err.Error() != tt.err || !errors.Is(err, ErrSkipped)) {
			t.Errorf("CheckFileName(%q) = %v, want %q", tt.name, err, tt.err)
		}
	}
}

// U8: a killed extraction leaves only the staging folder, which the next start clears.
func TestStagingClearedAtStart(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, stagingDir, "deadbeef", "half"), 0o750)
	os.WriteFile(filepath.Join(dir, stagingDir, "deadbeef.zip"), []byte("partial"), 0o600)
	s.Close()
	s, err = New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ents, _ := os.ReadDir(filepath.Join(dir, stagingDir)); len(ents) != 0 {
		t.Errorf("staging holds %v after restart", ents)
	}
}

func TestDirectoryCount(t *testing.T) {
	var buf bytes.Buffer
	if err := newZip(&buf, 7); err != nil {
		t.Fatal(err)
	}
	n, _, ok := directoryCount(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if !ok || n != 7 {
		t.Errorf("directoryCount = %d, %v; want 7", n, ok)
	}
	if _, _, ok := directoryCount(bytes.NewReader([]byte("short")), 5); ok {
		t.Error("garbage parsed as a zip")
	}
}

func TestReadForm(t *testing.T) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("target_path", "a/b")
	w, _ := mw.CreateFormFile("files[]", "x.png")
	w.Write([]byte("PNGDATA"))
	mw.WriteField("overwrite", "true")
	mw.Close()
	var got []string
	err := ReadForm(mw.FormDataContentType(), &buf, FormLimits{}, FormHandler{
		Field: func(k, v string) error { got = append(got, k+"="+v); return nil },
		File: func(f, name string, r io.Reader) error {
			b, _ := io.ReadAll(r)
			got = append(got, f+":"+name+":"+string(b))
			return nil
		},
	})
	want := "target_path=a/b|files[]:x.png:PNGDATA|overwrite=true"
	if err != nil || strings.Join(got, "|") != want {
		t.Errorf("ReadForm = %q, %v; want %q", got, err, want)
	}
	err = ReadForm("application/x-www-form-urlencoded", strings.NewReader("parent_path=&folder_name=x"), FormLimits{}, FormHandler{
		Field: func(k, v string) error { got = append(got, k+"="+v); return nil }})
	if err != nil {
		t.Error(err)
	}
	for _, ct := range []string{"", "text/plain", "multipart/form-data"} {
		if err := ReadForm(ct, strings.NewReader(""), FormLimits{}, FormHandler{Field: func(string, string) error { return nil }}); !errors.Is(err, ErrInvalid) {
			t.Errorf("content type %q: %v", ct, err)
		}
	}
	// Part-count cap.
	buf.Reset()
	mw = multipart.NewWriter(&buf)
	for range 5 {
		mw.WriteField("x", "y")
	}
	mw.Close()
	if err := ReadForm(mw.FormDataContentType(), &buf, FormLimits{MaxParts: 3}, FormHandler{Field: func(string, string) error { return nil }}); err == nil || err.Error() != "Too many form parts (at most 3)" {
		t.Errorf("part cap: %v", err)
	}
}

func FuzzReadForm(f *testing.F) {
	f.Add("multipart/form-data; boundary=XX", []byte("--XX\r\nContent-Disposition: form-data; name=\"target_path\"\r\n\r\na\r\n--XX\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n\r\nDATA\r\n--XX--\r\n"))
	f.Add("application/x-www-form-urlencoded", []byte("a=b&c=%zz"))
	f.Add("multipart/form-data; boundary=", []byte("--\r\n"))
	f.Add("multipart/form-data; boundary=a", []byte("--a\r\nContent-Disposition: form-data; name=\"f\"; filename=\"../../x\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ\r\n--a--"))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		fields := 0
		err := ReadForm(ct, bytes.NewReader(body), FormLimits{MaxParts: 50, MaxFieldBytes: 1 << 10}, FormHandler{
			Field: func(k, v string) error {
				fields++
				if len(v) > 1<<10 {
					t.Fatalf("field %q over the cap: %d bytes", k, len(v))
				}
				return nil
			},
			File: func(_, name string, r io.Reader) error {
				_ = CheckFileName(name)
				_, err := io.Copy(io.Discard, r)
				return err
			},
		})
		if err != nil && !errors.Is(err, ErrInvalid) {
			// Only parse errors may come back: the handler and the body never fail here.
			if !strings.Contains(err.Error(), "multipart") {
				t.Fatalf("unexpected error kind: %v", err)
			}
		}
		if fields > 50 {
			t.Fatalf("%d fields past the part cap", fields)
		}
	})
}

func FuzzCheckEntryName(f *testing.F) {
	for _, s := range []string{"a.png", "../x", `C:\x`, "a/./b", "a\x00", "dir/", "//", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckEntryName(name, 32) != nil {
			return
		}
		// Whatever passes must stay inside the extraction folder.
		n := strings.TrimSuffix(name, "/")
		if !filepath.IsLocal(n) || filepath.Clean(n) != n || strings.ContainsAny(n, "\\\x00") {
			t.Fatalf("accepted %q, which is not a clean local path", name)
		}
	})
}
