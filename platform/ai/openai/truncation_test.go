package openai_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/ai/openai"
)

// An answer is complete only when the upstream says so: "data: [DONE]" or a finish_reason when
// streamed, a whole JSON document when not. Anything else (a clean EOF, a reset mid-stream) is
// upstream_truncated, retryable before the first token, never a complete answer.
func TestTruncatedAnswersAreUpstreamTruncated(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		end       aitest.Ending
		truncated bool
	}{
		{"done", aitest.EndComplete, false},
		{"finish_reason without [DONE]", aitest.EndFinishOnly, false},
		{"EOF without [DONE] or finish_reason", aitest.EndEOF, true},
		{"connection reset mid-stream", aitest.EndReset, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(&aitest.Upstream{Tokens: []string{"Hel", "lo"}, End: tc.end})
			defer srv.Close()
			p, err := openai.New(openai.Config{BaseURL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			req := ai.Request{Model: "m", Messages: []ai.Message{{Role: "user", Content: "hi"}}}
			var deltas []string
			res, err := p.Stream(context.Background(), req, func(d string) error { deltas = append(deltas, d); return nil })
			if strings.Join(deltas, "") != "Hello" {
				t.Fatalf("deltas %q", deltas)
			}
			checkTruncation(t, "stream", res, err, tc.truncated)
			res, err = p.Complete(context.Background(), req)
			checkTruncation(t, "complete", res, err, tc.truncated)
		})
	}
}

func checkTruncation(t *testing.T, what string, res ai.Result, err error, truncated bool) {
	t.Helper()
	if !truncated {
		if err != nil || res.Content != "Hello" || res.FinishReason != "stop" {
			t.Fatalf("%s: %+v %v, want a complete answer", what, res, err)
		}
		return
	}
	if err == nil {
		t.Fatalf("%s: a truncated answer was accepted as complete: %+v", what, res)
	}
	if ai.ReasonOf(err) != ai.ReasonTruncated || !ai.IsRetryable(err) {
		t.Fatalf("%s: %v (reason %s, retryable %v), want a retryable %s", what, err, ai.ReasonOf(err), ai.IsRetryable(err), ai.ReasonTruncated)
	}
}
