package ai_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
)

// A truncated answer before the first token is like a 5xx: the next model is tried. After the first
// token the call fails with upstream_truncated and no fallback (the client has seen part of it).
func TestRouterTruncatedBeforeFirstTokenFallsBackAfterItFails(t *testing.T) {
	t.Parallel()
	cut := aitest.New(aitest.Script{FailBefore: ai.Truncated("cut:m", "the stream ended without data: [DONE]", nil)})
	up := aitest.New(aitest.Script{Tokens: []string{"o", "k"}})
	r, err := ai.NewRouter(ai.RouterConfig{}, map[string]ai.Provider{"cut": cut, "up": up})
	if err != nil {
		t.Fatal(err)
	}
	ans, text, err := collect(t, r, []ai.ModelID{ai.MustParseModelID("cut:m"), ai.MustParseModelID("up:m")})
	if err != nil || text != "ok" || ans.Model.String() != "up:m" || len(ans.Attempts) != 1 || ans.Attempts[0].Reason != ai.ReasonTruncated {
		t.Fatalf("ans %+v text %q err %v", ans, text, err)
	}

	mid := aitest.New(aitest.Script{Tokens: []string{"par", "tial", "!"}, FailAfter: 2, FailAfterErr: ai.Truncated("mid:m", "reset", nil)})
	up2 := aitest.New(aitest.Script{})
	r, _ = ai.NewRouter(ai.RouterConfig{}, map[string]ai.Provider{"mid": mid, "up": up2})
	_, text, err = collect(t, r, []ai.ModelID{ai.MustParseModelID("mid:m"), ai.MustParseModelID("up:m")})
	var fe *ai.FailedError
	if !errors.As(err, &fe) || !fe.Emitted || ai.ReasonOf(err) != ai.ReasonTruncated || text != "partial" || up2.Calls() != 0 {
		t.Fatalf("err %v text %q fallback calls %d", err, text, up2.Calls())
	}
}

// A body that ends early is truncated; one that is not the JSON expected is an error, not retried as
// if cut; a body read that fails because the call was cancelled is cancelled.
func TestBodyEnded(t *testing.T) {
	t.Parallel()
	live := context.Background()
	if err := ai.BodyEnded(live, "p:m", fmt.Errorf("decode: %w", io.ErrUnexpectedEOF)); ai.ReasonOf(err) != ai.ReasonTruncated || !ai.IsRetryable(err) {
		t.Fatalf("cut body: %v", err)
	}
	var v struct{ A int }
	for _, bad := range []string{`{x`, `{"A":"one"}`} {
		jerr := json.NewDecoder(strings.NewReader(bad)).Decode(&v)
		if err := ai.BodyEnded(live, "p:m", fmt.Errorf("decode: %w", jerr)); ai.ReasonOf(err) != "error" || ai.IsRetryable(err) {
			t.Fatalf("%s: %v", bad, err)
		}
	}
	cancelled, cancel := context.WithCancel(live)
	cancel()
	if err := ai.BodyEnded(cancelled, "p:m", io.ErrUnexpectedEOF); ai.ReasonOf(err) != "cancelled" {
		t.Fatalf("cancelled: %v", err)
	}
}
