package pkgdoc

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is two levels up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s", root)
	}
	return root
}

// packages maps each directory holding non-test Go files to those files.
func packages(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && p != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin" || name == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go") {
			out[filepath.Dir(p)] = append(out[filepath.Dir(p)], p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEveryPackageHasADocComment(t *testing.T) {
	root := repoRoot(t)
	pkgs := packages(t, root)
	if len(pkgs) < 5 {
		t.Fatalf("found only %d packages under %s", len(pkgs), root)
	}
	for dir, files := range pkgs {
		documented := false
		for _, f := range files {
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ParseComments|parser.PackageClauseOnly)
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			if af.Doc != nil {
				text := af.Doc.Text()
				// A licence header or build tag parsed as the doc does not count.
				if strings.HasPrefix(text, "Package "+af.Name.Name+" ") || strings.HasPrefix(text, "Command ") {
					documented = true
				}
			}
		}
		if !documented {
			rel, _ := filepath.Rel(root, dir)
			t.Errorf("package %s has no doc comment (\"// Package x …\" or \"// Command x …\")", rel)
		}
	}
}

// TestImportRules enforces docs/architecture.md §2: the daemon and the trainer meet only in
// plugins/.
func TestImportRules(t *testing.T) {
	root := repoRoot(t)
	rules := []struct {
		from      string
		forbidden []string
	}{
		{"trainerproc", []string{"simpletuner/supervisor"}},
		{"supervisor", []string{"simpletuner/trainerproc"}},
		{"plugins", []string{"simpletuner/supervisor", "simpletuner/trainerproc"}},
		{"store", []string{"net/http", "simpletuner/supervisor"}},
		{"options", []string{"net/http", "simpletuner/supervisor", "simpletuner/trainerproc"}},
		{"hooks", []string{"simpletuner/supervisor", "simpletuner/trainerproc"}},
	}
	for dir, files := range packages(t, root) {
		rel, _ := filepath.Rel(root, dir)
		for _, r := range rules {
			if rel != r.from && !strings.HasPrefix(rel, r.from+string(filepath.Separator)) {
				continue
			}
			for _, f := range files {
				af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
				if err != nil {
					t.Errorf("%s: %v", f, err)
					continue
				}
				for _, imp := range af.Imports {
					path, _ := strconv.Unquote(imp.Path.Value)
					for _, bad := range r.forbidden {
						if path == bad || strings.HasPrefix(path, bad+"/") {
							t.Errorf("%s imports %s, which %s/ must not", f, path, r.from)
						}
					}
				}
			}
		}
	}
}
