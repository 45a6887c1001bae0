package app

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// StreamCategory is the category of a tenant's configuration stream: t-{id}.tenant.
const StreamCategory = "tenant"

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
}

// Events is the number of events recorded.
func (r SyncReport) Events() int {
	return r.Registered + r.Changed + r.KeysAdded + r.KeysRevoked + r.Removed
}

// SyncTenantsHandler records the differences between the desired tenants and their streams as
// events, then rebuilds the directory by folding the streams: the directory never comes from the
// file's structs, so what is served is exactly what is recorded.
//
// A tenant recorded earlier but absent from the desired set is recorded as TenantRemoved and is not
// resolvable (its other streams stay). Finding such tenants needs the list of recorded tenants, which
// no single tenant's stream holds: the handler scans the store's events once at start-up, the one
// place a module reads across tenants, and keeps only the ids of t-{id}.tenant streams.
type SyncTenantsHandler struct {
	Store eventstore.Store
}

// Handle runs the sync.
func (h SyncTenantsHandler) Handle(ctx context.Context, cmd SyncTenants) (*domain.Directory, SyncReport, error) {
	var rep SyncReport
	info := request.From(ctx)
	info.Actor = Actor
	ctx = request.With(ctx, info)

	known, err := h.recordedTenants(ctx)
	if err != nil {
		return nil, rep, err
	}
	desired := map[string]bool{}
	for _, d := range cmd.Desired {
		id, err := tenant.Parse(d.Config.ID)
		if err != nil {
			return nil, rep, fmt.Errorf("sync tenants: %w", err)
		}
		desired[id.String()] = true
		known[id.String()] = true
		evs, err := h.record(ctx, id, func(t *domain.Tenant) ([]any, error) { return t.Diff(d, cmd.Source) })
		if err != nil {
			return nil, rep, err
		}
		rep.count(evs)
	}
	ids := make([]string, 0, len(known))
	for id := range known {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, s := range ids {
		if desired[s] {
			continue
		}
		evs, err := h.record(ctx, tenant.MustParse(s), func(t *domain.Tenant) ([]any, error) { return t.Remove(cmd.Source), nil })
		if err != nil {
			return nil, rep, err
		}
		rep.count(evs)
	}

	// Rebuild from the streams.
	var entries []*domain.Entry
	var def *domain.Entry
	for _, s := range ids {
		t, err := h.fold(ctx, tenant.MustParse(s))
		if err != nil {
			return nil, rep, err
		}
		if !t.Active() {
			continue
		}
		e, err := domain.NewEntry(t)
		if err != nil {
			return nil, rep, err
		}
		entries = append(entries, e)
		if s == cmd.Default {
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

// Stream is the tenant's configuration stream.
func Stream(id tenant.ID) tenant.Stream { return tenant.MustStream(id, StreamCategory, "") }

// fold rebuilds a tenant from its stream.
func (h SyncTenantsHandler) fold(ctx context.Context, id tenant.ID) (*domain.Tenant, error) {
	stream := Stream(id)
	evs, err := h.Store.ReadStream(ctx, stream, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	t := domain.NewTenant(id)
	for _, e := range evs {
		v, err := domain.Decode(e.Type, e.Data)
		if err != nil {
			return nil, fmt.Errorf("decode %s %s@%d: %w", e.Type, stream, e.Revision, err)
		}
		t.Apply(e.Revision, v)
	}
	return t, nil
}

// record folds the tenant, asks change for the events to record, and appends them expecting the
// revision it folded; on a conflict it folds again and asks again.
func (h SyncTenantsHandler) record(ctx context.Context, id tenant.ID, change func(*domain.Tenant) ([]any, error)) ([]any, error) {
	stream := Stream(id)
	for attempt := 1; ; attempt++ {
		t, err := h.fold(ctx, id)
		if err != nil {
			return nil, err
		}
		evs, err := change(t)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %w", id, err)
		}
		if len(evs) == 0 {
			return nil, nil
		}
		data := make([]eventstore.EventData, len(evs))
		for i, e := range evs {
			typ, err := domain.EventType(e)
			if err != nil {
				return nil, err
			}
			if data[i], err = eventstore.NewEventData(typ, e); err != nil {
				return nil, err
			}
		}
		_, err = h.Store.Append(ctx, stream, eventstore.After(t.LastRevision, t.Exists), data...)
		if errors.Is(err, eventstore.ErrConflict) && attempt < maxAttempts {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("append to %s: %w", stream, err)
		}
		return evs, nil
	}
}

// scanIdle ends the scan of recorded tenants when the subscription has delivered nothing for this
// long without reaching the store's last position: that happens only when the newest events are
// unreadable (truncated or past their max age), and catch-up delivers batches far faster than this.
const scanIdle = time.Second

var errScanned = errors.New("scan complete")

// recordedTenants returns the ids of every tenant with a configuration stream.
func (h SyncTenantsHandler) recordedTenants(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	last, err := h.Store.LastPosition(ctx)
	if err != nil {
		return nil, fmt.Errorf("scan recorded tenants: %w", err)
	}
	if last == 0 {
		return out, nil
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var progress atomic.Uint64
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(scanIdle)
		defer tick.Stop()
		seen := uint64(0)
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				p := progress.Load()
				if p == seen {
					cancel()
					return
				}
				seen = p
			}
		}
	}()
	err = h.Store.Subscribe(sctx, eventstore.SubscribeOptions{From: eventstore.Start}, func(_ context.Context, e eventstore.Event) error {
		progress.Add(1)
		if strings.HasPrefix(e.Type, "tenancy.") && !e.Tenant.IsZero() && e.Stream == Stream(e.Tenant).String() {
			out[e.Tenant.String()] = true
		}
		if e.Position >= last {
			return errScanned
		}
		return nil
	})
	if err != nil && !errors.Is(err, errScanned) {
		return nil, fmt.Errorf("scan recorded tenants: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("scan recorded tenants: %w", err)
	}
	return out, nil
}
