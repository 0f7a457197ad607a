package pkgdoc

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// The design of record lives in docs/ (see docs/architecture.md). A comment may point a
// reader there, naming docs/<file>.md with a numbered section (the section sign and the
// number of a heading) or docs/security.md with a row ID, but never at a file the
// repository does not hold: notes kept beside the project while it was written are
// not there for the next reader. These tests hold every comment of the code, the
// protocol, the kernels and the scripts, and every Markdown file, to that.

// outsideNotes match the names of notes that were never part of the repository, in any
// spelling a comment has used for them.
var outsideNotes = []*regexp.Regexp{
	regexp.MustCompile(`(?i)\bcontract\s*§`),
	regexp.MustCompile(`(?i)reliability-security`),
	regexp.MustCompile(`(?i)\bgo-deps\b`),
	regexp.MustCompile(`(?i)simpletuner-api-contract`),
	regexp.MustCompile(`(?i)style-and-peers`),
	regexp.MustCompile(`(?i)\bmodel-families\.md`),
	regexp.MustCompile(`(?i)\bhf-hub\.md`),
	regexp.MustCompile(`(?i)\bslurm\.md`),
	regexp.MustCompile(`\bDESIGN\.md`),
	regexp.MustCompile(`\bHOPPER\.md`),
	regexp.MustCompile(`(?i)shared/(reference|seed|hooks)\b`),
	regexp.MustCompile(`(?i)api-training-tutorial`),
	regexp.MustCompile(`(?i)(^|[\s(])reference/[\w.-]+\.md`),
}

var (
	// docRef is a citation of a doc: docs/<file>.md. In docs/ themselves the prefix may
	// be left out (docRefBare).
	docRef     = regexp.MustCompile(`\bdocs/([A-Za-z0-9_-]+\.md)`)
	docRefBare = regexp.MustCompile(`(?:\bdocs/)?\b([A-Za-z0-9_-]+\.md)`)
	// sectionTail is what may follow a doc's name to cite sections: the section sign
	// with a number (3, or 6.1), lists of them and ranges.
	sectionTail = regexp.MustCompile(`^(?:\s*(?:,|and|or|to|–|-)?\s*§\d+(?:\.\d+)*)+`)
	sectionNum  = regexp.MustCompile(`§(\d+(?:\.\d+)*)`)
	// rowTail cites rows of a doc's tables: row P9; rows W1, W3; rows C1–C7.
	rowTail = regexp.MustCompile(`^,?\s*rows?\s+[A-Z]\d+\b(?:\s*(?:,|and|–|-)\s*[A-Z]\d+\b)*`)
	rowID   = regexp.MustCompile(`\b[A-Z]\d+\b`)
	// mdName is a Markdown file a comment names.
	mdName = regexp.MustCompile(`[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md\b`)
	// heading is a numbered section heading of a doc: "##", the section sign, a number,
	// the title.
	heading = regexp.MustCompile(`(?m)^#{1,6}\s+§(\d+(?:\.\d+)*)(?:\s|$)`)
	// tableRow is the first cell of a table row: "| P9 | …".
	tableRow = regexp.MustCompile(`(?m)^\|\s*([A-Z]\d+)\s*\|`)
)

// docInfo is what a doc under docs/ can be cited by.
type docInfo struct {
	sections map[string]bool
	rows     map[string]bool
}

func parseDoc(text string) docInfo {
	d := docInfo{sections: map[string]bool{}, rows: map[string]bool{}}
	for _, m := range heading.FindAllStringSubmatch(text, -1) {
		d.sections[m[1]] = true
	}
	for _, m := range tableRow.FindAllStringSubmatch(text, -1) {
		d.rows[m[1]] = true
	}
	return d
}

// citation is one reference to a doc with the sections and rows it names.
type citation struct {
	doc      string
	sections []string
	rows     []string
}

// citations finds the doc citations in text. bare also accepts "<file>.md" without the
// docs/ prefix (within docs/, where files cite each other by name); such a citation counts
// only when isDoc says the file is one of the docs.
func citations(text string, bare bool, isDoc func(string) bool) []citation {
	re := docRef
	if bare {
		re = docRefBare
	}
	var out []citation
	for _, m := range re.FindAllStringSubmatchIndex(text, -1) {
		name := text[m[2]:m[3]]
		if bare && !strings.HasPrefix(text[m[0]:m[1]], "docs/") && !isDoc(name) {
			continue
		}
		c := citation{doc: name}
		tail := text[m[1]:]
		if s := sectionTail.FindString(tail); s != "" {
			for _, n := range sectionNum.FindAllStringSubmatch(s, -1) {
				c.sections = append(c.sections, n[1])
			}
		}
		if r := rowTail.FindString(tail); r != "" {
			c.rows = rowID.FindAllString(r, -1)
		}
		out = append(out, c)
	}
	return out
}

