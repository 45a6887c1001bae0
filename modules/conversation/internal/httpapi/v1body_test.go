package httpapi

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai"
	platformhttp "github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
)

// v1BodyCheck is the bodyCheck of /v1/chat/completions on a server as cmd/crispy builds it.
func v1BodyCheck(t testing.TB) *bodyCheck {
	t.Helper()
	srv, err := platformhttp.New(platformhttp.Config{}, platformhttp.Deps{Guard: httpapitest.HeaderGuard{}})
	if err != nil {
		t.Fatal(err)
	}
	registerOpenAI(srv.API, nil)
	op := srv.API.OpenAPI().Paths["/v1/chat/completions"].Post
	c, ok := op.Metadata[bodyCheckKey].(*bodyCheck)
	if !ok || !op.SkipValidateBody {
		t.Fatal("the operation does not validate its own body")
	}
	return c
}

// checkFastAgrees fails when decodeFast accepts a body that huma's validator refuses, or decodes
// it otherwise than the struct decode (the fields the handlers read) and SplitFields.
func checkFastAgrees(t *testing.T, c *bodyCheck, body []byte) (fast bool) {
	fastIn := &CompletionsInput{RawBody: body}
	if !fastIn.decodeFast("application/json") {
		return false
	}
	slowIn := &CompletionsInput{RawBody: body}
	if errs := c.decode("application/json", slowIn); len(errs) > 0 {
		t.Fatalf("%s: decodeFast accepts it, huma's validator says %v", body, errs)
	}
	f, s := fastIn.body, slowIn.body
	// Passed through as the client's bytes: not decoded by the fast path.
	s.Stop, s.ToolChoice, s.ResponseFormat, s.ParallelToolCalls, s.LogitBias = nil, nil, nil, nil, nil
	for i := range s.Messages {
		if string(s.Messages[i].Content) == "null" {
			s.Messages[i].Content = nil
		}
	}
	if !reflect.DeepEqual(f, s) {
		t.Fatalf("%s: decodeFast %+v, struct decode %+v", body, f, s)
	}
	split, ok := ai.SplitFields(body)
	if !ok {
		if err := json.Unmarshal(body, &split); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(map[string]json.RawMessage(fastIn.fields), split) {
		t.Fatalf("%s: fields %v, split %v", body, fastIn.fields, split)
	}
	return true
}

var v1BodySeeds = []string{
	`{"model":"fake:m","messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"fake:m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"How are you today?"}]}`,
	` {"model":"ünï","messages":[{"role":"system","content":null},{"role":"user","content":[{"type":"text","text":"hi"}],"name":"ann","x":1}]} `,
	`{"model":"m","messages":[{"role":"tool","content":"{}"}],"max_tokens":0,"max_completion_tokens":12,"n":128,"top_logprobs":0,"seed":-9007199254740991,` +
		`"temperature":0.7,"top_p":1,"frequency_penalty":-2,"presence_penalty":2e0,"user":"u","stop":null,"tool_choice":{"type":"function"},` +
		`"parallel_tool_calls":false,"response_format":{"type":"json_object"},"logprobs":true,"tools":[{"type":"function","function":{"name":"w"}}],"other":[1,{"a":null}]}`,
	`{"model":"m","messages":[{"role":"user"}],"stream_options":{"include_usage":false,"x":[]}}`,
	// Refused, or left to the validator.
	`{"model":"m","messages":[{"role":"user","content":"hi"}],"n":0}`,
	`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":1.0}`,
	`{"model":"m","messages":[{"role":"user","content":"hi"}],"seed":1e3}`,
	`{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":"1"}`,
	`{"model":"m","messages":[{"role":"User","content":"hi"}]}`,
	`{"model":"m","messages":[{"ROLE":"user","role":"user","content":"hi"}]}`,
	`{"model":"m","Messages":[],"messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream_options":{"Include_Usage":1}}`,
	`{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"},null]}`,
	`{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":[]}`,
	`{"model":5,"messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"m","messages":{}}`,
	`{"model":"m","messages":[{"role":"user","content":"hi"}]}x`,
	`{"model":"m","messages":[{"role":"user","content":"hi"}],"user":"` + strings.Repeat("ü", 257) + `"}`,
}

// The fast path accepts only what huma's validator accepts, decoded alike; the common bodies take it.
func TestDecodeFastAgreesWithHuma(t *testing.T) {
	t.Parallel()
	c := v1BodyCheck(t)
	for i, s := range v1BodySeeds {
		fast := checkFastAgrees(t, c, []byte(s))
		if want := i < 5; fast != want {
			t.Errorf("%s: fast path %v, want %v", s, fast, want)
		}
	}
}

func FuzzDecodeFast(f *testing.F) {
	for _, s := range v1BodySeeds {
		f.Add([]byte(s))
	}
	c := v1BodyCheck(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		checkFastAgrees(t, c, body)
	})
}

// decodeFast repeats the schema's bounds as literals (maxLength, minimum/maximum, maxItems):
// bodies at every bound the schema declares take the fast path, and bodies just past it agree
// with huma's validator, so a bound changed in the schema but not in decodeFast fails here.
func TestDecodeFastFollowsTheSchemasBounds(t *testing.T) {
	t.Parallel()
	c := v1BodyCheck(t)
	s := c.schema
	if s.Ref != "" {
		s = c.api.OpenAPI().Components.Schemas.SchemaFromRef(s.Ref)
	}
	msg := map[string]any{"role": "user", "content": "hi"}
	tool := map[string]any{"type": "function", "function": map[string]any{"name": "w"}}
	body := func(name string, v any) []byte {
		m := map[string]any{"model": "m", "messages": []any{msg}}
		m[name] = v
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	repeat := func(x any, n int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = x
		}
		return out
	}
	items := map[string]any{"messages": msg, "tools": tool}
	checked := 0
	for name, p := range s.Properties {
		var at, past []any
		if p.Maximum != nil {
			at, past = append(at, *p.Maximum), append(past, *p.Maximum+1)
		}
		if p.Minimum != nil {
			at, past = append(at, *p.Minimum), append(past, *p.Minimum-1)
		}
		if p.MaxLength != nil {
			at, past = append(at, strings.Repeat("ü", *p.MaxLength)), append(past, strings.Repeat("ü", *p.MaxLength+1))
		}
		if p.MaxItems != nil {
			x, ok := items[name]
			if !ok {
				t.Fatalf("%s has maxItems: give the test an item of it", name)
			}
			at, past = append(at, repeat(x, *p.MaxItems)), append(past, repeat(x, *p.MaxItems+1))
		}
		for _, v := range at {
			checked++
			if b := body(name, v); !checkFastAgrees(t, c, b) {
				t.Errorf("%s at the schema's bound (%.60s…) does not take the fast path", name, b)
			}
		}
		for _, v := range past {
			if b := body(name, v); checkFastAgrees(t, c, b) {
				t.Errorf("%s past the schema's bound (%.60s…) takes the fast path", name, b)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d bounds found in the schema", checked)
	}
}
