package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/crispy-enigma/crispy/platform/ai"
)

// parseModelAliases reads CRISPY_MODEL_ALIASES: name=provider:model pairs separated by commas.
func parseModelAliases(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		name, model, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if _, err := ai.ParseModelID(model); !ok || name == "" || strings.Contains(name, ":") || err != nil {
			return nil, fmt.Errorf("CRISPY_MODEL_ALIASES: %q is not name=provider:model; fix: e.g. CRISPY_MODEL_ALIASES=fast=openai:gpt-4o-mini,local=builtin:offline", pair)
		}
		out[name] = model
	}
	return out, nil
}

// parseModelMaxTokens reads CRISPY_MODEL_MAX_TOKENS: provider:model=tokens pairs separated by
// commas, the default max_tokens of a call to that model that names none.
func parseModelMaxTokens(s string) (map[string]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]int{}
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		i := strings.LastIndexByte(pair, '=')
		n, err := 0, error(nil)
		if i > 0 {
			n, err = strconv.Atoi(pair[i+1:])
		}
		if i <= 0 || err != nil || n <= 0 || n > 1_000_000 {
			return nil, fmt.Errorf("CRISPY_MODEL_MAX_TOKENS: %q is not provider:model=tokens (1 to 1000000); fix: e.g. CRISPY_MODEL_MAX_TOKENS=openai:gpt-4o-mini=512,openai:gpt-4o=2048", pair)
		}
		if _, err := ai.ParseModelID(pair[:i]); err != nil {
			return nil, fmt.Errorf("CRISPY_MODEL_MAX_TOKENS: %q: %w", pair, err)
		}
		out[pair[:i]] = n
	}
	return out, nil
}
