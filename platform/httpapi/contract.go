package httpapi

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

// The contract: what every operation of the spec carries without its module having to say it. A
// module registers an operation with an operation id, a tag from TagDescriptions, a summary and a
// description, and `example:` tags on the fields whose values a generated example cannot guess (ids
// with a pattern, say); the hook below adds the rest: the servers, the security it needs (none for a
// Public one, stated as `security: []`), a named schema for an anonymous request or response body
// (<OperationId>Input / <OperationId>Output instead of huma's DeleteOutputBody1), a 413 even on a
// public operation, and an example request and response built from the schemas. openapi_test.go
// (cmd/crispy) and the spec lint hold every operation to it.

// TagDescriptions describe the tags operations are grouped by; an operation's tag must be one of
// them (a test fails otherwise). A new group adds one line here.
var TagDescriptions = map[string]string{
	"chat":          "Chat with persisted sessions: send a message (server-sent events or JSON), resume a stream, read or delete a session, list sessions, text to speech.",
	"openai":        "OpenAI-compatible endpoints under /v1, for the official OpenAI SDKs with a tenant key.",
	"retrieval":     "The tenant's documents: ingest, search (retrieval-augmented) and delete, and the search cache's metrics.",
	"tools":         "Tool plugins: list their schemas, execute one, and their execution metrics.",
	"observability": "Usage, cost, SLIs, alert rules and anomalies of the tenant; the audit log with its proofs; Prometheus metrics.",
	"health":        "Liveness (no tenant) and the health of each backend.",
	"admin":         "Administration of tenants and their API keys (an admin credential).",
	"documents":     "The tenant's documents as resources: list, read and replace them.",
}

// DefaultServer is the spec's server: relative, so the spec names whichever server serves it (the
// docs page's requests go back to the same server). Clients set their deployment's base URL.
const DefaultServer = "/"

// Security scheme names of the spec.
const (
	SchemeBearer = "bearerAuth"
	SchemeAPIKey = "apiKey"
)

// describeContract sets what the spec says once: servers, security schemes, tags, contact.
func describeContract(hc *huma.Config) {
	o := hc.OpenAPI
	o.Servers = []*huma.Server{{URL: DefaultServer, Description: "The server this document is served from (crispy serve listens on :8080 by default); generated clients take the base URL as a parameter"}}
	o.Info.Contact = &huma.Contact{Name: "Crispy Enigma"}
	o.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		SchemeBearer: {Type: "http", Scheme: "bearer", Description: "The tenant's API key as a bearer token (Authorization: Bearer <key>), as the OpenAI SDKs send it. Required when the tenant has keys configured."},
		SchemeAPIKey: {Type: "apiKey", In: "header", Name: "x-api-key", Description: "The tenant's API key in x-api-key (same keys as bearerAuth). Required when the tenant has keys configured."},
	}
	names := make([]string, 0, len(TagDescriptions))
	for n := range TagDescriptions {
		names = append(names, n)
	}
	sort.Strings(names)
	o.Tags = nil
	for _, n := range names {
		o.Tags = append(o.Tags, &huma.Tag{Name: n, Description: TagDescriptions[n]})
	}
}

// contractOperation is the OnAddOperation hook that completes every operation.
func contractOperation(oapi *huma.OpenAPI, op *huma.Operation) {
	if isPublic(op) {
		op.Security = []map[string][]string{} // stated: no credential needed
		if op.Responses == nil {
			op.Responses = map[string]*huma.Response{}
		}
		if _, ok := op.Responses["413"]; !ok {
			// Every request passes the body limit, a public one too.
			op.Responses["413"] = ProblemResponse("Body over 1 MiB")
		}
	} else {
		// A key in either header, or none for a tenant without keys.
		op.Security = []map[string][]string{{SchemeBearer: {}}, {SchemeAPIKey: {}}, {}}
	}
	nameBodies(oapi, op)
	for _, p := range op.Parameters {
		moveExtensions(oapi, p.Schema)
	}
	if op.RequestBody != nil {
		for _, mt := range op.RequestBody.Content {
			moveExtensions(oapi, mt.Schema)
			addExample(oapi, mt)
		}
	}
	for code, r := range op.Responses {
		for _, mt := range r.Content {
			moveExtensions(oapi, mt.Schema)
			if strings.HasPrefix(code, "2") {
				addExample(oapi, mt)
			}
		}
	}
	if strings.HasPrefix(op.Path, "/v1/") {
		describeOpenAIErrors(oapi, op)
	}
}

