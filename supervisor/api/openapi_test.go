package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3gen"
)

// selfEncoded encodes itself (as a number), so its schema cannot say "object".
type selfEncoded struct{ v int }

func (s selfEncoded) MarshalJSON() ([]byte, error) { return json.Marshal(s.v) }

func TestSchemaNullability(t *testing.T) {
	var v struct {
		Slice      []int             `json:"slice"`
		Map        map[string]int    `json:"map"`
		Any        any               `json:"any"`
		AnyMap     map[string]any    `json:"any_map"`
		Raw        json.RawMessage   `json:"raw"`
		IntPtr     *int              `json:"int_ptr"`
		Empty      struct{}          `json:"empty"`
		EmptyPtr   *struct{}         `json:"empty_ptr"`
		Self       selfEncoded       `json:"self"`
		Time       time.Time         `json:"time"`
		StringPtrs map[string]*int64 `json:"string_ptrs"`
	}
	ref, err := openapi3gen.NewSchemaRefForValue(&v, openapi3.Schemas{}, openapi3gen.SchemaCustomizer(nullability))
	if err != nil {
		t.Fatal(err)
	}
	props := ref.Value.Properties
	cases := []struct {
		field, typ string // typ "" for no type: any JSON value, null included
		nullable   bool
	}{
		{"slice", "array", true},
		{"map", "object", true},
		{"any", "", false},
		{"any_map", "object", true},
		{"raw", "", false},
		{"int_ptr", "integer", true},
		{"empty", "object", false},
		{"empty_ptr", "object", true},
		{"self", "", false},
		{"time", "string", false},
		{"string_ptrs", "object", true},
	}
	for _, c := range cases {
		s := props[c.field].Value
		typ := ""
		if !s.Type.IsEmpty() {
			typ = s.Type.Slice()[0]
		}
		if typ != c.typ || s.Nullable != c.nullable {
			t.Errorf("%s: type %q nullable %v, want type %q nullable %v", c.field, typ, s.Nullable, c.typ, c.nullable)
		}
	}
	if s := props["any_map"].Value.AdditionalProperties.Schema.Value; s.Nullable || !s.Type.IsEmpty() {
		t.Errorf("map[string]any values: type %v nullable %v, want a bare schema", s.Type, s.Nullable)
	}
	if s := props["string_ptrs"].Value.AdditionalProperties.Schema.Value; !s.Nullable || !s.Type.Is("integer") {
		t.Errorf("map[string]*int64 values: type %v nullable %v, want a nullable integer", s.Type, s.Nullable)
	}
}
