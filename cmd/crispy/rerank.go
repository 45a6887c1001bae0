package main

import "github.com/crispy-enigma/crispy/platform/ai/rerank"

// rerankConfig is the rerank resolver's configuration (README "Reranking"): the server's default
// reranker (CRISPY_RERANK_MODEL, none unless set) and its providers' endpoints. An
// OpenAI-compatible /rerank server is often not the chat server (OpenAI itself has no /rerank), so
// it has its own URL and key, defaulting to the OpenAI-compatible chat provider's; Workers AI
// shares the chat models' account.
func rerankConfig(cfg config) rerank.Config {
	base, key := cfg.RerankBaseURL, cfg.RerankAPIKey
	if base == "" {
		base = cfg.OpenAIBaseURL
	}
	if key == "" {
		key = cfg.OpenAIAPIKey
	}
	return rerank.Config{Default: cfg.RerankModel,
		OpenAI:    rerank.HTTPConfig{BaseURL: base, APIKey: key},
		Cohere:    rerank.HTTPConfig{BaseURL: cfg.CohereBaseURL, APIKey: cfg.CohereAPIKey},
		WorkersAI: rerank.WorkersAIConfig{AccountID: cfg.CFAccountID, APIToken: cfg.CFAPIToken, GatewayID: cfg.CFGatewayID, BaseURL: cfg.CFBaseURL}}
}
