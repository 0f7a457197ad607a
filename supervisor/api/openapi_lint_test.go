package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// The checks below are the rules of Redocly's recommended set that a generated document can
// break, written again in Go so that `go test` alone catches a route that breaks one (routes
// are added in many places; every check applies to every path, operation and schema). The
// real linter runs too: `make openapi-lint` (part of `make test`) writes the document with
// TestWriteOpenAPIDocument and lints it with the pinned @redocly/cli under redocly.yaml.
//
// Rules covered, by Redocly's names: nullable-type-sibling, no-empty-servers,
// no-server-trailing-slash, no-server-example.com, operation-summary, operation-operationId,
// operation-operationId-unique, operation-operationId-url-safe, operation-2xx-response,
// operation-4xx-response, operation-parameters-unique, path-parameters-defined,
// no-path-trailing-slash, path-not-include-query, no-identical-paths, no-ambiguous-paths,
// security-defined, tag-description, no-unused-components. The structural rules (struct,
// no-unresolved-refs) are kin-openapi's doc.Validate in newHarness.

// lintIgnoreFile lists the exceptions, shared with the real linter.
const lintIgnoreFile = "../../.redocly.lint-ignore.yaml"

// lintProblem is one broken rule at one place, a JSON pointer into the document as Redocly
// reports it (and as .redocly.lint-ignore.yaml names exceptions).
type lintProblem struct {
	rule, pointer, msg string
}

func (p lintProblem) String() string { return p.rule + " at " + p.pointer + ": " + p.msg }

// pointerEscape escapes one JSON pointer token (RFC 6901).
func pointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// ptr joins JSON pointer tokens under "#".
func ptr(tokens ...string) string {
	var b strings.Builder
	b.WriteByte('#')
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(pointerEscape(t))
	}
	return b.String()
}

// eachSchema calls fn on every schema of the document that is written out in place (a $ref
// is visited where it is defined, under components), with its JSON pointer.
func eachSchema(doc *openapi3.T, fn func(pointer string, s *openapi3.Schema)) {
	var visit func(p string, ref *openapi3.SchemaRef)
	visit = func(p string, ref *openapi3.SchemaRef) {
		if ref == nil || ref.Ref != "" || ref.Value == nil {
			return
		}
		s := ref.Value
		fn(p, s)
		for name, sub := range s.Properties {
			visit(p+"/properties/"+pointerEscape(name), sub)
		}
		visit(p+"/items", s.Items)
		visit(p+"/additionalProperties", s.AdditionalProperties.Schema)
		visit(p+"/not", s.Not)
		for kw, list := range map[string]openapi3.SchemaRefs{"allOf": s.AllOf, "anyOf": s.AnyOf, "oneOf": s.OneOf} {
			for i, sub := range list {
				visit(fmt.Sprintf("%s/%s/%d", p, kw, i), sub)
			}
		}
	}
	content := func(p string, c openapi3.Content) {
		for mt, m := range c {
			if m != nil {
				visit(p+"/content/"+pointerEscape(mt)+"/schema", m.Schema)
			}
		}
	}
	params := func(p string, ps openapi3.Parameters) {
		for i, pr := range ps {
			if pr != nil && pr.Ref == "" && pr.Value != nil {
				visit(fmt.Sprintf("%s/parameters/%d/schema", p, i), pr.Value.Schema)
				content(fmt.Sprintf("%s/parameters/%d", p, i), pr.Value.Content)
			}
		}
	}
	if doc.Components != nil {
		for name, s := range doc.Components.Schemas {
			visit(ptr("components", "schemas", name), s)
		}
	}
	for path, item := range doc.Paths.Map() {
		params(ptr("paths", path), item.Parameters)
		for method, op := range item.Operations() {
			p := ptr("paths", path, strings.ToLower(method))
			params(p, op.Parameters)
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				content(p+"/requestBody", op.RequestBody.Value.Content)
			}
			if op.Responses == nil {
				continue
			}
			for code, r := range op.Responses.Map() {
				if r == nil || r.Value == nil {
					continue
				}
				rp := p + "/responses/" + pointerEscape(code)
				content(rp, r.Value.Content)
				for name, h := range r.Value.Headers {
					if h != nil && h.Value != nil {
						visit(rp+"/headers/"+pointerEscape(name)+"/schema", h.Value.Schema)
					}
				}
			}
		}
	}
}

