package api

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"simpletuner/supervisor/datasets"
)

// part is one multipart field: a text value, or a file when filename is set.
type part struct {
	field, value, filename string
	data                   []byte
}

func multipartBody(t *testing.T, parts ...part) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		if p.filename == "" {
			if err := mw.WriteField(p.field, p.value); err != nil {
				t.Fatal(err)
			}
			continue
		}
		w, err := mw.CreateFormFile(p.field, p.filename)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p.data)
	}
	mw.Close()
	return &buf, mw.FormDataContentType()
}

func (fh *fileHarness) form(path, cookie string, parts ...part) resp {
	fh.t.Helper()
	body, ct := multipartBody(fh.t, parts...)
	return fh.do(req{method: "POST", path: path, cookie: cookie, body: body, header: map[string]string{"Content-Type": ct}})
}

func pngBytes(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zipEntry describes one entry of a generated archive.
type zipEntry struct {
	name string
	data []byte
	mode fs.FileMode // 0: regular 0644
	// declared, when set, is written as the uncompressed size instead of len(data) (a
	// header that lies).
	declared uint64
}

func makeZip(t *testing.T, entries ...zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		if e.declared != 0 {
			h := &zip.FileHeader{Name: e.name, Method: zip.Store, CRC32: crc32.ChecksumIEEE(e.data),
				CompressedSize64: uint64(len(e.data)), UncompressedSize64: e.declared}
			w, err := zw.CreateRaw(h)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(e.data)
			continue
		}
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(e.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tree lists every path under dir with its type and size, following no symlinks.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, _ := d.Info()
		out = append(out, fmt.Sprintf("%s %v %d", strings.TrimPrefix(p, dir), d.Type(), info.Size()))
		return nil
	})
	sort.Strings(out)
	return out
}

