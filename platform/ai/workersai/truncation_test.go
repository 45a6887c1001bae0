package workersai_test

import (
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/ai/workersai"
)

// Workers AI ends a streamed answer with "data: [DONE]" (it has no finish_reason); without it, with
// the body cut mid-event or the connection cut, the answer is upstream_truncated. A non-streamed
// answer cut off in its JSON is too.
func TestTruncatedAnswersAreUpstreamTruncated(t *testing.T) {
	t.Parallel()
	aitest.CheckEndings(t, "@cf/meta/llama-3.1-8b-instruct", func(url string) (ai.Provider, error) {
		return workersai.New(workersai.Config{AccountID: "acc1", APIToken: "cf-token", BaseURL: url})
	},
		aitest.EndingCase{Name: "done", End: aitest.EndComplete},
		aitest.EndingCase{Name: "EOF without [DONE]", End: aitest.EndEOF, Truncated: true},
		aitest.EndingCase{Name: "EOF in the middle of an event", End: aitest.EndMidEvent, Truncated: true},
		aitest.EndingCase{Name: "connection reset mid-stream", End: aitest.EndReset, Truncated: true})
}
