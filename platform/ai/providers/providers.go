// Package providers builds the model router and the speech provider from the server's provider
// configuration (cmd/crispy fills Config from CRISPY_* variables; nothing here reads the environment).
package providers

import (
	"fmt"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/offline"
	"github.com/crispy-enigma/crispy/platform/ai/openai"
	"github.com/crispy-enigma/crispy/platform/ai/workersai"
)

// Config says which providers are configured. builtin:offline is always available.
type Config struct {
	OpenAIBaseURL string // CRISPY_OPENAI_BASE_URL; the OpenAI-compatible provider is on when this or the key is set
	OpenAIAPIKey  string // CRISPY_OPENAI_API_KEY
	CFAccountID   string // CRISPY_CF_ACCOUNT_ID; Workers AI is on when account and token are set
	CFAPIToken    string // CRISPY_CF_API_TOKEN
	CFGatewayID   string // CRISPY_CF_GATEWAY_ID: route Workers AI through AI Gateway
	CFBaseURL     string // CRISPY_CF_BASE_URL: Workers AI's API root (default https://api.cloudflare.com/client/v4; proxies, tests)
	Router        ai.RouterConfig
}

// Built is the outcome: the router, the speech provider (nil when none is configured), and the
// default chat model a server should use when nothing else is chosen.
type Built struct {
	Router       *ai.Router
	Speaker      ai.Speaker
	DefaultModel ai.ModelID
}

// Build makes the providers. The default model is openai:gpt-4o-mini when OpenAI is configured, else
// workers-ai:@cf/meta/llama-3.1-8b-instruct when Workers AI is, else builtin:offline.
func Build(c Config) (Built, error) {
	ps := map[string]ai.Provider{offline.Name: offline.New()}
	out := Built{DefaultModel: ai.Offline}
	if c.CFAccountID != "" || c.CFAPIToken != "" {
		p, err := workersai.New(workersai.Config{AccountID: c.CFAccountID, APIToken: c.CFAPIToken, GatewayID: c.CFGatewayID, BaseURL: c.CFBaseURL})
		if err != nil {
			return Built{}, fmt.Errorf("workers ai provider: %w", err)
		}
		ps[workersai.Name] = p
		out.Speaker = p
		out.DefaultModel = ai.ModelID{Provider: workersai.Name, Model: "@cf/meta/llama-3.1-8b-instruct"}
	}
	if c.OpenAIBaseURL != "" || c.OpenAIAPIKey != "" {
		p, err := openai.New(openai.Config{BaseURL: c.OpenAIBaseURL, APIKey: c.OpenAIAPIKey})
		if err != nil {
			return Built{}, fmt.Errorf("openai provider: %w", err)
		}
		ps[openai.Name] = p
		out.Speaker = p
		out.DefaultModel = ai.ModelID{Provider: openai.Name, Model: "gpt-4o-mini"}
	}
	r, err := ai.NewRouter(c.Router, ps)
	if err != nil {
		return Built{}, err
	}
	out.Router = r
	return out, nil
}
