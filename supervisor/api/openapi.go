package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3gen"
)

// muxVar matches a gorilla/mux path variable with an optional pattern: {id:[0-9]+}.
var muxVar = regexp.MustCompile(`\{([A-Za-z0-9_]+)(:[^}]*)?\}`)

// openAPIPath turns a mux template into an OpenAPI path and its parameter names.
func openAPIPath(tmpl string) (string, []string, map[string]bool) {
	var names []string
	numeric := map[string]bool{}
	out := muxVar.ReplaceAllStringFunc(tmpl, func(m string) string {
		sub := muxVar.FindStringSubmatch(m)
		names = append(names, sub[1])
		if sub[2] == ":[0-9]+" {
			numeric[sub[1]] = true
		}
		return "{" + sub[1] + "}"
	})
	return out, names, numeric
}

// openAPI renders the document from the route table: the same rows that build the router.
func (s *Server) openAPI() (*openapi3.T, error) {
	doc := &openapi3.T{
		OpenAPI: "3.0.3",
		Info: &openapi3.Info{Title: "simpletuner API", Version: s.version.Version,
			Description: "Training server compatible with SimpleTuner's HTTP API. Authenticate with the " +
				"`X-API-Key` header (or `Authorization: Bearer st_…`) or the `simpletuner_session` cookie from login."},
		// A relative server: the API is where this document was fetched from (OpenAPI
		// 3.0.3 resolves a relative url against the document's own location), which is
		// right for a daemon reachable at any address, port or host name, directly or
		// through a reverse proxy (packaging/ mounts it at the root). "/" is also what the
		// specification assumes when servers is absent, written out because linters and
		// client generators want it. An absolute url would be wrong somewhere: the listen
		// address may be 0.0.0.0, behind a proxy scheme and host are the proxy's, and the
		// request's Host header is the client's to choose (the document is rendered once).
		Servers: openapi3.Servers{{URL: "/", Description: "This daemon: the address this document was fetched from"}},
		Paths:   openapi3.NewPaths(),
		Components: &openapi3.Components{
			Schemas: openapi3.Schemas{},
			SecuritySchemes: openapi3.SecuritySchemes{
				"apiKey":  {Value: openapi3.NewSecurityScheme().WithType("apiKey").WithIn("header").WithName("X-API-Key")},
				"bearer":  {Value: openapi3.NewSecurityScheme().WithType("http").WithScheme("bearer")},
				"session": {Value: openapi3.NewSecurityScheme().WithType("apiKey").WithIn("cookie").WithName(sessionCookie)},
				"workerToken": {Value: openapi3.NewSecurityScheme().WithType("apiKey").WithIn("header").WithName("X-Worker-Token").
					WithDescription("A remote worker's token (POST /api/admin/workers shows it once)")},
			},
		},
	}
	gen := openapi3gen.NewGenerator(openapi3gen.SchemaCustomizer(nullability))
	schemaOf := func(v any) (*openapi3.SchemaRef, error) {
		return gen.NewSchemaRefForValue(v, doc.Components.Schemas)
	}
	errSchema, err := schemaOf(detailBody{})
	if err != nil {
		return nil, err
	}
	valSchema, err := schemaOf(validationBody{})
	if err != nil {
		return nil, err
	}
	tags := map[string]bool{}
	for i := range s.routes {
		rt := &s.routes[i]
		tags[rt.tag] = true
		for _, p := range rt.paths() {
			op, err := s.operation(rt, p, schemaOf, errSchema, valSchema)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", rt.method, p, err)
			}
			path, _, _ := openAPIPath(p)
			item := doc.Paths.Value(path)
			if item == nil {
				item = &openapi3.PathItem{}
				doc.Paths.Set(path, item)
			}
			item.SetOperation(rt.method, op)
		}
	}
	for _, t := range documentTags() {
		if tags[t.Name] {
			doc.Tags = append(doc.Tags, t)
		}
	}
	return doc, nil
}

