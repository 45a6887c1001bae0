package adapters

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// KeyUsageProjection is the durable name of the read model of when keys were last used.
const KeyUsageProjection = "tenancy.key-usage"

// The key usage read model holds, per API key, the latest use any replica recorded
// (events.ApiKeysUsed):
//
//	tenant 0 key id  ->  Unix seconds (uint64, big endian)
//
// One key per API key ever used; a later record only ever moves it forward.

// KeyUsage reads the key usage read model.
type KeyUsage struct{ Projection *bus.Projection }

// RegisterKeyUsage registers the key usage projection on b (the tenancy events are registered on
// its codec by RegisterDirectory).
func RegisterKeyUsage(b bus.Consumers) KeyUsage {
	p := b.Projection(KeyUsageProjection, bus.ProjectionOptions{What: "API keys' last use", Version: 1})
	bus.Apply(p, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.ApiKeysUsed) error {
		if env.Tenant.IsZero() {
			return nil
		}
		b := tx.Bucket()
		for id, sec := range ev.Keys {
			k := usageKey(env.Tenant, id)
			if v := b.Get(k); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) >= sec {
				continue
			}
			var v [8]byte
			binary.BigEndian.PutUint64(v[:], uint64(max(sec, 0)))
			if err := b.Put(k, v[:]); err != nil {
				return err
			}
		}
		return nil
	})
	return KeyUsage{Projection: p}
}

func usageKey(t tenant.ID, keyID string) []byte {
	return append(append([]byte(t.String()), 0), keyID...)
}

// LastUsed is the latest recorded use of each of keyIDs (absent: none recorded). It fails while
// the read model catches up.
func (u KeyUsage) LastUsed(ctx context.Context, t tenant.ID, keyIDs []string) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := u.Projection.View(ctx, func(tx *readmodel.Tx) error {
		for _, id := range keyIDs {
			if v := tx.Bucket().Get(usageKey(t, id)); len(v) == 8 {
				out[id] = time.Unix(int64(binary.BigEndian.Uint64(v)), 0).UTC()
			}
		}
		return nil
	})
	return out, err
}
