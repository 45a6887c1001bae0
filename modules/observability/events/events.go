// Package events holds the observability module's events: reads of the audit trail (so an audit is
// itself audited) and alert rule changes and transitions.
package events

import "time"

// Event types.
const (
	TypeAuditAccessed    = "observability.AuditAccessed"
	TypeAlertRuleSaved   = "observability.AlertRuleSaved"
	TypeAlertRuleDeleted = "observability.AlertRuleDeleted"
	TypeAlertFired       = "observability.AlertFired"
	TypeAlertResolved    = "observability.AlertResolved"
	// The outcome of a transition's webhook notice, in the rule's stream (GET /metrics/alerts
	// shows the last one).
	TypeAlertDelivered      = "observability.AlertDelivered"
	TypeAlertDeliveryFailed = "observability.AlertDeliveryFailed"
)

// Register maps the module's event type names to their Go types on the bus codec
// (platform/bus/codec).
func Register(add func(typeName string, sample any)) {
	add(TypeAuditAccessed, AuditAccessed{})
	add(TypeAlertRuleSaved, AlertRuleSaved{})
	add(TypeAlertRuleDeleted, AlertRuleDeleted{})
	add(TypeAlertFired, AlertFired{})
	add(TypeAlertResolved, AlertResolved{})
	add(TypeAlertDelivered, AlertDelivered{})
	add(TypeAlertDeliveryFailed, AlertDeliveryFailed{})
}

// AlertDelivered records that the notice of a transition (the AlertFired or AlertResolved event
// Transition names) reached the rule's webhook.
type AlertDelivered struct {
	RuleID     string    `json:"ruleId"`
	Transition string    `json:"transition"` // the event id of the AlertFired/AlertResolved
	State      string    `json:"state"`      // firing or resolved
	At         time.Time `json:"at"`
}

// AlertDeliveryFailed records that the notice of a transition could not be delivered after its
// retries (the receiver refused it, did not answer, the address is internal, no secret to sign it).
type AlertDeliveryFailed struct {
	RuleID     string    `json:"ruleId"`
	Transition string    `json:"transition"`
	State      string    `json:"state"`
	Error      string    `json:"error"`
	At         time.Time `json:"at"`
}

// AuditAccessed records one read of the audit API: what was asked, never what was returned.
type AuditAccessed struct {
	Endpoint string            `json:"endpoint"` // "events", "sessions" ("verify" before verification became read-only)
	Query    map[string]string `json:"query,omitempty"`
	Results  int               `json:"results"`
}

// AlertRule is a tenant's alert rule (SPEC §2 /metrics/alerts).
type AlertRule struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	Metric     string  `json:"metric"`
	Comparator string  `json:"comparator"` // gt, gte, lt, lte
	Threshold  float64 `json:"threshold"`
	Period     string  `json:"period"` // 1h, 24h, 7d, 30d
	Enabled    bool    `json:"enabled"`
	WebhookURL string  `json:"webhookUrl,omitempty"`
	// For is how long the condition must hold, evaluation after evaluation, before the rule fires
	// (a Go duration: "90s", "5m"; empty: at the first evaluation that breaks the threshold).
	For string `json:"for,omitempty"`
}

// AlertRuleSaved creates or replaces a rule.
type AlertRuleSaved struct {
	Rule AlertRule `json:"rule"`
}

// AlertRuleDeleted removes a rule.
type AlertRuleDeleted struct {
	RuleID string `json:"ruleId"`
}

// AlertFired records that a rule started firing. Rule is the rule as it was evaluated (its webhook
// notice is built from it); absent in events recorded before it was added.
type AlertFired struct {
	RuleID string     `json:"ruleId"`
	Value  float64    `json:"value"`
	At     time.Time  `json:"at"`
	Rule   *AlertRule `json:"rule,omitempty"`
}

// AlertResolved records that a firing rule stopped firing (Rule as in AlertFired).
type AlertResolved struct {
	RuleID string     `json:"ruleId"`
	Value  float64    `json:"value"`
	At     time.Time  `json:"at"`
	Rule   *AlertRule `json:"rule,omitempty"`
}