// documentTags are the document's tags, in the order the documentation pages list them,
// each with the line the pages show under its name.
func documentTags() []*openapi3.Tag {
	return []*openapi3.Tag{
		{Name: tagAuth, Description: "Logging in and out, the first administrator, passwords and API keys. " +
			"Every route also answers under /api/cloud/auth/, the prefix the tutorial uses."},
		{Name: tagUsers, Description: "Accounts, permission levels and the permission catalogue."},
		{Name: tagSettings, Description: "Server-wide settings an administrator changes, such as public registration."},
		{Name: tagConfigs, Description: "Environments (a training config with its dataloader), stored under the config directory."},
		{Name: tagDatasets, Description: "Folders and uploads under the datasets directory."},
		{Name: tagTraining, Description: "Validating and starting training, the running job, checkpoints, jobs and their events."},
		{Name: tagQueue, Description: "The job queue: what waits and runs, its limits, priorities and cancellation."},
		{Name: tagWorkers, Description: "Remote workers: their administration, and the protocol a `simpletuner worker` speaks with its X-Worker-Token."},
		{Name: tagSystem, Description: "Health, version, this document, its documentation pages and the machine's resources."},
	}
}

func (s *Server) operation(rt *route, p string, schemaOf func(any) (*openapi3.SchemaRef, error), errSchema, valSchema *openapi3.SchemaRef) (*openapi3.Operation, error) {
	op := openapi3.NewOperation()
	op.Tags = []string{rt.tag}
	op.Summary = rt.summary
	op.OperationID = operationID(rt.method, p)
	_, names, numeric := openAPIPath(p)
	for _, n := range names {
		sch := openapi3.NewStringSchema()
		if numeric[n] {
			sch = openapi3.NewIntegerSchema()
		}
		op.AddParameter(openapi3.NewPathParameter(n).WithSchema(sch))
	}
	for _, q := range rt.query {
		sch := &openapi3.Schema{Type: &openapi3.Types{q.typ}}
		op.AddParameter(openapi3.NewQueryParameter(q.name).WithSchema(sch).WithDescription(q.help))
	}
	if rt.req != nil {
		sch, err := schemaOf(rt.req)
		if err != nil {
			return nil, err
		}
		op.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithRequired(true).WithJSONSchemaRef(sch)}
	}
	if len(rt.form) > 0 {
		op.RequestBody = &openapi3.RequestBodyRef{Value: formBody(rt.form)}
	}
	ok := openapi3.NewResponse().WithDescription("Success")
	ok.Content = openapi3.Content{}
	if rt.contentType != "" {
		ok.Content[rt.contentType] = openapi3.NewMediaType().WithSchema(openapi3.NewStringSchema())
	}
	if rt.resp != nil {
		// With a content type too, JSON is what the client gets with Accept: application/json.
		sch, err := schemaOf(rt.resp)
		if err != nil {
			return nil, err
		}
		ok.Content["application/json"] = openapi3.NewMediaType().WithSchemaRef(sch)
		if rt.contentType != "" {
			ok.WithDescription("Success; an HTML fragment by default, JSON with Accept: application/json")
		}
	}
	op.AddResponse(rt.successStatus(), ok)
	errResp := func(status int, desc string) {
		op.AddResponse(status, openapi3.NewResponse().WithDescription(desc).WithJSONSchemaRef(errSchema))
	}
	errResp(http.StatusUnauthorized, "Not authenticated, invalid credentials, or (before setup) not on the server machine")
	errResp(http.StatusBadRequest, "The request cannot be carried out as sent; the detail says why")
	switch rt.access {
	case authenticated:
		op.Security = &openapi3.SecurityRequirements{{"apiKey": {}}, {"bearer": {}}, {"session": {}}}
	case workerAuth:
		op.Security = &openapi3.SecurityRequirements{{"workerToken": {}}}
		errResp(http.StatusForbidden, "Worker not assigned to this job")
	default:
		op.Security = &openapi3.SecurityRequirements{}
	}
	if rt.perm != "" || isUnsafe(rt.method) || rt.forbidden != "" {
		desc := "Cross-origin request refused"
		if rt.perm != "" {
			desc = "Permission denied: " + rt.perm
		}
		if rt.forbidden != "" {
			desc = rt.forbidden
		}
		errResp(http.StatusForbidden, desc)
	}
	if rt.req != nil {
		errResp(http.StatusRequestEntityTooLarge, "Request body too large")
		errResp(http.StatusUnsupportedMediaType, "The body must be JSON")
	}
	if len(rt.form) > 0 {
		errResp(http.StatusRequestEntityTooLarge, "Request body too large")
		errResp(http.StatusNotFound, "Not found")
	}
	if rt.req != nil || len(rt.query) > 0 || len(rt.form) > 0 {
		op.AddResponse(http.StatusUnprocessableEntity, openapi3.NewResponse().WithDescription("Invalid field").WithJSONSchemaRef(valSchema))
	}
	if len(names) > 0 || rt.req != nil {
		errResp(http.StatusNotFound, "Not found")
	}
	errResp(http.StatusTooManyRequests, "Rate limited; see Retry-After")
	errResp(http.StatusConflict, "Conflicts with the current state")
	errResp(http.StatusServiceUnavailable, "Busy; see Retry-After")
	errResp(http.StatusInternalServerError, "Internal error")
	return op, nil
}

