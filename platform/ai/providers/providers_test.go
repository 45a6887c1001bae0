package providers_test

import (
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai/providers"
)

func TestBuild(t *testing.T) {
	t.Parallel()
	b, err := providers.Build(providers.Config{})
	if err != nil || b.DefaultModel.String() != "builtin:offline" || b.Speaker != nil || !b.Router.Has("builtin") {
		t.Fatalf("%+v %v", b, err)
	}
	b, err = providers.Build(providers.Config{OpenAIBaseURL: "http://localhost:11434", CFAccountID: "a", CFAPIToken: "t"})
	if err != nil || b.DefaultModel.String() != "openai:gpt-4o-mini" || b.Speaker == nil || !b.Router.Has("workers-ai") {
		t.Fatalf("%+v %v", b, err)
	}
	if _, err := providers.Build(providers.Config{CFAccountID: "a"}); err == nil {
		t.Fatal("account without token accepted")
	}
}
