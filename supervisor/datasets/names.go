package datasets

import (
	"path/filepath"
	"simpletuner/internal/errmsg"
	"strconv"
	"strings"
)

// Extensions an upload may have: images and caption/metadata files, SimpleTuner's list
// (docs/compatibility.md §10).
var allowedExt = map[string]bool{
	".png": true, ".jpg": true, ".jpeg": true, ".webp": true, ".jxl": true, ".bmp": true, ".gif": true,
	".tiff": true, ".tif": true, ".txt": true, ".parquet": true, ".jsonl": true, ".csv": true, ".json": true,
}

// AllowedExtension reports whether a file name has an extension uploads accept.
func AllowedExtension(name string) bool { return allowedExt[strings.ToLower(filepath.Ext(name))] }

func hasControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0
}

// show quotes a name for a message when it holds anything unusual, so a control
// character or a newline cannot forge a log line or a second message.
func show(s string) string {
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	if hasControl(s) || strings.ContainsAny(s, "\"\\") {
		return strconv.Quote(s)
	}
	return s
}

// CheckFolderName applies SimpleTuner's folder-name rules (docs/compatibility.md §10).
func CheckFolderName(name string) error {
	switch {
	case name == "":
		return errmsg.New(ErrInvalid, "Folder name is required")
	case len(name) > 255:
		return errmsg.New(ErrInvalid, "Folder name is too long (at most 255 bytes)")
	case strings.ContainsAny(name, `/\`):
		return errmsg.New(ErrInvalid, "Folder name cannot contain '/' or '\\'")
	case name == "..":
		return errmsg.New(ErrInvalid, "Folder name cannot be '..'")
	case hasControl(name) || strings.ContainsAny(name, `<>:"|?*`):
		return errmsg.New(ErrInvalid, "Folder name contains invalid characters (< > : \" | ? * or control characters): %s", show(name))
	case strings.HasPrefix(name, "."):
		return errmsg.New(ErrInvalid, "Folder name cannot start with '.'")
	}
	return nil
}

// CheckFileName checks an uploaded file's name: a bare name (no folders), no control
// characters, not hidden, with an accepted extension.
func CheckFileName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || hasControl(name) ||
		strings.HasPrefix(name, ".") || len(name) > 255 {
		return errmsg.New(ErrSkipped, "Invalid filename: %s", show(name))
	}
	if !AllowedExtension(name) {
		return errmsg.New(ErrSkipped, "Unsupported file type: %s", show(name))
	}
	return nil
}
