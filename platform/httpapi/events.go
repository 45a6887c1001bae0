package httpapi

import (
	"reflect"
	"sort"

	"github.com/danielgtaylor/huma/v2"
)

// StreamEvent is one kind of server-sent event of a text/event-stream response, for the spec.
type StreamEvent struct {
	// Name is the event field ("token"); empty for a stream that sends data lines only (the
	// OpenAI-style chunk stream), whose events are all "message".
	Name string
	// Data is a value of the type the data line holds, encoded as JSON.
	Data any
	// Schema, when set, is the component name the event gets (TokenEvent); by default the name
	// is the data type's name with Event for Data (TokenData → TokenEvent).
	Schema      string
	Description string
}

// SSEExample is one event of an example stream.
type SSEExample struct {
	ID    int    `json:"id,omitempty"`
	Event string `json:"event,omitempty"`
	Data  any    `json:"data"`
}

// EventStream documents a text/event-stream response the way huma's sse package does (an array whose
// items are the possible events, each an object {id, event, data}), with each event a named
// component and the union named too, so openapi-typescript types the stream as a union
// discriminated by event and other generators get one type per event. The handler writes the stream
// itself; this only describes it.
func EventStream(api huma.API, union, description string, events []StreamEvent, example []SSEExample) *huma.MediaType {
	reg := api.OpenAPI().Components.Schemas
	var refs []*huma.Schema
	mapping := map[string]string{}
	sort.SliceStable(events, func(i, j int) bool { return events[i].Name < events[j].Name })
	for _, e := range events {
		t := reflect.TypeOf(e.Data)
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		data := reg.Schema(t, true, union+"Data")
		name := e.Schema
		if name == "" {
			name = eventSchemaName(t.Name())
		}
		ev := &huma.Schema{
			Type:        huma.TypeObject,
			Description: e.Description,
			Properties: map[string]*huma.Schema{
				"id":   {Type: huma.TypeInteger, Description: "The event id; send it as Last-Event-ID to resume after it."},
				"data": data,
			},
			Required:             []string{"data"},
			AdditionalProperties: false,
		}
		if e.Name != "" {
			ev.Properties["event"] = &huma.Schema{Type: huma.TypeString, Enum: []any{e.Name}, Description: "The event name."}
			ev.Required = []string{"event", "data"}
			mapping[e.Name] = schemaPrefix + name
		}
		reg.Map()[name] = ev
		refs = append(refs, &huma.Schema{Ref: schemaPrefix + name})
	}
	u := &huma.Schema{Description: description, OneOf: refs}
	if len(mapping) == len(events) {
		u.Discriminator = &huma.Discriminator{PropertyName: "event", Mapping: mapping}
	}
	reg.Map()[union] = u
	mt := &huma.MediaType{Schema: &huma.Schema{
		Type:        huma.TypeArray,
		Description: "Server-sent events, in order (each item is one event: its id, event and data lines; data is JSON).",
		Items:       &huma.Schema{Ref: schemaPrefix + union},
	}}
	if example != nil {
		mt.Example = example
	}
	return mt
}

func eventSchemaName(dataType string) string {
	if n := len(dataType); n > 4 && dataType[n-4:] == "Data" {
		return dataType[:n-4] + "Event"
	}
	return dataType + "Event"
}