// describeOpenAIErrors states what the server sends under /v1/: every error there is re-shaped into
// OpenAI's envelope (openai.go), so a client generated from the spec, or an OpenAI SDK, reads the
// error it gets rather than a problem document that never comes.
func describeOpenAIErrors(oapi *huma.OpenAPI, op *huma.Operation) {
	oapi.Components.Schemas.Schema(reflect.TypeFor[OpenAIErrorBody](), true, "OpenAIErrorBody")
	for code, r := range op.Responses {
		if strings.HasPrefix(code, "2") || r == nil || r.Content == nil {
			continue
		}
		r.Content = map[string]*huma.MediaType{
			"application/json": {Schema: &huma.Schema{Ref: "#/components/schemas/OpenAIErrorBody"}},
		}
	}
}

// nameBodies gives an anonymous request or response body (a Body struct declared inline in an
// Input/Output type) a name from the operation: huma names it after the Go type (ListOutputBody)
// and numbers the clashes between modules (DeleteOutputBody1), which generated clients turn into
// type names nobody can guess.
func nameBodies(oapi *huma.OpenAPI, op *huma.Operation) {
	if op.OperationID == "" {
		return
	}
	base := pascal(op.OperationID)
	rename := func(mt *huma.MediaType, suffix string) {
		if mt == nil || mt.Schema == nil || !strings.HasPrefix(mt.Schema.Ref, schemaPrefix) {
			return
		}
		reg := oapi.Components.Schemas
		if t := reg.TypeFromRef(mt.Schema.Ref); t == nil || t.Name() != "" {
			return // a named Go type keeps its name
		}
		old := strings.TrimPrefix(mt.Schema.Ref, schemaPrefix)
		name := base + suffix
		m := reg.Map()
		if old == name || m[old] == nil {
			return
		}
		if _, taken := m[name]; taken {
			panic(fmt.Sprintf("httpapi: schema name %s is taken; operation %s needs another id", name, op.OperationID))
		}
		m[name] = m[old]
		delete(m, old)
		// In place: huma validates request bodies through this very ref.
		mt.Schema.Ref = schemaPrefix + name
	}
	if op.RequestBody != nil {
		for _, mt := range op.RequestBody.Content {
			rename(mt, "Input")
		}
	}
	for code, r := range op.Responses {
		if strings.HasPrefix(code, "2") {
			for _, mt := range r.Content {
				rename(mt, "Output")
			}
		}
	}
}

const schemaPrefix = "#/components/schemas/"

// pascal turns an operation id (send-chat-message) into a type name (SendChatMessage).
func pascal(id string) string {
	var b strings.Builder
	for _, w := range strings.FieldsFunc(id, func(r rune) bool { return r == '-' || r == '_' || r == '.' || r == ' ' }) {
		b.WriteString(strings.ToUpper(w[:1]) + w[1:])
	}
	return b.String()
}

// walkSchemas visits sc and every schema inside it once, following $refs.
func walkSchemas(oapi *huma.OpenAPI, sc *huma.Schema, visit func(*huma.Schema)) {
	seen := map[*huma.Schema]bool{}
	var walk func(sc *huma.Schema)
	walk = func(sc *huma.Schema) {
		for sc != nil && sc.Ref != "" {
			sc = oapi.Components.Schemas.SchemaFromRef(sc.Ref)
		}
		if sc == nil || seen[sc] {
			return
		}
		seen[sc] = true
		visit(sc)
		walk(sc.Items)
		for _, p := range sc.Properties {
			walk(p)
		}
		if ap, ok := sc.AdditionalProperties.(*huma.Schema); ok {
			walk(ap)
		}
		for _, group := range [][]*huma.Schema{sc.OneOf, sc.AnyOf, sc.AllOf} {
			for _, sub := range group {
				walk(sub)
			}
		}
	}
	walk(sc)
}

