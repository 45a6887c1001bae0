package adapters

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// DirectoryProjection is the durable name of the tenant directory read model (its file is
// <read models>/tenancy.directory.db): never rename it.
const DirectoryProjection = "tenancy.directory"

// directoryVersion is the format of the records below; bump it when they change (the read model is
// then rebuilt from the start of the store).
const directoryVersion = 2 // 2: keys with ids, scopes, lifecycle; tenant origin; generation

// The tenant directory read model holds every tenant that has a configuration stream
// (t-{id}.tenant), with the state folded from that stream, so a start knows the recorded tenants
// (those that left the tenants file must be recorded as removed) without reading the store's
// history: the bus feeds it from its checkpoint. One key per tenant:
//
//	tenant id  ->  JSON of directoryRecord
//
// An event is filed under the tenant of the stream it was recorded in, and only when that stream is
// the tenant's configuration stream: what an event's data says (a config naming another id) never
// moves it to another tenant's record.
//
// and one key that is not a tenant id, genKey, counts the events applied: a replica polls it to
// learn cheaply that the served tenants must be rebuilt (see Generation).
type directoryRecord struct {
	Registered   bool                `json:"registered"`
	Removed      bool                `json:"removed"`
	Deleted      bool                `json:"deleted,omitempty"`
	Origin       string              `json:"origin,omitempty"`
	Config       events.TenantConfig `json:"config"`
	Keys         []domain.Key        `json:"keys,omitempty"`
	LastRevision uint64              `json:"lastRevision"`
}

// genKey holds the directory's generation (8 bytes, big endian); '!' cannot start a tenant id.
var genKey = []byte("!generation")

// TenantDirectory reads the tenant directory read model.
type TenantDirectory struct{ Projection *bus.Projection }

// RegisterDirectory registers the tenancy events on b's codec and the tenant directory projection
// with its handlers, and returns its reader.
func RegisterDirectory(b bus.Consumers) TenantDirectory {
	events.Register(b.Codec().Add)
	p := b.Projection(DirectoryProjection, bus.ProjectionOptions{What: "tenant directory", Version: directoryVersion})
	bus.Apply(p, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.TenantRegistered) error {
		return ApplyTenantEvent(tx.Bucket(), env, ev)
	})
	bus.Apply(p, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.TenantConfigChanged) error {
		return ApplyTenantEvent(tx.Bucket(), env, ev)
	})
	bus.Apply(p, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.ApiKeyAdded) error {
		return ApplyTenantEvent(tx.Bucket(), env, ev)
	})
	bus.Apply(p, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.ApiKeyRevoked) error {
		return ApplyTenantEvent(tx.Bucket(), env, ev)
	})
	bus.Apply(p, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.TenantRemoved) error {
		return ApplyTenantEvent(tx.Bucket(), env, ev)
	})
	bus.Apply(p, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.ApiKeyRotated) error {
		return ApplyTenantEvent(tx.Bucket(), env, ev)
	})
	bus.Apply(p, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.TenantDeleted) error {
		return ApplyTenantEvent(tx.Bucket(), env, ev)
	})
	bus.Apply(p, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.ApiKeyChanged) error {
		return ApplyTenantEvent(tx.Bucket(), env, ev)
	})
	return TenantDirectory{Projection: p}
}

// ApplyTenantEvent folds one tenancy event into the record of the tenant whose configuration stream
// holds it. Events of other streams are ignored, and so is an event at or below the revision the
// record reflects (applied already).
func ApplyTenantEvent(b *bolt.Bucket, env bus.Envelope, ev any) error {
	if env.Tenant.IsZero() || env.Stream != domain.Stream(env.Tenant).String() {
		return nil
	}
	t, err := getTenant(b, env.Tenant)
	if err != nil {
		return err
	}
	if t.Exists && env.Revision <= t.LastRevision {
		return nil
	}
	t.Apply(env.Revision, ev)
	v, err := json.Marshal(directoryRecord{Registered: t.Registered, Removed: t.Removed, Deleted: t.Deleted, Origin: t.Origin,
		Config: t.Config, Keys: t.Keys, LastRevision: t.LastRevision})
	if err != nil {
		return fmt.Errorf("tenant directory: encode %s: %w", t.ID, err)
	}
	if err := b.Put([]byte(t.ID.String()), v); err != nil {
		return err
	}
	var g [8]byte
	binary.BigEndian.PutUint64(g[:], generation(b)+1)
	return b.Put(genKey, g[:])
}

func generation(b *bolt.Bucket) uint64 {
	if v := b.Get(genKey); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// Generation is the number of tenancy events the read model has applied (committed): when it
// changes, some tenant changed. It fails while the read model catches up.
func (d TenantDirectory) Generation(ctx context.Context) (uint64, error) {
	var g uint64
	err := d.Projection.View(ctx, func(tx *readmodel.Tx) error {
		g = generation(tx.Bucket())
		return nil
	})
	return g, err
}

// getTenant returns the tenant's folded state (an empty stream's when it has no record).
func getTenant(b *bolt.Bucket, id tenant.ID) (*domain.Tenant, error) {
	v := b.Get([]byte(id.String()))
	if v == nil {
		return domain.NewTenant(id), nil
	}
	return decodeTenant(id, v)
}

func decodeTenant(id tenant.ID, v []byte) (*domain.Tenant, error) {
	var r directoryRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("tenant directory: record of %s: %w", id, err)
	}
	return &domain.Tenant{ID: id, Registered: r.Registered, Removed: r.Removed, Deleted: r.Deleted, Origin: r.Origin,
		Config: r.Config, Keys: r.Keys, LastRevision: r.LastRevision, Exists: true}, nil
}

// Recorded returns every tenant with a configuration stream, by id, folded up to the position the
// read model reflects. It waits until the read model has caught up with the store (the bus must be
// running), so a tenant recorded before this start is never missing.
func (d TenantDirectory) Recorded(ctx context.Context) (map[string]*domain.Tenant, error) {
	if err := d.Projection.WaitCaughtUp(ctx); err != nil {
		return nil, err
	}
	out := map[string]*domain.Tenant{}
	err := d.Projection.View(ctx, func(tx *readmodel.Tx) error {
		return tx.Bucket().ForEach(func(k, v []byte) error {
			if string(k) == string(genKey) {
				return nil
			}
			id, err := tenant.Parse(string(k))
			if err != nil {
				return fmt.Errorf("tenant directory: key %q: %w", k, err)
			}
			t, err := decodeTenant(id, v)
			if err != nil {
				return err
			}
			out[id.String()] = t
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