func equalTrees(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

func (fh *fileHarness) mkdir(cookie, parent, name string) {
	fh.t.Helper()
	res := fh.form("/api/datasets/folders", cookie, part{field: "parent_path", value: parent}, part{field: "folder_name", value: name})
	if res.code != 200 {
		fh.t.Fatalf("mkdir %s/%s: %d %s", parent, name, res.code, res.body)
	}
}

// TestSeedUploadCommands runs the tutorial's three upload commands: folder, zip,
// individual files with files[].
func TestSeedUploadCommands(t *testing.T) {
	fh := newFileHarness(t, Config{}, datasets.Limits{})
	cookie, _ := fh.setup()
	res := fh.form("/api/datasets/folders", cookie, part{field: "parent_path", value: fh.datasetsDir}, part{field: "folder_name", value: "pixart-upload"})
	var fr datasets.FolderResult
	res.json(t, &fr)
	if res.code != 200 || !fr.Success || fr.Path != filepath.Join(fh.datasetsDir, "pixart-upload") || fr.Name != "pixart-upload" {
		t.Fatalf("folders: %d %s", res.code, res.body)
	}
	target := fh.datasetsDir + "/pixart-upload"
	z := makeZip(t, zipEntry{name: "img/a.png", data: pngBytes(t, 8, 8)}, zipEntry{name: "img/a.txt", data: []byte("a cat")},
		zipEntry{name: "notes.exe", data: []byte("MZ")}, zipEntry{name: "__MACOSX/._a.png", data: []byte("x")})
	res = fh.form("/api/datasets/upload/zip", cookie, part{field: "target_path", value: target}, part{field: "file", filename: "dataset.zip", data: z})
	var ur datasets.UploadResult
	res.json(t, &ur)
	if res.code != 200 || !ur.Success || ur.FilesUploaded != 2 || ur.TargetPath != target {
		t.Fatalf("zip: %d %s", res.code, res.body)
	}
	if !contains(ur.Errors, "Unsupported file type: notes.exe") {
		t.Errorf("zip errors = %q", ur.Errors)
	}
	res = fh.form("/api/datasets/upload", cookie, part{field: "target_path", value: target},
		part{field: "files[]", filename: "image001.png", data: pngBytes(t, 4, 4)}, part{field: "files[]", filename: "image001.txt", data: []byte("a dog")})
	res.json(t, &ur)
	if res.code != 200 || !ur.Success || ur.FilesUploaded != 2 {
		t.Fatalf("upload: %d %s", res.code, res.body)
	}
	for _, f := range []string{"img/a.png", "img/a.txt", "image001.png", "image001.txt"} {
		if _, err := os.Stat(filepath.Join(fh.datasetsDir, "pixart-upload", f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	// The field name "files" works too; an existing name is not overwritten without the flag.
	res = fh.form("/api/datasets/upload", cookie, part{field: "target_path", value: "pixart-upload"}, part{field: "files", filename: "image001.txt", data: []byte("new")})
	res.json(t, &ur)
	if ur.Success || ur.FilesSkipped != 1 || ur.Errors[0] != "File already exists: image001.txt (send overwrite=true to replace it)" {
		t.Errorf("no-overwrite: %s", res.body)
	}
	res = fh.form("/api/datasets/upload", cookie, part{field: "target_path", value: "pixart-upload"}, part{field: "overwrite", value: "true"}, part{field: "files", filename: "image001.txt", data: []byte("new")})
	if b, _ := os.ReadFile(filepath.Join(fh.datasetsDir, "pixart-upload", "image001.txt")); string(b) != "new" || res.code != 200 {
		t.Errorf("overwrite: %d %s, file %q", res.code, res.body, b)
	}
	// A second zip into the now non-empty folder merges and renames collisions.
	res = fh.form("/api/datasets/upload/zip", cookie, part{field: "target_path", value: target}, part{field: "file", filename: "again.zip", data: makeZip(t, zipEntry{name: "img/a.txt", data: []byte("b")})})
	if b, err := os.ReadFile(filepath.Join(fh.datasetsDir, "pixart-upload", "img", "a_1.txt")); err != nil || string(b) != "b" || res.code != 200 {
		t.Errorf("collision rename: %d %s (%v)", res.code, res.body, err)
	}
	res = fh.do(req{method: "GET", path: "/api/datasets/browse?path=pixart-upload", cookie: cookie})
	var l datasets.Listing
	res.json(t, &l)
	if res.code != 200 || len(l.Entries) != 3 || l.Entries[0].Name != "img" || !l.Entries[0].IsDir {
		t.Errorf("browse: %d %s", res.code, res.body)
	}
	if fh.validated.Load() == 0 {
		t.Error("nothing validated against the OpenAPI document")
	}
}

// U1, U2, U4: bad archives are rejected whole, nothing is written, the staging area is
// left empty.
func TestZipRejected(t *testing.T) {
	fh := newFileHarness(t, Config{}, datasets.Limits{MaxEntries: 50, MaxDepth: 32})
	cookie, _ := fh.setup()
	fh.mkdir(cookie, "", "t")
	good := zipEntry{name: "ok.png", data: pngBytes(t, 2, 2)}
	bomb := bytes.Repeat([]byte{0}, 20<<20)
	many := []zipEntry{}
	for i := range 51 {
		many = append(many, zipEntry{name: fmt.Sprintf("f%d.txt", i), data: []byte("x")})
	}
	zeros := []zipEntry{}
	for i := range 20 {
		zeros = append(zeros, zipEntry{name: fmt.Sprintf("z%d.txt", i), data: make([]byte, 1<<20)})
	}
	tests := []struct {
		name    string
		entries []zipEntry
		want    string
	}{
		{"U1 dotdot", []zipEntry{good, {name: "../x.txt", data: []byte("x")}}, `entry "../x.txt": '..' in the path`},
		{"U1 absolute", []zipEntry{good, {name: "/abs.txt", data: []byte("x")}}, `entry "/abs.txt": absolute path`},
		{"U1 backslashes", []zipEntry{good, {name: `..\..\x.txt`, data: []byte("x")}}, `backslash in the name`},
		{"U1 drive letter", []zipEntry{good, {name: "C:/x.txt", data: []byte("x")}}, `entry "C:/x.txt": drive letter`},
		{"U1 nested dotdot", []zipEntry{good, {name: "a/../../x.txt", data: []byte("x")}}, `'..' in the path`},
		{"U1 NUL", []zipEntry{good, {name: "a\x00.txt", data: []byte("x")}}, `control characters in the name`},
		{"U1 newline", []zipEntry{good, {name: "a\nb.txt", data: []byte("x")}}, `entry "a\nb.txt": control characters`},
		{"U2 symlink", []zipEntry{good, {name: "link", data: []byte("/etc"), mode: fs.ModeSymlink | 0o777}, {name: "link/passwd.txt", data: []byte("x")}}, `entry "link" is a symlink, not a regular file`},
		{"U2 dotdot symlink", []zipEntry{{name: "up", data: []byte(".."), mode: fs.ModeSymlink | 0o777}}, `entry "up" is a symlink`},
		{"U2 device", []zipEntry{{name: "dev", data: nil, mode: fs.ModeDevice | 0o600}}, `is a device`},
		{"U4 ratio bomb", []zipEntry{{name: "zeros.txt", data: bomb}}, `entry "zeros.txt" compresses more than 200:1`},
		{"U4 lying header", []zipEntry{{name: "small.txt", data: bytes.Repeat([]byte("y"), 4096), declared: 10}}, `entry "small.txt"`},
		{"U4 entry count", many, `51 entries (at most 50)`},
		{"U4 many 1 MiB entries of zeros", zeros, `its entries expand more than 200:1`},
		{"U4 deep path", []zipEntry{{name: strings.Repeat("d/", 40) + "x.txt", data: []byte("x")}}, `more than 32 path components`},
		{"U4 long name", []zipEntry{{name: strings.Repeat("n", 300) + ".txt", data: []byte("x")}}, `longer than 255 bytes`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, beforeParent := tree(t, fh.datasetsDir), tree(t, fh.root+"/config")
			res := fh.form("/api/datasets/upload/zip", cookie, part{field: "target_path", value: "t"}, part{field: "file", filename: "x.zip", data: makeZip(t, tt.entries...)})
			if res.code != 400 || !strings.Contains(res.detail(), tt.want) {
				t.Fatalf("%d %s; want 400 containing %q", res.code, res.body, tt.want)
			}
			if after := tree(t, fh.datasetsDir); !equalTrees(before, after) {
				t.Errorf("datasets dir changed:\nbefore %q\nafter  %q", before, after)
			}
			if after := tree(t, fh.root+"/config"); !equalTrees(beforeParent, after) {
				t.Error("a directory outside the datasets dir changed")
			}
		})
	}
	// U4: a nested zip is not extracted (skipped as an unsupported type).
	inner := makeZip(t, zipEntry{name: "deep.png", data: pngBytes(t, 2, 2)})
	res := fh.form("/api/datasets/upload/zip", cookie, part{field: "target_path", value: "t"}, part{field: "file", filename: "x.zip", data: makeZip(t, good, zipEntry{name: "inner.zip", data: inner})})
	if res.code != 200 || !strings.Contains(string(res.body), "Unsupported file type: inner.zip") {
		t.Errorf("nested zip: %d %s", res.code, res.body)
	}
	if _, err := os.Stat(filepath.Join(fh.datasetsDir, "t", "deep.png")); err == nil {
		t.Error("nested archive was extracted")
	}
	// Not a zip at all / wrong name.
	res = fh.form("/api/datasets/upload/zip", cookie, part{field: "target_path", value: "t"}, part{field: "file", filename: "x.zip", data: []byte("not a zip")})
	if res.code != 400 || res.detail() != "Invalid or corrupted zip file" {
		t.Errorf("garbage: %d %s", res.code, res.body)
	}
	res = fh.form("/api/datasets/upload/zip", cookie, part{field: "target_path", value: "t"}, part{field: "file", filename: "x.tar", data: inner})
	if res.code != 400 || res.detail() != "File must be a ZIP archive" {
		t.Errorf("tar: %d %s", res.code, res.body)
	}
	// No symlink anywhere under the root.
	filepath.WalkDir(fh.datasetsDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink != 0 {
			t.Errorf("symlink %s under the datasets dir", p)
		}
		return nil
	})
	if ents, _ := os.ReadDir(filepath.Join(fh.datasetsDir, ".staging")); len(ents) != 0 {
		t.Errorf("staging not empty: %v", ents)
	}
}

// U3: a symlink inside the datasets dir that points outside cannot be used to write there.
func TestSymlinkEscape(t *testing.T) {
	fh := newFileHarness(t, Config{}, datasets.Limits{})
	cookie, _ := fh.setup()
	outside := filepath.Join(fh.root, "outside")
	os.MkdirAll(filepath.Join(outside, "sub"), 0o755)
	if err := os.Symlink(outside, filepath.Join(fh.datasetsDir, "link")); err != nil {
		t.Fatal(err)
	}
	before := tree(t, outside)
	for _, tc := range []struct{ path string }{{"/api/datasets/upload"}, {"/api/datasets/upload/zip"}} {
		var res resp
		if strings.HasSuffix(tc.path, "zip") {
			res = fh.form(tc.path, cookie, part{field: "target_path", value: "link/sub"}, part{field: "file", filename: "a.zip", data: makeZip(t, zipEntry{name: "a.txt", data: []byte("x")})})
		} else {
			res = fh.form(tc.path, cookie, part{field: "target_path", value: "link/sub"}, part{field: "files", filename: "a.txt", data: []byte("x")})
		}
		if res.code != 400 || !strings.Contains(res.detail(), "leads outside the datasets directory") {
			t.Errorf("%s: %d %s", tc.path, res.code, res.body)
		}
	}
	res := fh.form("/api/datasets/folders", cookie, part{field: "parent_path", value: "link"}, part{field: "folder_name", value: "evil"})
	if res.code != 400 {
		t.Errorf("mkdir through link: %d %s", res.code, res.body)
	}
	if res := fh.do(req{method: "GET", path: "/api/datasets/browse?path=link", cookie: cookie}); res.code != 400 {
		t.Errorf("browse through link: %d %s", res.code, res.body)
	}
	if after := tree(t, outside); !equalTrees(before, after) {
		t.Errorf("outside changed: %q", after)
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// U5: the body cap answers 413; an unauthenticated upload is refused before a byte of
// the body is read.
func TestUploadBodyLimits(t *testing.T) {
	fh := newFileHarness(t, Config{MaxUploadBytes: 1 << 20}, datasets.Limits{})
	cookie, _ := fh.setup()
	big := bytes.Repeat([]byte("z"), 2<<20)
	res := fh.form("/api/datasets/upload", cookie, part{field: "target_path", value: ""}, part{field: "files", filename: "big.txt", data: big})
	if res.code != http.StatusRequestEntityTooLarge {
		t.Errorf("over the cap: %d %s", res.code, res.body)
	}
	res = fh.form("/api/datasets/upload/zip", cookie, part{field: "target_path", value: ""}, part{field: "file", filename: "big.zip", data: big})
	if res.code != http.StatusRequestEntityTooLarge {
		t.Errorf("zip over the cap: %d %s", res.code, res.body)
	}
	if _, err := os.Stat(filepath.Join(fh.datasetsDir, "big.txt")); err == nil {
		t.Error("a capped upload left a file")
	}
	if ents, _ := os.ReadDir(filepath.Join(fh.datasetsDir, ".staging")); len(ents) != 0 {
		t.Errorf("staging not empty: %v", ents)
	}
	// Unauthenticated: chunked body of unknown length; nothing may be read.
	body, ct := multipartBody(t, part{field: "target_path", value: ""}, part{field: "files", filename: "a.txt", data: big})
	cr := &countingReader{r: body}
	res = fh.do(req{method: "POST", path: "/api/datasets/upload", body: io.Reader(cr), header: map[string]string{"Content-Type": ct}})
	if res.code != 401 || cr.n.Load() != 0 {
		t.Errorf("anonymous: %d, %d body bytes read", res.code, cr.n.Load())
	}
	// Form-shape errors.
	for _, tc := range []struct {
		parts []part
		code  int
		msg   string
	}{
		{[]part{{field: "files", filename: "a.txt", data: []byte("x")}, {field: "target_path", value: ""}}, 400, "Send target_path before the files (curl: put -F target_path=… first)"},
		{[]part{{field: "files", filename: "a.txt", data: []byte("x")}}, 400, "Send target_path before the files (curl: put -F target_path=… first)"},
		{[]part{{field: "target_path", value: ""}}, 422, ""},
	} {
		res := fh.form("/api/datasets/upload", cookie, tc.parts...)
		if res.code != tc.code || (tc.msg != "" && res.detail() != tc.msg) {
			t.Errorf("%v: %d %s", tc.parts, res.code, res.body)
		}
	}
	res = fh.do(req{method: "POST", path: "/api/datasets/upload", cookie: cookie, body: "x", header: map[string]string{"Content-Type": "text/plain"}})
	if res.code != 400 {
		t.Errorf("text/plain: %d %s", res.code, res.body)
	}
}

// U6: traversal and bad names get 400 (403 outside the root), nothing is created, and
// no error echoes the server's absolute datasets path.
func TestDatasetPathsAndNames(t *testing.T) {
	fh := newFileHarness(t, Config{}, datasets.Limits{})
	cookie, _ := fh.setup()
	fh.mkdir(cookie, "", "existing")
	before := tree(t, fh.root)
	tests := []struct {
		parent, name string
		code         int
		detail       string
	}{
		{"../", "x", 400, "climbs out of the datasets directory"},
		{"..%2f", "x", 404, "Directory does not exist: ..%2f"},
		{"%2e%2e/", "x", 404, ""},
		{"/etc", "x", 403, "Access denied: path is outside configured datasets directory. Enable 'allow_dataset_paths_outside_dir' to browse other locations."},
		{"datasets/../../", "x", 400, "climbs out"},
		{".", "x", 200, ""},
		{"..", "x", 400, "climbs out"},
		{"", ".hidden", 400, "Folder name cannot start with '.'"},
		{"", "..", 400, "Folder name cannot be '..'"},
		{"", "a\nb", 400, "Folder name contains invalid characters"},
		{"", "a/b", 400, "Folder name cannot contain '/' or '\\'"},
		{"", `a\b`, 400, "Folder name cannot contain '/' or '\\'"},
		{"", "a:b", 400, "Folder name contains invalid characters"},
		{"", strings.Repeat("n", 300), 400, "Folder name is too long (at most 255 bytes)"},
		{"", "", 400, "Folder name is required"},
		{"", "existing", 400, "Folder 'existing' already exists"},
		{"a\x00b", "x", 400, "control characters"},
		{"nope", "x", 404, "Directory does not exist: nope"},
		{"existing/../../..", "x", 400, "climbs out"},
	}
	for _, tt := range tests {
		res := fh.form("/api/datasets/folders", cookie, part{field: "parent_path", value: tt.parent}, part{field: "folder_name", value: tt.name})
		if res.code != tt.code || !strings.Contains(res.detail(), tt.detail) {
			t.Errorf("parent %q name %q: %d %s; want %d %q", tt.parent, tt.name, res.code, res.body, tt.code, tt.detail)
		}
		if res.code != 200 && strings.Contains(string(res.body), fh.datasetsDir) {
			t.Errorf("error echoes the datasets path: %s", res.body)
		}
	}
	after := tree(t, fh.root)
	var added []string
	for _, p := range after {
		if !contains(before, p) {
			added = append(added, p)
		}
	}
	if len(added) != 1 || !strings.HasPrefix(added[0], "/datasets/x ") {
		t.Errorf("created %q; want only datasets/x", added)
	}
	// Upload file names.
	res := fh.form("/api/datasets/upload", cookie, part{field: "target_path", value: "existing"},
		part{field: "files", filename: ".bashrc.txt", data: []byte("x")}, part{field: "files", filename: "run.sh", data: []byte("x")},
		part{field: "files", filename: "ok.txt", data: []byte("x")})
	var ur datasets.UploadResult
	res.json(t, &ur)
	if ur.FilesUploaded != 1 || !contains(ur.Errors, "Invalid filename: .bashrc.txt") || !contains(ur.Errors, "Unsupported file type: run.sh") {
		t.Errorf("names: %s", res.body)
	}
	// The admin setting opens other locations.
	outside := filepath.Join(fh.root, "elsewhere")
	os.Mkdir(outside, 0o755)
	fh.settings.Put(datasets.AllowOutsideSetting, true)
	res = fh.form("/api/datasets/folders", cookie, part{field: "parent_path", value: outside}, part{field: "folder_name", value: "ok"})
	if res.code != 200 {
		t.Errorf("allowed outside: %d %s", res.code, res.body)
	}
	res = fh.form("/api/datasets/upload", cookie, part{field: "target_path", value: outside + "/ok"}, part{field: "files", filename: "a.txt", data: []byte("x")})
	if res.code != 200 || !strings.Contains(string(res.body), `"files_uploaded":1`) {
		t.Errorf("upload outside: %d %s", res.code, res.body)
	}
	if ents, _ := os.ReadDir(filepath.Join(outside, "ok")); len(ents) != 1 {
		t.Errorf("outside folder holds %v", ents)
	}
}

// U7: an image whose header claims 50000×50000 pixels is refused from its header alone.
func TestImagePixelCap(t *testing.T) {
	fh := newFileHarness(t, Config{}, datasets.Limits{})
	cookie, _ := fh.setup()
	huge := pngHeader(50000, 50000)
	res := fh.form("/api/datasets/upload", cookie, part{field: "target_path", value: ""}, part{field: "files", filename: "huge.png", data: huge})
	var ur datasets.UploadResult
	res.json(t, &ur)
	if ur.FilesUploaded != 0 || len(ur.Errors) != 1 || !strings.HasPrefix(ur.Errors[0], "Image too large: huge.png is 50000×50000 pixels") {
		t.Errorf("huge png: %s", res.body)
	}
	res = fh.form("/api/datasets/upload/zip", cookie, part{field: "target_path", value: ""}, part{field: "file", filename: "h.zip", data: makeZip(t, zipEntry{name: "huge.png", data: huge}, zipEntry{name: "ok.txt", data: []byte("x")})})
	if res.code != 200 || !strings.Contains(string(res.body), "Image too large") {
		t.Errorf("huge png in zip: %d %s", res.code, res.body)
	}
	if _, err := os.Stat(filepath.Join(fh.datasetsDir, "huge.png")); err == nil {
		t.Error("huge.png kept")
	}
}

// pngHeader is a PNG signature and IHDR chunk claiming w×h (no image data).
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2
	binary.Write(&b, binary.BigEndian, uint32(13))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

// U8: concurrent uploads and extractions into one folder; a reader polling the folder
// sees an archive's files all at once or not at all, and never a partial file.
func TestConcurrentUploadsAllOrNothing(t *testing.T) {
	fh := newFileHarness(t, Config{}, datasets.Limits{})
	cookie, _ := fh.setup()
	fh.mkdir(cookie, "", "empty")
	var entries []zipEntry
	for i := range 40 {
		entries = append(entries, zipEntry{name: fmt.Sprintf("f%02d.txt", i), data: bytes.Repeat([]byte("q"), 4096)})
	}
	z := makeZip(t, entries...)
	stop := make(chan struct{})
	var seen sync.Map
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			ents, _ := os.ReadDir(filepath.Join(fh.datasetsDir, "empty"))
			n := 0
			for _, e := range ents {
				if info, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), "f") {
					n++
					if info.Size() != 4096 {
						t.Errorf("partial file %s (%d bytes)", e.Name(), info.Size())
					}
				}
			}
			seen.Store(n, true)
		}
	}()
	res := fh.form("/api/datasets/upload/zip", cookie, part{field: "target_path", value: "empty"}, part{field: "file", filename: "a.zip", data: z})
	close(stop)
	wg.Wait()
	if res.code != 200 {
		t.Fatalf("zip: %d %s", res.code, res.body)
	}
	seen.Range(func(k, _ any) bool {
		if n := k.(int); n != 0 && n != 40 {
			t.Errorf("a reader saw %d of 40 files", n)
		}
		return true
	})
	// Parallel uploads and extractions into the same (now non-empty) folder.
	var pw sync.WaitGroup
	for i := range 6 {
		pw.Add(1)
		go func() {
			defer pw.Done()
			var res resp
			if i%2 == 0 {
				res = fh.form("/api/datasets/upload/zip", cookie, part{field: "target_path", value: "empty"}, part{field: "file", filename: "a.zip", data: z})
			} else {
				res = fh.form("/api/datasets/upload", cookie, part{field: "target_path", value: "empty"}, part{field: "files", filename: fmt.Sprintf("u%d.txt", i), data: []byte("x")})
			}
			if res.code != 200 {
				t.Errorf("parallel %d: %d %s", i, res.code, res.body)
			}
		}()
	}
	pw.Wait()
	ents, _ := os.ReadDir(filepath.Join(fh.datasetsDir, "empty"))
	if len(ents) != 40*4+3 {
		t.Errorf("%d entries after 4 archives of 40 and 3 files", len(ents))
	}
}