// checkText returns what is wrong with one comment (or doc) text: names of notes outside
// the repository, citations of sections or rows its doc does not have, a section sign
// that belongs to no docs/ citation (strict: code comments), and Markdown files that do
// not exist (exists is nil where that is not checked).
func checkText(text string, docs map[string]docInfo, strict, bare bool, exists func(string) bool) []string {
	var out []string
	for _, re := range outsideNotes {
		if m := re.FindString(text); m != "" {
			out = append(out, "cites "+strings.TrimSpace(m)+", which is not in the repository; cite docs/ instead")
		}
	}
	isDoc := func(name string) bool { _, ok := docs[name]; return ok }
	cited := 0
	for _, c := range citations(text, bare, isDoc) {
		d, ok := docs[c.doc]
		if !ok {
			out = append(out, "cites docs/"+c.doc+", which does not exist")
			continue
		}
		cited += len(c.sections)
		for _, s := range c.sections {
			if !d.sections[s] {
				out = append(out, "cites docs/"+c.doc+" §"+s+", which has no heading \"§"+s+" …\"")
			}
		}
		for _, r := range c.rows {
			if !d.rows[r] {
				out = append(out, "cites docs/"+c.doc+" row "+r+", which its tables do not have")
			}
		}
	}
	if strict && strings.Count(text, "§") > cited {
		out = append(out, "has a § that is not part of a docs/<file>.md §N citation")
	}
	if exists != nil {
		for _, m := range mdName.FindAllStringIndex(text, -1) {
			name := text[m[0]:m[1]]
			word := text[strings.LastIndexAny(text[:m[0]], " \t\n(`\"'")+1 : m[1]]
			if strings.Contains(word, "://") {
				continue // a web address, not a file of ours
			}
			if !exists(name) {
				out = append(out, "names "+name+", which is not a file of the repository")
			}
		}
	}
	return out
}

func TestCheckText(t *testing.T) {
	docs := map[string]docInfo{
		"compatibility.md": parseDoc("# C\n## §1 One\n## §4 Four\n### §4.2 Sub\n"),
		"security.md":      parseDoc("| ID | g |\n|---|---|\n| P9 | x |\n| W1 | y |\n| W3 | z |\n"),
	}
	exists := func(name string) bool {
		return name == "docs/security.md" || name == "docs/compatibility.md" || name == "README.md"
	}
	cases := []struct {
		name, text    string
		strict, bare  bool
		checkExisting bool
		wantN         int    // problems expected
		want          string // one of them mentions this
	}{
		{name: "good section", text: "as SimpleTuner does (docs/compatibility.md §4)", strict: true},
		{name: "list and subsection", text: "docs/compatibility.md §1, §4.2 and §4", strict: true},
		{name: "split over lines", text: "see docs/compatibility.md\n§4 for why", strict: true},
		{name: "missing section", text: "docs/compatibility.md §7", strict: true, want: "no heading \"§7", wantN: 1},
		{name: "unknown doc", text: "docs/nope.md §1", strict: true, want: "docs/nope.md, which does not exist", wantN: 2},
		{name: "bare section", text: "the catalogue (§6.3)", strict: true, want: "not part of a docs/", wantN: 1},
		{name: "bare section allowed outside code", text: "§6.3"},
		// Spelled in two pieces so that a grep of the repository for the phrase finds no
		// comment or test citing it.
		{name: "contract", text: "(contract " + "§9.4)", strict: true, want: "cites contract", wantN: 2},
		{name: "outside note by name", text: "see the reliability-security notes", want: "reliability-security", wantN: 1},
		{name: "outside design note", text: "enforces DESIGN.md", checkExisting: true, want: "DESIGN.md", wantN: 2},
		{name: "rows", text: "docs/security.md rows W1, W3 and docs/security.md row P9", strict: true},
		{name: "missing row", text: "docs/security.md, row Q1", strict: true, want: "row Q1", wantN: 1},
		{name: "existing md", text: "see README.md and docs/security.md", checkExisting: true},
		{name: "missing md", text: "see NOTES2.md", checkExisting: true, want: "NOTES2.md, which is not a file", wantN: 1},
		{name: "bare doc name in docs", text: "compatibility.md §4 and flows.md §2", bare: true},
		{name: "web address", text: "https://example.com/NOTES.md", checkExisting: true},
		{name: "bare doc name, missing section", text: "(compatibility.md §9)", bare: true, want: "§9", wantN: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var ex func(string) bool
			if tc.checkExisting {
				ex = exists
			}
			got := checkText(tc.text, docs, tc.strict, tc.bare, ex)
			if len(got) != tc.wantN {
				t.Fatalf("checkText(%q) = %q, want %d problems", tc.text, got, tc.wantN)
			}
			if tc.wantN > 0 && !strings.Contains(strings.Join(got, "\n"), tc.want) {
				t.Fatalf("checkText(%q) = %q, want one mentioning %q", tc.text, got, tc.want)
			}
		})
	}
}

// commentText is one group of adjacent comment lines of a file.
type commentText struct {
	line int
	text string
}

