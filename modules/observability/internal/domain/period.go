// Package domain holds the observability module's rules without I/O: periods, the usage read model
// and its time buckets, prices and cost, SLIs, anomaly detection and alert rules.
package domain

import (
	"time"

	"github.com/crispy-enigma/crispy/platform/apperr"
)

// Period is one of the query windows of SPEC §2.
type Period struct {
	Name string
	Span time.Duration
}

// Periods in the order the SPEC lists them.
var periods = []Period{{"1h", time.Hour}, {"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}, {"30d", 30 * 24 * time.Hour}}

// DefaultPeriod is what an absent period means.
const DefaultPeriod = "24h"

// PeriodNames lists the accepted values, for docs and errors.
const PeriodNames = "1h, 24h, 7d or 30d"

// ParsePeriod accepts 1h|24h|7d|30d; "" is 24h. Anything else is a 400 (apperr.KindInvalid).
func ParsePeriod(s string) (Period, error) {
	if s == "" {
		s = DefaultPeriod
	}
	for _, p := range periods {
		if p.Name == s {
			return p, nil
		}
	}
	return Period{}, apperr.Invalid("invalid_period", "query.period", "period must be "+PeriodNames)
}

// MustPeriod is ParsePeriod for names known valid.
func MustPeriod(s string) Period {
	p, err := ParsePeriod(s)
	if err != nil {
		panic(err)
	}
	return p
}
