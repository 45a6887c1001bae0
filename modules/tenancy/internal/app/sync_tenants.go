package app

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/bus/codec"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Actor is recorded on the events the sync appends.
const Actor = "system:tenancy"

// maxAttempts bounds the retries of one tenant's append after optimistic-concurrency conflicts (two
// replicas starting at once with the same file: the second re-reads and finds nothing to record).
const maxAttempts = 5

// SyncTenants asks to make the recorded tenants match the desired ones.
type SyncTenants struct {
	// Desired are the tenants of the tenants file, or the demo tenant when there is no file.
	Desired []domain.Desired
	// Source is recorded on the events: the tenants file's path, or "default".
	Source string
	// Default, when set, is the tenant that serves requests naming none (the demo tenant).
	Default string
}

// SyncReport counts what the sync recorded.
type SyncReport struct {
	Registered, Changed, KeysAdded, KeysRevoked, Removed int
	// Tenants are the desired tenants as recorded (Handle).
	Tenants []*domain.Tenant
}

// Events is the number of events recorded.
func (r SyncReport) Events() int {
	return r.Registered + r.Changed + r.KeysAdded + r.KeysRevoked + r.Removed
}

// RecordedTenants is the directory of the tenants recorded so far (the tenancy.directory read
// model).
type RecordedTenants interface {
	// Recorded returns every tenant that has a configuration stream, by id, with its folded state,
	// once the directory has caught up with the store.
	Recorded(ctx context.Context) (map[string]*domain.Tenant, error)
}

// SyncTenantsHandler makes the recorded tenants match the desired ones, in two steps.
//
// Handle records the differences between each desired tenant and its stream as events (the stream
// folded: a configuration stream is short), and returns the directory of the desired tenants as
// recorded: the directory never comes from the file's structs, so what is served is exactly what is
// recorded. It needs nothing but those streams, so a server can serve its tenants before its read
// models have caught up.
//
// RecordRemovals records TenantRemoved for every recorded tenant that is active and not desired
// (its other streams stay; it was not served by Handle's directory). Which tenants were recorded
// comes from the tenant directory read model (Recorded), which the bus keeps from its checkpoint:
// neither step reads the store's history.
//
// Appends expect the revision the state they were computed from reflects; when another writer got
// there first (a replica starting with the same file), the stream is folded and the change asked
// again.
type SyncTenantsHandler struct {
	Store eventstore.Store
	// Codec is the event codec with the tenancy events registered: it names the events recorded
	// and decodes those folded.
	Codec *codec.Registry
	// Recorded is the directory of recorded tenants, for RecordRemovals.
	Recorded RecordedTenants
}

// Handle records the desired tenants and returns the directory that serves them.
func (h SyncTenantsHandler) Handle(ctx context.Context, cmd SyncTenants) (*domain.Directory, SyncReport, error) {
	var rep SyncReport
	ctx = asSystem(ctx)
	var entries []*domain.Entry
	var def *domain.Entry
	seen := map[string]bool{}
	for _, d := range cmd.Desired {
		id, err := tenant.Parse(d.Config.ID)
		if err != nil {
			return nil, rep, fmt.Errorf("sync tenants: %w", err)
		}
		if seen[id.String()] {
			continue
		}
		seen[id.String()] = true
		t, evs, err := h.record(ctx, id, nil, func(t *domain.Tenant) ([]any, error) { return t.Diff(d, cmd.Source) })
		if err != nil {
			return nil, rep, err
		}
		rep.count(evs)
		rep.Tenants = append(rep.Tenants, t)
		if !t.Active() {
			continue
		}
		e, err := domain.NewEntry(t)
		if err != nil {
			return nil, rep, err
		}
		entries = append(entries, e)
		if id.String() == cmd.Default {
			def = e
		}
	}
	if cmd.Default != "" && def == nil {
		return nil, rep, fmt.Errorf("sync tenants: default tenant %s is not active after the sync", cmd.Default)
	}
	dir, err := domain.NewDirectory(entries, def)
	if err != nil {
		return nil, rep, fmt.Errorf("sync tenants: %w", err)
	}
	return dir, rep, nil
}

