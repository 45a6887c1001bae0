package openai_test

import (
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/ai/openai"
)

// An answer is complete only when the upstream says so: "data: [DONE]" or a finish_reason when
// streamed, a whole JSON document when not. Anything else (a clean EOF, a body cut mid-event, a reset
// mid-stream) is upstream_truncated, retryable before the first token, never a complete answer.
func TestTruncatedAnswersAreUpstreamTruncated(t *testing.T) {
	t.Parallel()
	aitest.CheckEndings(t, "m", func(url string) (ai.Provider, error) { return openai.New(openai.Config{BaseURL: url}) },
		aitest.EndingCase{Name: "done", End: aitest.EndComplete},
		aitest.EndingCase{Name: "finish_reason without [DONE]", End: aitest.EndFinishOnly},
		aitest.EndingCase{Name: "EOF without [DONE] or finish_reason", End: aitest.EndEOF, Truncated: true},
		aitest.EndingCase{Name: "EOF in the middle of an event", End: aitest.EndMidEvent, Truncated: true},
		aitest.EndingCase{Name: "connection reset mid-stream", End: aitest.EndReset, Truncated: true})
}
