package main

import (
	"fmt"
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
