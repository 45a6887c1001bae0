package main

import (
	"context"
	"fmt"

	"github.com/crispy-enigma/crispy/modules/tenancy"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai/rerank"
)

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

// checkTenantRerankers refuses a start whose tenants name a reranker (models.rerank) that this
// server cannot call (a provider it does not know, or Workers AI without an account): every search
// of that tenant would quietly fall back to the fused order. One line naming the tenant, the
// field, the model and the fix, as checkTenantModels does for chat models.
func checkTenantRerankers(ctx context.Context, ten *tenancy.Module, cfg config) error {
	rr, err := rerank.NewResolver(rerankConfig(cfg))
	if err != nil {
		return err
	}
	for _, id := range ten.Tenants() {
		c, err := ten.Config(ctx, id)
		if err != nil {
			return fmt.Errorf("tenant %s: %w", id, err)
		}
		if m := c.Models.Rerank; m != "" {
			if _, err := rr.Resolve(m); err != nil {
				return fmt.Errorf("tenant %s: models.rerank %s cannot be called: %v; configure its provider (README \"Reranking\": CRISPY_COHERE_API_KEY, CRISPY_RERANK_BASE_URL, CRISPY_CF_ACCOUNT_ID) or change the tenants file", id, m, err)
			}
		}
	}
	return nil
}

// unservedReranker is the admin API's form of checkTenantRerankers (tenancy.Deps.CheckConfig):
// "models.rerank" and why, when c names a reranker this server cannot call.
func unservedReranker(cfg config, c tenancyevents.TenantConfig) (string, error) {
	if c.Models.Rerank == "" {
		return "", nil
	}
	rr, err := rerank.NewResolver(rerankConfig(cfg))
	if err != nil {
		return "", err
	}
	if _, err := rr.Resolve(c.Models.Rerank); err != nil {
		return "models.rerank", fmt.Errorf("%s cannot be called: %v; configure its provider or choose another reranker", c.Models.Rerank, err)
	}
	return "", nil
}
