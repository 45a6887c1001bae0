package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/crispy-enigma/crispy/modules/tenancy"
	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai"
)

// checkTenantModels refuses a start whose tenants name a chat model (models.chat or a fallback)
// of a provider this server does not configure: every turn of that tenant would answer 502 for
// ever. The error is one line naming the tenant, the field, the model and the fix.
func checkTenantModels(ctx context.Context, ten *tenancy.Module, router *ai.Router) error {
	if router == nil {
		return nil
	}
	for _, id := range ten.Tenants() {
		c, err := ten.Config(ctx, id)
		if err != nil {
			return fmt.Errorf("tenant %s: %w", id, err)
		}
		check := func(field, m string) error {
			mid, err := ai.ParseModelID(m)
			if err != nil || router.Has(mid.Provider) {
				return nil // the tenants file validated the id; an unparsable one is skipped per turn
			}
			return fmt.Errorf("tenant %s: %s %s names provider %q, which this server does not configure (configured: %s); configure %s (README \"Configuration\": CRISPY_OPENAI_BASE_URL, CRISPY_CF_ACCOUNT_ID, …) or change the tenants file",
				id, field, m, mid.Provider, strings.Join(router.Providers(), ", "), mid.Provider)
		}
		if err := check("models.chat", c.Models.Chat); err != nil {
			return err
		}
		for i, f := range c.Models.Fallbacks {
			if err := check(fmt.Sprintf("models.fallbacks[%d]", i), f); err != nil {
				return err
			}
		}
	}
	return nil
}

// unservedModel is the admin API's form of the same check (tenancy.Deps.CheckConfig): the field of
// c that names a chat model of a provider router does not configure, and why.
func unservedModel(router *ai.Router, c events.TenantConfig) (string, error) {
	if router == nil {
		return "", nil
	}
	check := func(m string) error {
		mid, err := ai.ParseModelID(m)
		if err != nil || router.Has(mid.Provider) {
			return nil
		}
		return fmt.Errorf("%s names provider %q, which this server does not configure (configured: %s); configure %s or choose another model",
			m, mid.Provider, strings.Join(router.Providers(), ", "), mid.Provider)
	}
	if err := check(c.Models.Chat); err != nil {
		return "models.chat", err
	}
	for i, f := range c.Models.Fallbacks {
		if err := check(f); err != nil {
			return fmt.Sprintf("models.fallbacks[%d]", i), err
		}
	}
	return "", nil
}