// Dataset writes need dataset.write (researcher and up); replacing an existing file needs
// dataset.overwrite (lead and up), because files record no uploader. Browsing needs only
// config.view, which every level holds.
func TestDatasetWritePermissions(t *testing.T) {
	fh := newFileHarness(t, Config{}, datasets.Limits{})
	admin, key := fh.setup()
	viewer := fh.createUser(key, "view", "viewer")
	researcher := fh.createUser(key, "res", "researcher")
	lead := fh.createUser(key, "lead", "lead")
	fh.mkdir(admin, "", "shared")
	if err := os.WriteFile(filepath.Join(fh.datasetsDir, "shared", "a.txt"), []byte("the admin's caption"), 0o640); err != nil {
		t.Fatal(err)
	}
	zip := makeZip(t, zipEntry{name: "z.txt", data: []byte("z")})
	writes := []struct {
		path  string
		parts []part
	}{
		{"/api/datasets/folders", []part{{field: "parent_path", value: "shared"}, {field: "folder_name", value: "new"}}},
		{"/api/datasets/upload", []part{{field: "target_path", value: "shared"}, {field: "files", filename: "b.txt", data: []byte("b")}}},
		{"/api/datasets/upload/zip", []part{{field: "target_path", value: "shared"}, {field: "file", filename: "z.zip", data: zip}}},
	}
	before := tree(t, fh.datasetsDir)
	for _, w := range writes {
		if res := fh.form(w.path, viewer, w.parts...); res.code != 403 || res.detail() != "Permission denied: dataset.write" {
			t.Errorf("viewer %s: %d %s", w.path, res.code, res.body)
		}
	}
	if after := tree(t, fh.datasetsDir); !equalTrees(before, after) {
		t.Errorf("a viewer changed the datasets dir:\nbefore %q\nafter  %q", before, after)
	}
	if res := fh.do(req{method: "GET", path: "/api/datasets/browse?path=shared", cookie: viewer}); res.code != 200 {
		t.Errorf("viewer browse: %d %s", res.code, res.body)
	}
	for _, w := range writes {
		if res := fh.form(w.path, researcher, w.parts...); res.code != 200 {
			t.Errorf("researcher %s: %d %s", w.path, res.code, res.body)
		}
	}
	replace := []part{{field: "target_path", value: "shared"}, {field: "overwrite", value: "true"}, {field: "files", filename: "a.txt", data: []byte("replaced")}}
	if res := fh.form("/api/datasets/upload", researcher, replace...); res.code != 403 || !strings.HasPrefix(res.detail(), "Permission denied: dataset.overwrite") {
		t.Errorf("researcher overwrite: %d %s", res.code, res.body)
	}
	if b, _ := os.ReadFile(filepath.Join(fh.datasetsDir, "shared", "a.txt")); string(b) != "the admin's caption" {
		t.Errorf("a researcher replaced another user's file: %q", b)
	}
	if res := fh.form("/api/datasets/upload", lead, replace...); res.code != 200 {
		t.Errorf("lead overwrite: %d %s", res.code, res.body)
	}
	if b, _ := os.ReadFile(filepath.Join(fh.datasetsDir, "shared", "a.txt")); string(b) != "replaced" {
		t.Errorf("lead overwrite left %q", b)
	}
}