// moveExtensions renders huma's patternDescription, which is not an OpenAPI keyword (Redocly's
// struct rule refuses it), as x-pattern-description. Validation keeps its message: huma computed it
// when it built the schema.
func moveExtensions(oapi *huma.OpenAPI, sc *huma.Schema) {
	walkSchemas(oapi, sc, func(s *huma.Schema) {
		if s.PatternDescription == "" {
			return
		}
		if s.Extensions == nil {
			s.Extensions = map[string]any{}
		}
		s.Extensions["x-pattern-description"] = s.PatternDescription
		s.PatternDescription = ""
	})
}

// addExample gives a media type an example built from its schema (the fields' `example:` tags,
// defaults and enums first), unless the operation wrote its own.
func addExample(oapi *huma.OpenAPI, mt *huma.MediaType) {
	if mt == nil || mt.Schema == nil || mt.Example != nil || len(mt.Examples) > 0 {
		return
	}
	if ex, ok := exampleOf(oapi, mt.Schema, 0); ok {
		mt.Example = ex
	}
}

// exampleOf makes a value that satisfies sc, as far as a schema without an example can say.
func exampleOf(oapi *huma.OpenAPI, sc *huma.Schema, depth int) (any, bool) {
	for sc != nil && sc.Ref != "" {
		sc = oapi.Components.Schemas.SchemaFromRef(sc.Ref)
	}
	if sc == nil || depth > 8 {
		return nil, false
	}
	switch {
	case len(sc.Examples) > 0:
		return sc.Examples[0], true
	case sc.Default != nil:
		return sc.Default, true
	case sc.Const != nil:
		return sc.Const, true
	case len(sc.Enum) > 0:
		return sc.Enum[0], true
	}
	for _, group := range [][]*huma.Schema{sc.OneOf, sc.AnyOf, sc.AllOf} {
		if len(group) > 0 {
			return exampleOf(oapi, group[0], depth+1)
		}
	}
	switch sc.Type {
	case huma.TypeObject, "":
		obj := map[string]any{}
		for name, p := range sc.Properties {
			if v, ok := exampleOf(oapi, p, depth+1); ok {
				obj[name] = v
			}
		}
		if len(sc.Properties) == 0 {
			if ap, ok := sc.AdditionalProperties.(*huma.Schema); ok {
				if v, ok := exampleOf(oapi, ap, depth+1); ok {
					obj["name"] = v
				}
			}
		}
		return obj, true // an untyped schema (any JSON) shows an empty object
	case huma.TypeArray:
		v, ok := exampleOf(oapi, sc.Items, depth+1)
		if !ok {
			return []any{}, true
		}
		n := 1
		if sc.MinItems != nil && *sc.MinItems > 1 {
			n = *sc.MinItems
		}
		arr := make([]any, n)
		for i := range arr {
			arr[i] = v
		}
		return arr, true
	case huma.TypeString:
		return stringExample(sc), true
	case huma.TypeInteger:
		return int(numberExample(sc)), true
	case huma.TypeNumber:
		return numberExample(sc), true
	case huma.TypeBoolean:
		return true, true
	}
	return nil, false
}

func stringExample(sc *huma.Schema) string {
	switch sc.Format {
	case "date-time":
		return "2026-11-29T14:00:00Z"
	case "date":
		return "2026-11-29"
	case "uuid":
		return "0b0f6a52-6f7e-4c55-9a8e-3f3d2f1c9b10"
	case "uri", "url":
		return "https://docs.example.org/handbook"
	case "email":
		return "someone@example.org"
	}
	s := "string"
	if sc.MinLength != nil && *sc.MinLength > len(s) {
		s += strings.Repeat("x", *sc.MinLength-len(s))
	}
	if sc.MaxLength != nil && *sc.MaxLength < len(s) {
		s = s[:*sc.MaxLength]
	}
	return s
}

