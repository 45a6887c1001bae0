package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Sweep expires every session idle past its tenant's sessionRetentionDays (per the clock Now):
// SessionExpired is appended, then the content before it made unreadable. It returns how many
// sessions expired.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	ctx = request.With(ctx, request.Info{ID: "retention-" + newID(), Actor: "system:conversation-retention"})
	now := s.Now()
	expired := 0
	var errs []error
	for _, ts := range s.Index.Tenants() {
		t, err := tenant.Parse(ts)
		if err != nil {
			continue
		}
		cfg, err := s.config(ctx, t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		days := cfg.RetentionDays()
		cutoff := now.Add(-time.Duration(days) * 24 * time.Hour)
		for _, id := range s.Index.IdleSince(ts, cutoff) {
			err := s.end(ctx, t, id, func(cur *domain.Session) (eventstore.EventData, error) {
				if !cur.LastActivity.Before(cutoff) {
					return eventstore.EventData{}, errNothing // active again since the index saw it
				}
				return eventstore.NewEventData(events.TypeSessionExpired, events.SessionExpired{SessionID: id, RetentionDays: days,
					LastActivity: cur.LastActivity.UTC().Format(time.RFC3339Nano)})
			})
			switch {
			case err == nil:
				expired++
			case errors.Is(err, errNothing) || apperr.KindOf(err) == apperr.KindNotFound:
			default:
				errs = append(errs, fmt.Errorf("expire session %s of %s: %w", id, ts, err))
			}
		}
	}
	return expired, errors.Join(errs...)
}
