package observability

import (
	"net/http"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability/internal/alerts"
)

// NewWebhookClient is the client alert webhooks use: bounded by timeout, and refusing loopback,
// private and link-local addresses unless allowInternal (CRISPY_WEBHOOK_ALLOW_INTERNAL). The audit
// checkpoint webhook witness uses it too, so both follow one rule.
func NewWebhookClient(timeout time.Duration, allowInternal bool) *http.Client {
	return alerts.NewClient(timeout, allowInternal)
}