// RecordRemovals records as removed every active recorded tenant that cmd does not desire. It waits
// until the tenant directory has caught up with the store.
func (h SyncTenantsHandler) RecordRemovals(ctx context.Context, cmd SyncTenants) (SyncReport, error) {
	var rep SyncReport
	ctx = asSystem(ctx)
	recorded, err := h.Recorded.Recorded(ctx)
	if err != nil {
		return rep, fmt.Errorf("sync tenants: read the tenant directory: %w", err)
	}
	desired := map[string]bool{}
	for _, d := range cmd.Desired {
		desired[d.Config.ID] = true
	}
	ids := make([]string, 0, len(recorded))
	for id, t := range recorded {
		// Tenants of the admin API are not the file's to remove.
		if !desired[id] && t.Active() && t.FromFile() {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, s := range ids {
		_, evs, err := h.record(ctx, tenant.MustParse(s), recorded[s], func(t *domain.Tenant) ([]any, error) { return t.Remove(cmd.Source), nil })
		if err != nil {
			return rep, err
		}
		rep.count(evs)
	}
	return rep, nil
}

// asSystem marks what the sync appends as the tenancy module's own doing.
func asSystem(ctx context.Context) context.Context {
	info := request.From(ctx)
	info.Actor = Actor
	return request.With(ctx, info)
}

func (r *SyncReport) count(evs []any) {
	for _, e := range evs {
		switch e.(type) {
		case events.TenantRegistered:
			r.Registered++
		case events.TenantConfigChanged:
			r.Changed++
		case events.ApiKeyAdded:
			r.KeysAdded++
		case events.ApiKeyRevoked:
			r.KeysRevoked++
		case events.TenantRemoved:
			r.Removed++
		}
	}
}

// fold rebuilds a tenant from its stream.
func (h SyncTenantsHandler) fold(ctx context.Context, id tenant.ID) (*domain.Tenant, error) {
	stream := domain.Stream(id)
	evs, err := h.Store.ReadStream(ctx, stream, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	t := domain.NewTenant(id)
	for _, e := range evs {
		if !h.Codec.Known(e.Type) {
			continue // a newer binary's event: an older one still folds the rest
		}
		v, err := h.Codec.Decode(e.Type, e.Data)
		if err != nil {
			return nil, fmt.Errorf("decode %s %s@%d: %w", e.Type, stream, e.Revision, err)
		}
		t.Apply(e.Revision, v)
	}
	return t, nil
}

// record asks change for the events that take the tenant where it should be, appends them expecting
// the revision t (the tenant as last known; nil: fold its stream) reflects, and returns the tenant
// with them applied. On a conflict (t was stale: another writer recorded first) it folds the stream
// and asks again.
func (h SyncTenantsHandler) record(ctx context.Context, id tenant.ID, t *domain.Tenant, change func(*domain.Tenant) ([]any, error)) (*domain.Tenant, []any, error) {
	stream := domain.Stream(id)
	for attempt := 1; ; attempt++ {
		if t == nil {
			var err error
			if t, err = h.fold(ctx, id); err != nil {
				return nil, nil, err
			}
		}
		evs, err := change(t)
		if err != nil {
			return nil, nil, fmt.Errorf("tenant %s: %w", id, err)
		}
		if len(evs) == 0 {
			return t, nil, nil
		}
		data := make([]eventstore.EventData, len(evs))
		for i, e := range evs {
			if data[i], err = h.Codec.Encode(e); err != nil {
				return nil, nil, fmt.Errorf("tenant %s: %w", id, err)
			}
		}
		res, err := h.Store.Append(ctx, stream, eventstore.After(t.LastRevision, t.Exists), data...)
		if errors.Is(err, eventstore.ErrConflict) && attempt < maxAttempts {
			t = nil
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("append to %s: %w", stream, err)
		}
		// The events took the revisions up to NextExpected, in order.
		first := res.NextExpected + 1 - uint64(len(evs))
		for i, e := range evs {
			t.Apply(first+uint64(i), e)
		}
		return t, evs, nil
	}
}
