package ai

import (
	"fmt"
	"regexp"
	"strings"
)

// ModelID names a model as "provider:model", e.g. "openai:gpt-4o-mini",
// "workers-ai:@cf/meta/llama-3.1-8b-instruct", "builtin:offline".
type ModelID struct {
	Provider string
	Model    string
}

var (
	providerPattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	modelPattern    = regexp.MustCompile(`^[A-Za-z0-9@._/:+-]{1,200}$`)
)

// ParseModelID validates s. The provider is lower-case letters, digits and '-'; the model is 1–200
// characters of letters, digits and @._/:+- (Workers AI names start with "@cf/").
func ParseModelID(s string) (ModelID, error) {
	p, m, ok := strings.Cut(s, ":")
	if !ok {
		return ModelID{}, fmt.Errorf("model id %q is not provider:model", s)
	}
	if !providerPattern.MatchString(p) {
		return ModelID{}, fmt.Errorf("model id %q: provider %q must match %s", s, p, providerPattern)
	}
	if !modelPattern.MatchString(m) {
		return ModelID{}, fmt.Errorf("model id %q: model name must be 1-200 characters of letters, digits and @._/:+-", s)
	}
	return ModelID{Provider: p, Model: m}, nil
}

// MustParseModelID is for constants; it panics on an invalid id.
func MustParseModelID(s string) ModelID {
	id, err := ParseModelID(s)
	if err != nil {
		panic(err)
	}
	return id
}

func (id ModelID) String() string { return id.Provider + ":" + id.Model }

// IsZero reports whether id is unset.
func (id ModelID) IsZero() bool { return id.Provider == "" }

// Offline is the built-in offline model, the default when nothing else is configured.
var Offline = ModelID{Provider: "builtin", Model: "offline"}
