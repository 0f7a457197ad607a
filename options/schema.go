package options

// Schema returns a JSON Schema (OpenAPI 3) fragment describing the option's value, for
// rendering the training forms in the OpenAPI description: type, description (the
// help), default, enum, minimum/maximum, and items for lists. Form fields are strings
// on the wire; the schema describes the value they must parse to.
func (o Option) Schema() map[string]any {
	s := map[string]any{"type": o.Type.SchemaType(), "description": o.Help}
	if o.Default != nil {
		s["default"] = o.Default
	}
	if o.Type == Enum && len(o.Values) > 0 {
		s["enum"] = o.Values
	}
	if o.Type == List {
		items := map[string]any{"type": "string"}
		if len(o.Values) > 0 {
			items["enum"] = o.Values
		}
		s["items"] = items
	}
	if o.Range.Min != nil {
		s["minimum"] = *o.Range.Min
	}
	if o.Range.Max != nil {
		s["maximum"] = *o.Range.Max
	}
	if !o.Required {
		s["nullable"] = true
	}
	if len(o.Aliases) > 0 {
		s["x-aliases"] = o.Aliases
	}
	if o.Permission != "" {
		s["x-permission"] = o.Permission
	}
	if o.ServerOnly {
		s["x-server-only"] = true
	}
	if len(o.Families) > 0 {
		s["x-model-families"] = o.Families
	}
	if len(o.ModelTypes) > 0 {
		s["x-model-types"] = o.ModelTypes
	}
	return s
}