// lintSchemas: nullable-type-sibling. OpenAPI 3.0 gives nullable a meaning only beside type.
func lintSchemas(doc *openapi3.T) []lintProblem {
	var out []lintProblem
	eachSchema(doc, func(p string, s *openapi3.Schema) {
		if s.Nullable && s.Type.IsEmpty() {
			out = append(out, lintProblem{"nullable-type-sibling", p + "/nullable", "nullable without type"})
		}
	})
	return out
}

// serverExample matches the hosts no-server-example.com refuses.
var serverExample = regexp.MustCompile(`^(.*[/.])?(example\.com|localhost)([/:?].*|$)`)

// lintServers: no-empty-servers, no-server-trailing-slash, no-server-example.com.
func lintServers(doc *openapi3.T) []lintProblem {
	if len(doc.Servers) == 0 {
		return []lintProblem{{"no-empty-servers", "#/openapi", "servers missing or empty"}}
	}
	var out []lintProblem
	for i, s := range doc.Servers {
		p := fmt.Sprintf("#/servers/%d/url", i)
		switch {
		case s == nil || s.URL == "":
			out = append(out, lintProblem{"no-empty-servers", p, "server without url"})
		case s.URL != "/" && strings.HasSuffix(s.URL, "/"):
			out = append(out, lintProblem{"no-server-trailing-slash", p, s.URL})
		case serverExample.MatchString(s.URL):
			out = append(out, lintProblem{"no-server-example.com", p, s.URL})
		}
	}
	return out
}

// operationIDSafe is operation-operationId-url-safe's character set.
var operationIDSafe = regexp.MustCompile(`^[A-Za-z0-9-._~:/?#\[\]@!$&'()*+,;=]*$`)

// templateParam matches one {name} of a path template.
var templateParam = regexp.MustCompile(`\{([^}]+)\}`)

// lintOperations: operation-summary, operation-operationId(-unique, -url-safe),
// operation-2xx-response, operation-4xx-response, operation-parameters-unique,
// path-parameters-defined, security-defined, and every operation's tags declared.
func lintOperations(doc *openapi3.T) []lintProblem {
	var out []lintProblem
	add := func(rule, p, format string, a ...any) {
		out = append(out, lintProblem{rule, p, fmt.Sprintf(format, a...)})
	}
	schemes := map[string]bool{}
	if doc.Components != nil {
		for name := range doc.Components.SecuritySchemes {
			schemes[name] = true
		}
	}
	tags := map[string]bool{}
	for _, t := range doc.Tags {
		tags[t.Name] = true
	}
	ids := map[string]string{}
	for _, path := range doc.Paths.InMatchingOrder() {
		item := doc.Paths.Value(path)
		var inTemplate []string
		for _, m := range templateParam.FindAllStringSubmatch(path, -1) {
			inTemplate = append(inTemplate, m[1])
		}
		methods := make([]string, 0, len(item.Operations()))
		for m := range item.Operations() {
			methods = append(methods, m)
		}
		slices.Sort(methods)
		for _, method := range methods {
			op := item.GetOperation(method)
			p := ptr("paths", path, strings.ToLower(method))
			if strings.TrimSpace(op.Summary) == "" {
				add("operation-summary", p, "no summary")
			}
			switch {
			case op.OperationID == "":
				add("operation-operationId", p, "no operationId")
			case ids[op.OperationID] != "":
				add("operation-operationId-unique", p+"/operationId", "%s is also %s's", op.OperationID, ids[op.OperationID])
			case !operationIDSafe.MatchString(op.OperationID):
				add("operation-operationId-url-safe", p+"/operationId", "%s", op.OperationID)
			}
			if op.OperationID != "" && ids[op.OperationID] == "" {
				ids[op.OperationID] = method + " " + path
			}
			has := func(class byte) bool {
				if op.Responses == nil {
					return false
				}
				for code := range op.Responses.Map() {
					if len(code) == 3 && code[0] == class || class == '2' && code == "default" {
						return true
					}
				}
				return false
			}
			if !has('2') {
				add("operation-2xx-response", p+"/responses", "no 2XX response")
			}
			if !has('4') {
				add("operation-4xx-response", p+"/responses", "no 4XX response")
			}
			definedPath := map[string]bool{}
			for _, ps := range []openapi3.Parameters{item.Parameters, op.Parameters} {
				// Unique within the path item's list and within the operation's (an
				// operation may override a path-level parameter).
				seen := map[string]bool{}
				for _, pr := range ps {
					if pr == nil || pr.Value == nil {
						continue
					}
					key := pr.Value.In + " " + pr.Value.Name
					if seen[key] {
						add("operation-parameters-unique", p+"/parameters", "%s repeated", key)
					}
					seen[key] = true
					if pr.Value.In == openapi3.ParameterInPath {
						definedPath[pr.Value.Name] = true
						if !slices.Contains(inTemplate, pr.Value.Name) {
							add("path-parameters-defined", p+"/parameters", "path parameter %s is not in the path", pr.Value.Name)
						}
					}
				}
			}
			for _, name := range inTemplate {
				if !definedPath[name] {
					add("path-parameters-defined", p+"/parameters", "{%s} has no path parameter", name)
				}
			}
			if op.Security == nil && len(doc.Security) == 0 {
				add("security-defined", p, "no security (an empty list marks a public operation)")
			} else if op.Security != nil {
				for _, req := range *op.Security {
					for name := range req {
						if !schemes[name] {
							add("security-defined", p+"/security", "scheme %s is not in components.securitySchemes", name)
						}
					}
				}
			}
			for _, t := range op.Tags {
				if !tags[t] {
					add("operation-tag-defined", p+"/tags", "tag %s is not declared", t)
				}
			}
		}
	}
	return out
}

