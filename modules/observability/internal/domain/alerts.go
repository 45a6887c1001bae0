package domain

import (
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability/events"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Comparators of alert rules.
var comparators = map[string]func(v, threshold float64) bool{
	"gt":  func(v, t float64) bool { return v > t },
	"gte": func(v, t float64) bool { return v >= t },
	"lt":  func(v, t float64) bool { return v < t },
	"lte": func(v, t float64) bool { return v <= t },
}

// RuleIDPattern is what a rule id looks like (it becomes part of a stream name).
var RuleIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidateRule checks a rule from a client; every problem is one field error.
func ValidateRule(r events.AlertRule) error {
	var fields []apperr.FieldError
	bad := func(loc, msg string) {
		fields = append(fields, apperr.FieldError{Location: "body." + loc, Message: msg})
	}
	if !RuleIDPattern.MatchString(r.ID) {
		bad("id", "id must match "+RuleIDPattern.String())
	}
	if n := strings.TrimSpace(r.Name); n == "" || len(r.Name) > 200 {
		bad("name", "name must be 1 to 200 characters")
	}
	if !KnownMetric(r.Metric) {
		bad("metric", "metric must be one of "+strings.Join(MetricNames, ", "))
	}
	if _, ok := comparators[r.Comparator]; !ok {
		bad("comparator", "comparator must be gt, gte, lt or lte")
	}
	if _, err := ParsePeriod(r.Period); err != nil || r.Period == "" {
		bad("period", "period must be "+PeriodNames)
	}
	if r.WebhookURL != "" {
		if err := ValidateWebhookURL(r.WebhookURL); err != nil {
			bad("webhookUrl", err.Error())
		}
	}
	if _, err := ForDuration(r); err != nil {
		bad("for", err.Error())
	}
	if len(fields) == 0 {
		return nil
	}
	return apperr.New(apperr.KindInvalid, "invalid_alert_rule", "the alert rule is invalid: "+fields[0].Message).WithFields(fields...)
}

type urlError string

func (e urlError) Error() string { return string(e) }

// ValidateWebhookURL accepts absolute http and https URLs without credentials.
func ValidateWebhookURL(s string) error {
	if len(s) > 2048 {
		return urlError("webhookUrl must be at most 2048 characters")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return urlError("webhookUrl must be an absolute http or https URL")
	}
	if u.User != nil {
		return urlError("webhookUrl must not carry credentials; notices are signed instead")
	}
	return nil
}

// MaxFor bounds a rule's for duration.
const MaxFor = 24 * time.Hour

// ForDuration is how long r's condition must hold before it fires (0: at once).
func ForDuration(r events.AlertRule) (time.Duration, error) {
	if r.For == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(r.For)
	if err != nil || d < 0 || d > MaxFor {
		return 0, urlError("for must be a duration from 0s to 24h, such as 90s or 5m")
	}
	return d, nil
}

// Delivery is the outcome of the last webhook notice of a rule's transitions.
type Delivery struct {
	Transition string    `json:"transition" doc:"id of the AlertFired or AlertResolved event the notice was for"`
	State      string    `json:"state" doc:"firing or resolved: the transition notified"`
	Delivered  bool      `json:"delivered"`
	Error      string    `json:"error,omitempty" doc:"why the notice was not delivered, after its retries"`
	At         time.Time `json:"at"`
}

// Fires reports whether value breaks rule r.
func Fires(r events.AlertRule, value float64) bool {
	cmp, ok := comparators[r.Comparator]
	return ok && cmp(value, r.Threshold)
}

// RuleState is a rule folded from its stream.
type RuleState struct {
	Rule    events.AlertRule
	Exists  bool // saved and not deleted
	Firing  bool
	Value   float64 // value at the last transition
	LastRev uint64
	HasRev  bool
	// Delivery is the outcome of the last notice sent for this rule (nil: none yet).
	Delivery *Delivery `json:",omitempty"`
}

// Apply folds one event of a rule's stream into the state.
func (s *RuleState) Apply(rev uint64, ev any) {
	s.LastRev, s.HasRev = rev, true
	switch e := ev.(type) {
	case events.AlertRuleSaved:
		s.Rule, s.Exists = e.Rule, true
		if !e.Rule.Enabled {
			s.Firing = false
		}
	case events.AlertRuleDeleted:
		s.Exists, s.Firing = false, false
	case events.AlertFired:
		s.Firing, s.Value = true, e.Value
	case events.AlertResolved:
		s.Firing, s.Value = false, e.Value
	case events.AlertDelivered:
		s.Delivery = &Delivery{Transition: e.Transition, State: e.State, Delivered: true, At: e.At}
	case events.AlertDeliveryFailed:
		s.Delivery = &Delivery{Transition: e.Transition, State: e.State, Error: e.Error, At: e.At}
	}
}

// TenantRule is a rule's state with its tenant.
type TenantRule struct {
	Tenant tenant.ID
	RuleState
}
