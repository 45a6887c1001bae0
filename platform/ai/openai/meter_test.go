package openai

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
)

// meterChunk's walk reads what decoding the chunk whole reads: the finish_reason, the usage, the
// number of choices and an error, for the chunks OpenAI and compatible servers send (recorded
// shapes: whitespace, tool calls, escapes, logprobs, extra fields) and malformed ones.
func TestMeterChunkReadsWhatADecodeReads(t *testing.T) {
	chunks := []string{
		`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`,
		`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":1}}}`,
		`{"id": "x", "choices": [ {"index": 0, "delta": {"content": "a \"finish_reason\":\"stop\" b"}, "finish_reason": "length"} ], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"time","arguments":"{\"tz\":\"}]\"}"}}]},"finish_reason":"tool_calls"}]}`,
		`{"choices":[{"index":0,"finish_reason":"st\u006fp"},{"index":1,"finish_reason":null}],"usage":null,"system_fingerprint":"fp_1","x_extra":[1,2.5e3,true,false,null,{"a":[]}]}`,
		`{"choices":[{"index":0,"delta":{},"finish_reason":"stop","logprobs":{"content":[{"token":"}","logprob":-0.1,"bytes":[125]}]}}]}`,
		`{"error":{"message":"The server had an error","type":"server_error"}}`,
		`{"error":null,"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}`,
		`{"choices":null,"usage":{"total_tokens":5}}`,
		`{"ch\u006fices":[{"finish_reason":"stop"}]}`,
		`{"choices":[{"finish_reason":"stop"}]`,
		`{"choices":[{"finish_reason":"stop"}]} trailing`,
		`[1,2]`,
		`{"usage":"none"}`,
		// Usage counts are walked too; what is not a plain count under its exact name is decoded.
		`{"choices":[],"usage":{"total_tokens":7,"prompt_tokens":3,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":2,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"accepted_prediction_tokens":0},"extra":{"a":[1]}}}`,
		`{"usage":{"prompt_tokens":3.0,"completion_tokens":-1}}`,
		`{"usage":{"prompt_tokens":null,"prompt_tokens_details":null,"completion_tokens_details":{}}}`,
		`{"usage":{"Prompt_Tokens":5,"prompt_tokens":6}}`,
		`{"usage":{"prompt_tokens":5,"prompt_tokens":6}}`,
		`{"usage":{"prompt_tokens_details":{"Cached_Tokens":5,"cached_tokens":1}}}`,
		`{"usage":{"prompt_tokens":1e2}}`,
		`{"usage":{"prompt_tokens":99999999999999999999}}`,
		`{"usage":{"pr\u006fmpt_tokens":4}}`,
		`{"usage":{ "prompt_tokens" : 8 , "total_tokens" : 9 }}`,
		`{"usage":{}}`,
		``,
	}
	for _, c := range chunks {
		var whole passChunk
		werr := json.Unmarshal([]byte(c), &whole)
		got, err := meterChunk([]byte(c))
		if (err != nil) != (werr != nil) {
			t.Errorf("%s: walk error %v, decode error %v", c, err, werr)
			continue
		}
		if werr != nil {
			continue
		}
		want := chunkMeter{usage: whole.Usage, choices: len(whole.Choices), err: whole.Error}
		for _, ch := range whole.Choices {
			if ch.FinishReason != nil && *ch.FinishReason != "" {
				want.finish = *ch.FinishReason
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v (usage %+v)\nwant %+v (usage %+v)", c, got, got.usage, want, want.usage)
		}
	}
}

func FuzzMeterChunk(f *testing.F) {
	f.Add(`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}`)
	f.Add(`{"choices":[],"usage":{"prompt_tokens":1}}`)
	f.Add(`{"error":{"message":"x"}}`)
	f.Add(`{"usage":{"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":2}}}`)
	f.Fuzz(func(t *testing.T, c string) {
		got, err := meterChunk([]byte(c))
		var whole passChunk
		if json.Unmarshal([]byte(c), &whole) != nil || err != nil {
			return // no panic is all a malformed chunk must give
		}
		if got.choices != len(whole.Choices) || !reflect.DeepEqual(got.usage, whole.Usage) || (got.err == nil) != (whole.Error == nil) {
			t.Fatalf("%s: walk %+v, decode %+v", c, got, whole)
		}
	})
}

// A non-streamed completion is metered by the same walk: its finish_reason and usage are read, and a
// body cut off mid-JSON (an upstream that gave up) is an error, never a completed call.
func TestPassReadsACompletionAndRefusesACutOne(t *testing.T) {
	for _, tc := range []struct {
		end aitest.Ending
		ok  bool
	}{{aitest.EndComplete, true}, {aitest.EndEOF, false}, {aitest.EndMidEvent, false}} {
		srv := httptest.NewServer(&aitest.Upstream{Tokens: []string{"Hel", "lo"}, End: tc.end})
		p, err := New(Config{BaseURL: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		res, err := p.Pass(context.Background(), ai.Request{Model: "m", Pass: &ai.PassRequest{Fields: map[string]json.RawMessage{"messages": json.RawMessage(`[{"role":"user","content":"hi"}]`)}}},
			func(b []byte) error { got = append(got, b...); return nil })
		srv.Close()
		if tc.ok {
			if err != nil || res.FinishReason != "stop" || res.Usage.TotalTokens != 12 || !res.Usage.Reported || !strings.Contains(string(got), `"content":"Hello"`) {
				t.Fatalf("end %d: %+v %v %s", tc.end, res, err, got)
			}
			continue
		}
		if err == nil || got != nil {
			t.Fatalf("end %d: a cut completion was passed on: %+v %s", tc.end, res, got)
		}
	}
}

// A streamed chunk goes out unread only when it holds no finish_reason, usage or error in any
// spacing OpenAI-compatible servers write.
func TestNeedsReading(t *testing.T) {
	for c, want := range map[string]bool{
		`{"choices":[{"index":0,"delta":{"content":"a"},"logprobs":null,"finish_reason":null}]}`:            false,
		`{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}],"usage":null}`:               false,
		`{"choices":[{"index":0,"delta":{"content":"\"usage\" is \"finish_reason\""}}]}`:                    false,
		`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`:                                       true,
		`{"choices":[{"index":0,"delta":{},"finish_reason": "length"}]}`:                                    true,
		`{"choices":[{"index":0,"delta":{},"finish_reason" :	"tool_calls"}]}`:                               true,
		`{"choices":[{"finish_reason":null,"delta":{"content":"finish_reason"}},{"finish_reason":"stop"}]}`: true,
		`{"choices":[],"usage":{"prompt_tokens":1}}`:                                                        true,
		`{"choices":[], "usage" : {"prompt_tokens":1}}`:                                                     true,
		`{"error":{"message":"overloaded"}}`:                                                                true,
	} {
		if got := needsReading([]byte(c)); got != want {
			t.Errorf("%s: needsReading %v, want %v", c, got, want)
		}
	}
}