// lintPaths: no-path-trailing-slash, path-not-include-query, no-identical-paths,
// no-ambiguous-paths (as Redocly decides it: two paths with as many segments and as many
// parameters whose every pair of segments is equal or has a parameter).
func lintPaths(doc *openapi3.T) []lintProblem {
	var out []lintProblem
	paths := doc.Paths.InMatchingOrder()
	slices.Sort(paths)
	identical := map[string]string{}
	type shape struct {
		path string
		segs []string
		vars int
	}
	groups := map[string][]shape{}
	isVar := func(seg string) bool { return strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") }
	for _, path := range paths {
		p := ptr("paths", path)
		if path != "/" && strings.HasSuffix(path, "/") {
			out = append(out, lintProblem{"no-path-trailing-slash", p, path})
		}
		if strings.Contains(path, "?") {
			out = append(out, lintProblem{"path-not-include-query", p, path})
		}
		generic := templateParam.ReplaceAllString(path, "{}")
		if other, ok := identical[generic]; ok {
			out = append(out, lintProblem{"no-identical-paths", p, "differs from " + other + " only in parameter names"})
		}
		identical[generic] = path
		sh := shape{path: path, segs: strings.Split(path, "/")}
		for _, s := range sh.segs {
			if isVar(s) {
				sh.vars++
			}
		}
		key := fmt.Sprintf("%d:%d", len(sh.segs), sh.vars)
		for _, o := range groups[key] {
			same := true
			for i := range sh.segs {
				if !isVar(sh.segs[i]) && !isVar(o.segs[i]) && sh.segs[i] != o.segs[i] {
					same = false
					break
				}
			}
			if same {
				out = append(out, lintProblem{"no-ambiguous-paths", p, "a request could match both this and " + o.path})
			}
		}
		groups[key] = append(groups[key], sh)
	}
	return out
}

// lintTags: tag-description.
func lintTags(doc *openapi3.T) []lintProblem {
	var out []lintProblem
	for i, t := range doc.Tags {
		if strings.TrimSpace(t.Description) == "" {
			out = append(out, lintProblem{"tag-description", fmt.Sprintf("#/tags/%d/description", i), "tag " + t.Name + " has no description"})
		}
	}
	return out
}

// componentRef matches a $ref to a component schema in the encoded document.
var componentRef = regexp.MustCompile(`"\$ref":"#/components/schemas/([^"]+)"`)

// lintComponents: no-unused-components (schemas, the only components generated).
func lintComponents(doc *openapi3.T, raw []byte) []lintProblem {
	if doc.Components == nil {
		return nil
	}
	used := map[string]bool{}
	for _, m := range componentRef.FindAllSubmatch(raw, -1) {
		used[strings.ReplaceAll(strings.ReplaceAll(string(m[1]), "~1", "/"), "~0", "~")] = true
	}
	var out []lintProblem
	for name := range doc.Components.Schemas {
		if !used[name] {
			out = append(out, lintProblem{"no-unused-components", ptr("components", "schemas", name), "never referenced"})
		}
	}
	return out
}

// lintDocument runs every check above.
func lintDocument(doc *openapi3.T, raw []byte) []lintProblem {
	var out []lintProblem
	out = append(out, lintSchemas(doc)...)
	out = append(out, lintServers(doc)...)
	out = append(out, lintOperations(doc)...)
	out = append(out, lintPaths(doc)...)
	out = append(out, lintTags(doc)...)
	out = append(out, lintComponents(doc, raw)...)
	return out
}

// lintExceptions reads .redocly.lint-ignore.yaml: rule → JSON pointers, for the one document
// it names. The file is YAML in the fixed shape Redocly writes (file:, two-space rule:, then
// "    - 'pointer'" lines); anything else in it fails the test rather than being skipped.
func lintExceptions(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(lintIgnoreFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	files, rule := 0, ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#"):
		case !strings.HasPrefix(line, " ") && strings.HasSuffix(line, ":"):
			files++
		case strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "   ") && strings.HasSuffix(line, ":"):
			rule = strings.TrimSuffix(strings.TrimSpace(line), ":")
		case strings.HasPrefix(line, "    - '") && strings.HasSuffix(line, "'") && rule != "":
			out[rule] = append(out[rule], strings.TrimSuffix(strings.TrimPrefix(line, "    - '"), "'"))
		default:
			t.Fatalf("%s:%d: not in the shape this test reads: %q", lintIgnoreFile, n, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if files != 1 {
		t.Fatalf("%s names %d documents, want the one make openapi-lint writes", lintIgnoreFile, files)
	}
	return out
}

// TestOpenAPIFollowsLintRules fails on any broken rule outside the documented exceptions,
// and on an exception the document no longer needs.
func TestOpenAPIFollowsLintRules(t *testing.T) {
	h := newHarness(t, Config{})
	// The harness's copy was adjusted for response validation (admitNullWhereUntyped); lint
	// the document exactly as served.
	doc, err := openapi3.NewLoader().LoadFromData(h.srv.OpenAPIJSON())
	if err != nil {
		t.Fatal(err)
	}
	exceptions := lintExceptions(t)
	used := map[string]bool{}
	for _, p := range lintDocument(doc, h.srv.OpenAPIJSON()) {
		if slices.Contains(exceptions[p.rule], p.pointer) {
			used[p.rule+" "+p.pointer] = true
			continue
		}
		t.Errorf("%s", p)
	}
	for rule, pointers := range exceptions {
		for _, p := range pointers {
			if !used[rule+" "+p] {
				t.Errorf("%s lists %s at %s, which the document no longer breaks: remove it", lintIgnoreFile, rule, p)
			}
		}
	}
}

// TestLintChecksCatch proves each check reports what it is for, on small documents.
func TestLintChecksCatch(t *testing.T) {
	op := func(id string, mutate func(*openapi3.Operation)) *openapi3.Operation {
		o := openapi3.NewOperation()
		o.Summary, o.OperationID, o.Tags = "x", id, []string{"t"}
		o.Security = &openapi3.SecurityRequirements{}
		o.AddResponse(200, openapi3.NewResponse().WithDescription("ok"))
		o.AddResponse(400, openapi3.NewResponse().WithDescription("bad"))
		if mutate != nil {
			mutate(o)
		}
		return o
	}
	pathParam := func(name string) *openapi3.ParameterRef {
		return &openapi3.ParameterRef{Value: openapi3.NewPathParameter(name).WithSchema(openapi3.NewStringSchema())}
	}
	base := func(paths map[string]*openapi3.Operation) *openapi3.T {
		doc := &openapi3.T{OpenAPI: "3.0.3", Info: &openapi3.Info{Title: "t", Version: "1"},
			Servers:    openapi3.Servers{{URL: "/"}},
			Tags:       openapi3.Tags{{Name: "t", Description: "d"}},
			Paths:      openapi3.NewPaths(),
			Components: &openapi3.Components{Schemas: openapi3.Schemas{}}}
		for p, o := range paths {
			item := &openapi3.PathItem{}
			item.SetOperation(http.MethodGet, o)
			doc.Paths.Set(p, item)
		}
		return doc
	}
	withSchema := func(s *openapi3.Schema) func(*openapi3.Operation) {
		return func(o *openapi3.Operation) {
			o.AddResponse(200, openapi3.NewResponse().WithDescription("ok").WithJSONSchema(s))
		}
	}
	cases := []struct {
		name string
		doc  func() *openapi3.T
		want string // the rule expected to fire; "" for none
	}{
		{"clean", func() *openapi3.T {
			return base(map[string]*openapi3.Operation{"/a/{id}": op("a", func(o *openapi3.Operation) { o.Parameters = append(o.Parameters, pathParam("id")) })})
		}, ""},
		{"nullable without type", func() *openapi3.T {
			return base(map[string]*openapi3.Operation{"/a": op("a", withSchema(openapi3.NewObjectSchema().WithProperty("x", &openapi3.Schema{Nullable: true})))})
		}, "nullable-type-sibling"},
		{"nullable with type", func() *openapi3.T {
			return base(map[string]*openapi3.Operation{"/a": op("a", withSchema(openapi3.NewArraySchema().WithItems(openapi3.NewStringSchema()).WithNullable()))})
		}, ""},
		{"no servers", func() *openapi3.T {
			d := base(map[string]*openapi3.Operation{"/a": op("a", nil)})
			d.Servers = nil
			return d
		}, "no-empty-servers"},
		{"server trailing slash", func() *openapi3.T {
			d := base(map[string]*openapi3.Operation{"/a": op("a", nil)})
			d.Servers[0].URL = "/api/"
			return d
		}, "no-server-trailing-slash"},
		{"server localhost", func() *openapi3.T {
			d := base(map[string]*openapi3.Operation{"/a": op("a", nil)})
			d.Servers[0].URL = "http://localhost:8001"
			return d
		}, "no-server-example.com"},
		{"no summary", func() *openapi3.T {
			return base(map[string]*openapi3.Operation{"/a": op("a", func(o *openapi3.Operation) { o.Summary = "" })})
		}, "operation-summary"},
		{"no operationId", func() *openapi3.T { return base(map[string]*openapi3.Operation{"/a": op("", nil)}) }, "operation-operationId"},
		{"same operationId", func() *openapi3.T {
			return base(map[string]*openapi3.Operation{"/a": op("x", nil), "/b": op("x", nil)})
		}, "operation-operationId-unique"},
		{"operationId with a space", func() *openapi3.T { return base(map[string]*openapi3.Operation{"/a": op("get a", nil)}) }, "operation-operationId-url-safe"},
		{"no 2xx", func() *openapi3.T {
			return base(map[string]*openapi3.Operation{"/a": op("a", func(o *openapi3.Operation) { o.Responses.Delete("200") })})
		}, "operation-2xx-response"},
		{"no 4xx", func() *openapi3.T {
			return base(map[string]*openapi3.Operation{"/a": op("a", func(o *openapi3.Operation) { o.Responses.Delete("400") })})
		}, "operation-4xx-response"},
		{"repeated parameter", func() *openapi3.T {
			return base(map[string]*openapi3.Operation{"/a/{id}": op("a", func(o *openapi3.Operation) { o.Parameters = append(o.Parameters, pathParam("id"), pathParam("id")) })})
		}, "operation-parameters-unique"},
		{"template parameter undefined", func() *openapi3.T { return base(map[string]*openapi3.Operation{"/a/{id}": op("a", nil)}) }, "path-parameters-defined"},
		{"path parameter not in template", func() *openapi3.T {
			return base(map[string]*openapi3.Operation{"/a": op("a", func(o *openapi3.Operation) { o.Parameters = append(o.Parameters, pathParam("id")) })})
		}, "path-parameters-defined"},
		{"no security", func() *openapi3.T {
			return base(map[string]*openapi3.Operation{"/a": op("a", func(o *openapi3.Operation) { o.Security = nil })})
		}, "security-defined"},
		{"undefined scheme", func() *openapi3.T {
			return base(map[string]*openapi3.Operation{"/a": op("a", func(o *openapi3.Operation) { o.Security = &openapi3.SecurityRequirements{{"nope": {}}} })})
		}, "security-defined"},
		{"undeclared tag", func() *openapi3.T {
			return base(map[string]*openapi3.Operation{"/a": op("a", func(o *openapi3.Operation) { o.Tags = []string{"u"} })})
		}, "operation-tag-defined"},
		{"trailing slash", func() *openapi3.T { return base(map[string]*openapi3.Operation{"/a/": op("a", nil)}) }, "no-path-trailing-slash"},
		{"query in path", func() *openapi3.T { return base(map[string]*openapi3.Operation{"/a?x=1": op("a", nil)}) }, "path-not-include-query"},
		{"identical paths", func() *openapi3.T {
			return base(map[string]*openapi3.Operation{
				"/a/{x}": op("a", func(o *openapi3.Operation) { o.Parameters = append(o.Parameters, pathParam("x")) }),
				"/a/{y}": op("b", func(o *openapi3.Operation) { o.Parameters = append(o.Parameters, pathParam("y")) })})
		}, "no-identical-paths"},
		{"ambiguous paths", func() *openapi3.T {
			return base(map[string]*openapi3.Operation{
				"/a/{x}/c": op("a", func(o *openapi3.Operation) { o.Parameters = append(o.Parameters, pathParam("x")) }),
				"/a/b/{y}": op("b", func(o *openapi3.Operation) { o.Parameters = append(o.Parameters, pathParam("y")) })})
		}, "no-ambiguous-paths"},
		{"a literal beside a parameter is not ambiguous", func() *openapi3.T {
			return base(map[string]*openapi3.Operation{
				"/a/{x}/c": op("a", func(o *openapi3.Operation) { o.Parameters = append(o.Parameters, pathParam("x")) }),
				"/a/b/c":   op("b", nil)})
		}, ""},
		{"tag without description", func() *openapi3.T {
			d := base(map[string]*openapi3.Operation{"/a": op("a", nil)})
			d.Tags[0].Description = ""
			return d
		}, "tag-description"},
		{"unused component", func() *openapi3.T {
			d := base(map[string]*openapi3.Operation{"/a": op("a", nil)})
			d.Components.Schemas["Lost"] = openapi3.NewSchemaRef("", openapi3.NewStringSchema())
			return d
		}, "no-unused-components"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := c.doc()
			raw, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			var rules []string
			for _, p := range lintDocument(doc, raw) {
				rules = append(rules, p.rule)
			}
			switch {
			case c.want == "" && len(rules) > 0:
				t.Errorf("reported %v on a clean document", rules)
			case c.want != "" && !slices.Contains(rules, c.want):
				t.Errorf("reported %v, want %s", rules, c.want)
			}
		})
	}
}

// TestWriteOpenAPIDocument writes the served document to $SIMPLETUNER_OPENAPI_OUT for
// `make openapi-lint`, which lints it with the real Redocly CLI; skipped without it.
func TestWriteOpenAPIDocument(t *testing.T) {
	out := os.Getenv("SIMPLETUNER_OPENAPI_OUT")
	if out == "" {
		t.Skip("SIMPLETUNER_OPENAPI_OUT not set (make openapi-lint sets it)")
	}
	h := newHarness(t, Config{})
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	// Indented, so that the linter's line:column and excerpts point somewhere readable.
	var buf bytes.Buffer
	if err := json.Indent(&buf, h.srv.OpenAPIJSON(), "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
