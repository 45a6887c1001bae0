package tenancy

import (
	"context"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/bus"
)

// The tenants served are the latest state known of each tenant, from three sources: Start's sync of
// the tenants file (before the read models catch up), the admin API's writes on this replica (at
// once), and the tenant directory read model (every replica: it follows the store through the bus).
// A state replaces the one known only when it reflects a later revision of the tenant's stream, so
// the three can arrive in any order and a replica never goes back to an older state.

// pollEvery is how often the directory read model's generation is read: a change recorded on
// another replica is served here within this (plus the bus's delivery).
const pollEvery = 200 * time.Millisecond

// observe merges tenant states into the known ones and, when one changed, rebuilds the directory
// served.
func (m *Module) observe(ctx context.Context, ts ...*domain.Tenant) {
	m.liveMu.Lock()
	defer m.liveMu.Unlock()
	if m.mergeLocked(ts) {
		m.rebuildLocked(ctx)
	}
}

// mergeLocked keeps, of each tenant, the state of the latest revision; true when one changed.
func (m *Module) mergeLocked(ts []*domain.Tenant) bool {
	changed := false
	for _, t := range ts {
		if t == nil || !t.Exists {
			continue
		}
		old, ok := m.known[t.ID.String()]
		if ok && old.Exists && old.LastRevision >= t.LastRevision {
			continue
		}
		m.known[t.ID.String()] = t
		changed = true
	}
	return changed
}

// rebuildLocked serves the active known tenants: those of the admin API, and those of the tenants
// file that the last Start's file still lists (one that left it is recorded as removed by Run).
func (m *Module) rebuildLocked(ctx context.Context) {
	m.mu.Lock()
	cmd := m.last
	m.mu.Unlock()
	desired := map[string]bool{}
	def := ""
	if cmd != nil {
		def = cmd.Default
		for _, d := range cmd.Desired {
			desired[d.Config.ID] = true
		}
	}
	var entries []*domain.Entry
	var defEntry *domain.Entry
	for id, t := range m.known {
		if !t.Active() || (t.FromFile() && !desired[id]) {
			continue
		}
		e, err := domain.NewEntry(t)
		if err != nil {
			m.log.ErrorContext(ctx, "tenant not served: its recorded state is invalid", "tenant", id, "error", err.Error())
			continue
		}
		entries = append(entries, e)
		if id == def {
			defEntry = e
		}
	}
	dir, err := domain.NewDirectory(entries, defEntry)
	if err != nil {
		// Two tenants claim one host (the file gave one the host the API gave another): keep
		// serving the previous directory rather than guess.
		m.log.ErrorContext(ctx, "tenants not updated: "+err.Error())
		return
	}
	m.adm.SetDirectory(dir)
}

// follow keeps the served tenants up to date with the tenant directory read model: once it has
// caught up, and whenever its generation changes.
func (m *Module) follow(ctx context.Context) {
	if m.dir == nil {
		return
	}
	if err := m.dir.Projection.WaitCaughtUp(ctx); err != nil {
		return
	}
	var seen uint64
	first := true
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		g, err := m.dir.Generation(ctx)
		if err == nil && (first || g != seen) {
			if rec, err := m.dir.Recorded(ctx); err == nil {
				ts := make([]*domain.Tenant, 0, len(rec))
				for _, t := range rec {
					ts = append(ts, t)
				}
				m.observe(ctx, ts...)
				seen, first = g, false
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// eraseDeleted erases a deleted tenant's data again from its TenantDeleted event, unless the tenant
// was registered again since (its new data keys are not the deleted tenant's to destroy).
func (m *Module) eraseDeleted(ctx context.Context, env bus.Envelope, _ events.TenantDeleted) error {
	t, err := m.manager().Get(ctx, env.Tenant)
	if err == nil && t.Active() && t.LastRevision > env.Revision {
		return nil
	}
	if err := m.erase(ctx, env.Tenant); err != nil {
		// Waited out, never passed: a key left alive is content left readable.
		return apperr.Wrap(err, apperr.KindUnavailable, "tenancy.eraseUnavailable", "erasing a deleted tenant's data failed")
	}
	return nil
}