func numberExample(sc *huma.Schema) float64 {
	v := 1.0
	if sc.Minimum != nil && *sc.Minimum > v {
		v = *sc.Minimum
	}
	if sc.ExclusiveMinimum != nil && *sc.ExclusiveMinimum >= v {
		v = *sc.ExclusiveMinimum + 1
	}
	if sc.Maximum != nil && *sc.Maximum < v {
		v = *sc.Maximum
	}
	return v
}

// emptySlices is a response transformer: a nil slice anywhere in a JSON body is sent as [] (the
// spec says arrays are never null, so clients need no null check). Values are copied where they
// change, never modified in place: a body may share memory with a cache.
func emptySlices(_ huma.Context, _ string, v any) (any, error) {
	if v == nil {
		return v, nil
	}
	if nv, changed := fillSlices(reflect.ValueOf(v), 0); changed {
		return nv.Interface(), nil
	}
	return v, nil
}

var (
	jsonMarshaler = reflect.TypeFor[interface{ MarshalJSON() ([]byte, error) }]()
	textMarshaler = reflect.TypeFor[interface{ MarshalText() ([]byte, error) }]()
)

// fillSlices returns v with its nil slices made empty, and whether anything changed.
func fillSlices(v reflect.Value, depth int) (reflect.Value, bool) {
	if depth > 32 || !v.IsValid() {
		return v, false
	}
	t := v.Type()
	if t.Implements(jsonMarshaler) || t.Implements(textMarshaler) {
		return v, false // it says how it is encoded
	}
	switch v.Kind() {
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return v, false // []byte and json.RawMessage: base64 or raw JSON, not an array
		}
		if v.IsNil() {
			return reflect.MakeSlice(t, 0, 0), true
		}
		var out reflect.Value
		for i := 0; i < v.Len(); i++ {
			nv, changed := fillSlices(v.Index(i), depth+1)
			if !changed {
				continue
			}
			if !out.IsValid() {
				out = reflect.MakeSlice(t, v.Len(), v.Len())
				reflect.Copy(out, v)
			}
			out.Index(i).Set(nv)
		}
		if out.IsValid() {
			return out, true
		}
	case reflect.Pointer:
		if v.IsNil() {
			return v, false
		}
		nv, changed := fillSlices(v.Elem(), depth+1)
		if changed {
			p := reflect.New(t.Elem())
			p.Elem().Set(nv)
			return p, true
		}
	case reflect.Interface:
		if v.IsNil() {
			return v, false
		}
		nv, changed := fillSlices(v.Elem(), depth+1)
		if changed {
			out := reflect.New(t).Elem()
			out.Set(nv)
			return out, true
		}
	case reflect.Struct:
		var out reflect.Value
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() || f.Tag.Get("json") == "-" {
				continue
			}
			nv, changed := fillSlices(v.Field(i), depth+1)
			if !changed {
				continue
			}
			if !out.IsValid() {
				out = reflect.New(t).Elem()
				out.Set(v)
			}
			out.Field(i).Set(nv)
		}
		if out.IsValid() {
			return out, true
		}
	case reflect.Map:
		if v.IsNil() {
			return v, false
		}
		var out reflect.Value
		iter := v.MapRange()
		for iter.Next() {
			nv, changed := fillSlices(iter.Value(), depth+1)
			if !changed {
				continue
			}
			if !out.IsValid() {
				out = reflect.MakeMapWithSize(t, v.Len())
				for _, k := range v.MapKeys() {
					out.SetMapIndex(k, v.MapIndex(k))
				}
			}
			out.SetMapIndex(iter.Key(), nv)
		}
		if out.IsValid() {
			return out, true
		}
	}
	return v, false
}