var (
	cLikeComment = regexp.MustCompile(`(?s)/\*.*?\*/|//[^\n]*`)
	hashComment  = regexp.MustCompile(`(?m)^[ \t]*#[^\n]*`)
)

// commentMarker is what starts a line of a comment: //, /*, * or #, and */ at its end.
var commentMarker = regexp.MustCompile(`(?m)^[ \t]*(//+|/\*+|\*+/?|#+)|\*+/[ \t]*$`)

// groupLines joins comments on adjacent lines into one text without their markers, so a
// citation may wrap from one line to the next.
func groupLines(src string, locs [][]int) []commentText {
	var out []commentText
	last := -2
	for _, l := range locs {
		line := strings.Count(src[:l[0]], "\n") + 1
		raw := src[l[0]:l[1]]
		text := commentMarker.ReplaceAllString(raw, "")
		if len(out) > 0 && line == last+1 {
			out[len(out)-1].text += "\n" + text
		} else {
			out = append(out, commentText{line: line, text: text})
		}
		last = line + strings.Count(raw, "\n")
	}
	return out
}

// fileComments returns the comments of a source file, or ok=false when the file is not
// one whose comments are checked.
func fileComments(t *testing.T, path string) (cs []commentText, ok bool) {
	t.Helper()
	name := filepath.Base(path)
	ext := filepath.Ext(name)
	switch {
	case ext == ".go":
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			return nil, false
		}
		for _, g := range f.Comments {
			cs = append(cs, commentText{line: fset.Position(g.Pos()).Line, text: g.Text()})
		}
		return cs, true
	case ext == ".proto" || ext == ".cu" || ext == ".cuh" || ext == ".c":
		src := readText(t, path)
		return groupLines(src, cLikeComment.FindAllStringIndex(src, -1)), true
	case ext == ".sh" || ext == ".py" || ext == ".service" || ext == ".conf" ||
		name == "Makefile" || name == "Dockerfile" || name == "Caddyfile" || name == ".gitignore" || name == ".dockerignore":
		src := readText(t, path)
		return groupLines(src, hashComment.FindAllStringIndex(src, -1)), true
	}
	return nil, false
}

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// repoFiles lists the repository's files, leaving out hidden folders (.git, tool caches),
// build output and the daemon's own run-time folders.
func repoFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && p != root && (strings.HasPrefix(name, ".") || name == "bin" || name == "node_modules" ||
			filepath.Dir(p) == root && name == "config") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// loadDocs reads every doc under docs/.
func loadDocs(t *testing.T, root string) map[string]docInfo {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]docInfo{}
	for _, p := range paths {
		docs[filepath.Base(p)] = parseDoc(readText(t, p))
	}
	return docs
}

// TestCommentsCiteOnlyTheRepository: every comment of the code, the protocol, the kernels
// and the scripts cites files the repository holds. A Markdown file a comment names must
// exist (beside the file or from the repository's root), a section sign must belong to a
// citation of docs/<file>.md whose doc has a heading with that number, a cited table row
// must be in that doc's tables, and no comment may name the notes that were kept outside
// the repository while it was written.
func TestCommentsCiteOnlyTheRepository(t *testing.T) {
	root := repoRoot(t)
	docs := loadDocs(t, root)
	for _, want := range []string{"architecture.md", "flows.md", "compatibility.md", "security.md"} {
		if _, ok := docs[want]; !ok {
			t.Errorf("docs/%s is missing", want)
		}
	}
	checked := 0
	for _, path := range repoFiles(t, root) {
		rel, _ := filepath.Rel(root, path)
		cs, ok := fileComments(t, path)
		if !ok {
			continue
		}
		checked++
		exists := func(name string) bool {
			for _, base := range []string{root, filepath.Dir(path)} {
				if _, err := os.Stat(filepath.Join(base, filepath.FromSlash(name))); err == nil {
					return true
				}
			}
			return false
		}
		for _, c := range cs {
			for _, p := range checkText(c.text, docs, true, false, exists) {
				t.Errorf("%s:%d: comment %s", rel, c.line, p)
			}
		}
	}
	if checked < 100 {
		t.Fatalf("checked only %d files under %s", checked, root)
	}
}

// TestDocsCiteOnlyTheRepository: Markdown files (the docs, READMEs, notes beside code)
// name no notes outside the repository, and every section or row of a doc they cite
// exists in that doc.
func TestDocsCiteOnlyTheRepository(t *testing.T) {
	root := repoRoot(t)
	docs := loadDocs(t, root)
	for _, path := range repoFiles(t, root) {
		if filepath.Ext(path) != ".md" {
			continue
		}
		rel, _ := filepath.Rel(root, path)
		text := readText(t, path)
		inDocs := filepath.Dir(rel) == "docs"
		for _, p := range checkText(text, docs, false, inDocs, nil) {
			t.Errorf("%s: %s", rel, p)
		}
	}
}
