package ai_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai"
)

// SplitFields gives the fields a decode into map[string]json.RawMessage gives (the last of a
// repeated key wins there too), and leaves what its walk cannot read to that decode.
func TestSplitFieldsIsWhatADecodeGives(t *testing.T) {
	for _, body := range []string{
		`{}`,
		` { "model" : "m", "messages":[{"role":"user","content":"a \"quoted\" }{ text"}],"stream":true } `,
		`{"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"n":2,"stop":null,"temperature":0.5,"seed":-1}`,
		`{"a":1,"a":2}`,
		`{"stream_options":{"include_usage":true},"logit_bias":{"1":-100}}`,
	} {
		got, ok := ai.SplitFields([]byte(body))
		var want map[string]json.RawMessage
		if err := json.Unmarshal([]byte(body), &want); err != nil {
			t.Fatal(err)
		}
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: split %q (ok %v), decode %q", body, got, ok, want)
		}
	}
	for _, body := range []string{`{"mod\u0065l":"m"}`, `{"a":1} x`, `[1]`, `{"a":1`, ``} {
		if f, ok := ai.SplitFields([]byte(body)); ok {
			t.Errorf("%s: split %q, want it left to the decoder", body, f)
		}
	}
}

// A streamed call always asks for the usage chunk: the client's stream_options is sent as written
// when it asks for nothing else, and with include_usage set, its other options kept, otherwise.
func TestBodyAsksForUsage(t *testing.T) {
	for _, tc := range []struct{ opts, want string }{
		{``, `{"model":"m","stream":true,"messages":[],"stream_options":{"include_usage":true}}`},
		{`{"include_usage":true}`, `{"model":"m","stream":true,"messages":[],"stream_options":{"include_usage":true}}`},
		{`{ "include_usage" : true }`, `{"model":"m","stream":true,"messages":[],"stream_options":{ "include_usage" : true }}`},
		{`{"include_usage":false}`, `{"model":"m","stream":true,"messages":[],"stream_options":{"include_usage":true}}`},
		{`{"include_usage":true,"x":1}`, `{"model":"m","stream":true,"messages":[],"stream_options":{"include_usage":true,"x":1}}`},
		{`{}`, `{"model":"m","stream":true,"messages":[],"stream_options":{"include_usage":true}}`},
	} {
		p := &ai.PassRequest{Fields: map[string]json.RawMessage{"messages": json.RawMessage(`[]`)}, Stream: true}
		if tc.opts != "" {
			p.Fields["stream_options"] = json.RawMessage(tc.opts)
		}
		if got := string(p.Body("m")); got != tc.want {
			t.Errorf("stream_options %s: body %s, want %s", tc.opts, got, tc.want)
		}
	}
}
