package tooling_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
)

// FuzzExecuteToolRequest sends arbitrary bodies to POST /tools/execute with a real plugin process
// behind it: whatever arrives (params the tool's schema refuses, names of no tool, bad text), the
// answer is never a 5xx of the client's making, and every error is a problem JSON with its status,
// code and requestId within 8 KB.
func FuzzExecuteToolRequest(f *testing.F) {
	for _, b := range []string{
		`{"tool_name":"echo","params":{"mode":"ok","text":"hello","n":3}}`,
		`{"tool_name":"echo","params":{"mode":"nope"}}`, `{"tool_name":"echo","params":{"mode":"ok","n":11,"extra":1}}`,
		`{"tool_name":"echo","params":{}}`, `{"tool_name":"echo"}`, `{"tool_name":"echo","params":null}`,
		`{"tool_name":"echo","params":[]}`, `{"tool_name":"echo","params":"x"}`, `{"tool_name":"echo","params":{"text":1}}`,
		`{"tool_name":"echo","params":{"text":"` + strings.Repeat("x", 100_000) + `"}}`,
		`{"tool_name":"echo","params":{"text":"a\u0000"}}`, "{\"tool_name\":\"echo\",\"params\":{\"text\":\"\xff\"}}",
		`{"tool_name":"nope","params":{}}`, `{"tool_name":"","params":{}}`, `{"tool_name":"  "}`,
		`{"tool_name":"echo","params":{"text":"x"},"user_id":"u"}`, `{"tool_name":"echo","params":{"a":{"b":{"c":[[[[1]]]]}}}}`,
		`{"tool_name":"echo","unknown":true}`, `null`, `[]`, `{`, ``,
	} {
		f.Add([]byte(b))
	}
	e := newEnv(f, pluginsDir(f, "echo"), opts{})
	f.Fuzz(func(t *testing.T, body []byte) {
		if harmfulMode(body) {
			return
		}
		w := httpapitest.Send(e.h, http.MethodPost, "/tools/execute", "acme", body)
		if err := httpapitest.CheckRecorded(w); err != nil {
			t.Fatalf("POST /tools/execute %.200q: %v", body, err)
		}
	})
}

// harmfulMode reports whether the body asks the test plugin to crash, hang, sleep, fail or hold
// memory: those are the plugin's failures on purpose (502/504 by design, covered by the host's own
// tests), not answers to bad input, and "hold" would take gigabytes from a shared machine.
func harmfulMode(body []byte) bool {
	var b struct {
		Params struct {
			Mode any `json:"mode"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &b) != nil {
		return false // not an object with params: nothing reaches the plugin
	}
	m, ok := b.Params.Mode.(string)
	return ok && m != "ok"
}
