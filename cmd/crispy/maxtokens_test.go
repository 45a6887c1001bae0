package main

import (
	"strings"
	"testing"
)

// CRISPY_MODEL_MAX_TOKENS: provider:model=n pairs (model ids may hold '/', '@', '.'), and a bad
// pair is refused with the variable and an example.
func TestParseModelMaxTokens(t *testing.T) {
	got, err := parseModelMaxTokens(" openai:gpt-4o-mini=512, workers-ai:@cf/meta/llama-3.1-8b-instruct=2048 ")
	if err != nil || len(got) != 2 || got["openai:gpt-4o-mini"] != 512 || got["workers-ai:@cf/meta/llama-3.1-8b-instruct"] != 2048 {
		t.Fatalf("parse = %v, %v", got, err)
	}
	if got, err := parseModelMaxTokens(""); err != nil || got != nil {
		t.Fatalf("empty = %v, %v", got, err)
	}
	for _, bad := range []string{"openai:gpt-4o", "openai:gpt-4o=0", "openai:gpt-4o=-5", "openai:gpt-4o=many", "gpt-4o=512", "=512", "openai:gpt-4o=2000000"} {
		if _, err := parseModelMaxTokens(bad); err == nil || !strings.Contains(err.Error(), "CRISPY_MODEL_MAX_TOKENS") {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}
