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

// Retention runs once per deployment, however many replicas there are:
//
//  1. Every replica, every sweep interval, looks in its session list for tenants with a session
//     idle past their retention, and for each records RetentionSweepRequested in
//     t-{tenant}.retention-{slot} (slot: the start of the interval, UTC) expecting no stream: the
//     first replica's append succeeds, the others' conflict and are dropped.
//  2. The retention processor (a bus processor: one durable consumer for the deployment) handles
//     the request: SweepTenant expires the tenant's idle sessions.
//
// A redelivered request sweeps again, which finds nothing left to expire (every expiry is decided
// on the session's fold, and an expired session is not live any more).

// idlePage is how many idle sessions a sweep reads from the session list at a time.
const idlePage = 500

// retentionStream is t-{tenant}.retention-{slot}.
func retentionStream(t tenant.ID, slot time.Time) (tenant.Stream, error) {
	return tenant.NewStream(t, events.RetentionCategory, slot.UTC().Format("20060102T150405Z"))
}

// RequestSweeps records a retention sweep request for slot of every tenant that has a session idle
// past its retention (one request per tenant and slot across replicas) and returns how many this
// replica recorded.
func (s *Service) RequestSweeps(ctx context.Context, slot time.Time) (int, error) {
	ctx = request.With(ctx, request.Info{ID: "retention-" + newID(), Actor: "system:conversation-retention"})
	ts, err := s.Sessions.Tenants(ctx)
	if err != nil {
		return 0, err
	}
	now := s.Now()
	n := 0
	var errs []error
	for _, t := range ts {
		days, cutoff, err := s.retention(ctx, t, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		idle, _, err := s.Sessions.Idle(ctx, t, cutoff, "", 1)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(idle) == 0 {
			continue
		}
		st, err := retentionStream(t, slot)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ev, err := eventstore.NewEventData(events.TypeRetentionSweepRequested, events.RetentionSweepRequested{
			Slot: slot.UTC().Format(time.RFC3339), RetentionDays: days, Instance: s.Instance})
		if err != nil {
			return n, err
		}
		_, err = s.Store.Append(ctx, st, eventstore.NoStream, ev)
		switch {
		case err == nil:
			n++
		case errors.Is(err, eventstore.ErrConflict):
			// another replica requested this slot's sweep first
		default:
			errs = append(errs, fmt.Errorf("request the retention sweep of %s: %w", t, err))
		}
	}
	return n, errors.Join(errs...)
}

func (s *Service) retention(ctx context.Context, t tenant.ID, now time.Time) (days int, cutoff time.Time, err error) {
	cfg, err := s.config(ctx, t)
	if err != nil {
		return 0, time.Time{}, err
	}
	days = cfg.RetentionDays()
	return days, now.Add(-time.Duration(days) * 24 * time.Hour), nil
}

// Sweep expires, now, every tenant's sessions idle past its sessionRetentionDays (per the clock
// Now) and returns how many expired. (The deployment's periodic sweep goes through RequestSweeps
// and the retention processor, which calls SweepTenant.)
func (s *Service) Sweep(ctx context.Context) (int, error) {
	ctx = request.With(ctx, request.Info{ID: "retention-" + newID(), Actor: "system:conversation-retention"})
	ts, err := s.Sessions.Tenants(ctx)
	if err != nil {
		return 0, err
	}
	expired := 0
	var errs []error
	for _, t := range ts {
		n, err := s.SweepTenant(ctx, t)
		expired += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return expired, errors.Join(errs...)
}

// SweepTenant expires the tenant's sessions idle past its sessionRetentionDays: SessionExpired is
// appended, then the content before it made unreadable. It returns how many sessions expired.
func (s *Service) SweepTenant(ctx context.Context, t tenant.ID) (int, error) {
	if request.From(ctx).ID == "" {
		ctx = request.With(ctx, request.Info{ID: "retention-" + newID(), Actor: "system:conversation-retention"})
	}
	s.Metrics.sweep()
	days, cutoff, err := s.retention(ctx, t, s.Now())
	if err != nil {
		return 0, err
	}
	expired := 0
	var errs []error
	after := ""
	for {
		ids, next, err := s.Sessions.Idle(ctx, t, cutoff, after, idlePage)
		if err != nil {
			return expired, errors.Join(append(errs, err)...)
		}
		for _, id := range ids {
			err := s.end(ctx, t, id, func(cur *domain.Session) (eventstore.EventData, error) {
				if !cur.LastActivity.Before(cutoff) {
					return eventstore.EventData{}, errNothing // active again since the list saw it
				}
				return eventstore.NewEventData(events.TypeSessionExpired, events.SessionExpired{SessionID: id, RetentionDays: days,
					LastActivity: cur.LastActivity.UTC().Format(time.RFC3339Nano)})
			})
			switch {
			case err == nil:
				expired++
			case errors.Is(err, errNothing) || apperr.KindOf(err) == apperr.KindNotFound:
			default:
				errs = append(errs, fmt.Errorf("expire session %s of %s: %w", id, t, err))
			}
		}
		if next == "" {
			return expired, errors.Join(errs...)
		}
		after = next
	}
}