// formBody describes a form request body: multipart/form-data, and urlencoded too when
// it has no file fields.
func formBody(fields []formField) *openapi3.RequestBody {
	sch := openapi3.NewObjectSchema()
	for _, f := range fields {
		var fs *openapi3.Schema
		if f.file {
			fs = openapi3.NewStringSchema().WithFormat("binary")
		} else {
			fs = openapi3.NewStringSchema()
		}
		if f.many {
			fs = openapi3.NewArraySchema().WithItems(fs)
		}
		fs.Description = f.help
		sch.WithProperty(f.name, fs)
		if f.required {
			sch.Required = append(sch.Required, f.name)
		}
	}
	types := []string{"multipart/form-data"}
	hasFile := false
	for _, f := range fields {
		hasFile = hasFile || f.file
	}
	if !hasFile {
		types = append(types, "application/x-www-form-urlencoded")
	}
	return openapi3.NewRequestBody().WithRequired(true).WithContent(openapi3.NewContentWithSchema(sch, types))
}

// nullability marks slices and maps nullable: Go encodes a nil one as null, and
// SimpleTuner's shapes use null for "none" (e.g. scoped_permissions).
//
// OpenAPI 3.0 gives nullable a meaning only beside a type ("adds null to the allowed
// types"), and linters refuse it alone (redocly's nullable-type-sibling). A schema without
// a type (an interface, json.RawMessage: any JSON value) already admits null, so it is
// left bare. A struct encodes as a JSON object even with no fields to list, unless it
// encodes itself.
func nullability(_ string, t reflect.Type, _ reflect.StructTag, schema *openapi3.Schema) error {
	switch t.Kind() {
	case reflect.Slice, reflect.Map:
		schema.Nullable = true
	case reflect.Struct:
		marshaler := reflect.TypeFor[json.Marshaler]()
		if schema.Type.IsEmpty() && !t.Implements(marshaler) && !reflect.PointerTo(t).Implements(marshaler) {
			schema.Type = &openapi3.Types{openapi3.TypeObject}
		}
	}
	if schema.Type.IsEmpty() {
		schema.Nullable = false
	}
	return nil
}

// operationID derives a stable id such as get_api_users_id.
func operationID(method, p string) string {
	path, _, _ := openAPIPath(p)
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	for _, part := range strings.Split(path, "/") {
		part = strings.Trim(part, "{}")
		if part == "" {
			continue
		}
		b.WriteByte('_')
		for _, c := range part {
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
				b.WriteRune(c)
			} else {
				b.WriteByte('_')
			}
		}
	}
	return b.String() + "_" + strconv.Itoa(len(path))
}
