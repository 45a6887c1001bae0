package workersai_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/ai/workersai"
)

// Workers AI ends a streamed answer with "data: [DONE]" (it has no finish_reason); without it, or
// with the connection cut, the answer is upstream_truncated. A non-streamed answer cut off in its
// JSON is too.
func TestTruncatedAnswersAreUpstreamTruncated(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		end       aitest.Ending
		truncated bool
	}{
		{"done", aitest.EndComplete, false},
		{"EOF without [DONE]", aitest.EndEOF, true},
		{"connection reset mid-stream", aitest.EndReset, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(&aitest.Upstream{Tokens: []string{"Hel", "lo"}, End: tc.end})
			defer srv.Close()
			p, err := workersai.New(workersai.Config{AccountID: "acc1", APIToken: "cf-token", BaseURL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			req := ai.Request{Model: "@cf/meta/llama-3.1-8b-instruct", Messages: []ai.Message{{Role: "user", Content: "hi"}}}
			var deltas []string
			res, err := p.Stream(context.Background(), req, func(d string) error { deltas = append(deltas, d); return nil })
			if strings.Join(deltas, "") != "Hello" {
				t.Fatalf("deltas %q", deltas)
			}
			check(t, "stream", res, err, tc.truncated)
			res, err = p.Complete(context.Background(), req)
			check(t, "complete", res, err, tc.truncated)
		})
	}
}

func check(t *testing.T, what string, res ai.Result, err error, truncated bool) {
	t.Helper()
	if !truncated {
		if err != nil || res.Content != "Hello" {
			t.Fatalf("%s: %+v %v, want a complete answer", what, res, err)
		}
		return
	}
	if err == nil {
		t.Fatalf("%s: a truncated answer was accepted as complete: %+v", what, res)
	}
	if ai.ReasonOf(err) != ai.ReasonTruncated || !ai.IsRetryable(err) {
		t.Fatalf("%s: %v (reason %s), want a retryable %s", what, err, ai.ReasonOf(err), ai.ReasonTruncated)
	}
}
