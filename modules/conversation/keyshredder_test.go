package conversation_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/keystore/keystoretest"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// flakyKeys fails every destruction while down is set, as a key store that is down would. A gate,
// not a count of failures: the key-shredder processor may see the expiry before the sweep calls
// Destroy, and a count would let it take the failure meant for the sweep (1 run in 40 under load).
type flakyKeys struct {
	keystore.Store
	down atomic.Bool
}

func (k *flakyKeys) Destroy(ctx context.Context, t tenant.ID, id string) error {
	if k.down.Load() {
		return errors.Join(keystore.ErrUnavailable, errors.New("simulated: key store down"))
	}
	return k.Store.Destroy(ctx, t, id)
}

func keyState(t *testing.T, ks keystore.Store, tn, id string) error {
	t.Helper()
	_, err := ks.Key(context.Background(), tenant.MustParse(tn), "session/"+id)
	return err
}

// An expiry whose key destruction failed is finished by the key-shredder processor: before it,
// the expired session left the idle list, so no later sweep came back to it and its key (its
// content) stayed live for good.
func TestExpiryWhoseKeyDestructionFailedIsFinishedLater(t *testing.T) {
	raw := eventstoretest.NewMemory()
	fk := &flakyKeys{Store: keystoretest.NewMemory()}
	fk.down.Store(true)
	sealers.Store(raw, sealing.New(fk))
	e := newEnv(t, opts{store: raw, tenants: map[string]tenancyevents.TenantConfig{"acme": {SessionRetentionDays: 7}}})
	id := sid()
	e.chatJSON("acme", id, "my secret diagnosis")
	e.sync()
	e.clock.Add(8 * 24 * time.Hour)
	if _, err := e.mod.Sweep(context.Background()); err == nil {
		t.Fatal("the sweep reported no error although the key could not be destroyed")
	}
	if err := keyState(t, fk, "acme", id); err != nil {
		t.Fatalf("the key is not live while the key store is down: %v", err)
	}
	fk.down.Store(false) // the key store is back: nothing but the processor comes back to the session
	eventually(t, "the expired session's key destroyed", func() bool {
		return errors.Is(keyState(t, fk, "acme", id), keystore.ErrDestroyed)
	})
}

// A crash between the deletion's append and the key's destruction: the SessionDeleted is in the
// log, the key is live. The processor destroys it (and only that tenant's, only that session's).
func TestDeletionCutBeforeKeyDestructionIsFinishedLater(t *testing.T) {
	raw := eventstoretest.NewMemory()
	ks := keystoretest.NewMemory()
	sealers.Store(raw, sealing.New(ks))
	e := newEnv(t, opts{store: raw})
	id, other := sid(), sid()
	e.chatJSON("acme", id, "my secret diagnosis")
	e.chatJSON("beta", id, "beta's own session under the same id")
	e.chatJSON("acme", other, "another acme session")
	e.sync()
	st, err := tenant.NewStream(tenant.MustParse("acme"), events.SessionCategory, id)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := eventstore.NewEventData(events.TypeSessionDeleted, events.SessionDeleted{SessionID: id})
	if err != nil {
		t.Fatal(err)
	}
	// What Delete appends before it destroys the key; the process "stops" here.
	if _, err := e.store.Append(context.Background(), st, eventstore.Any, ev); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted session's key destroyed", func() bool {
		return errors.Is(keyState(t, ks, "acme", id), keystore.ErrDestroyed)
	})
	e.sync()
	if err := keyState(t, ks, "beta", id); err != nil {
		t.Fatalf("beta's session under the same id lost its key: %v", err)
	}
	if err := keyState(t, ks, "acme", other); err != nil {
		t.Fatalf("another acme session lost its key: %v", err)
	}
	if r := e.do("GET", "/chat/"+id+"/history", "beta", nil); r.status != 200 || !strings.Contains(r.raw, "beta's own session") {
		t.Fatalf("beta's session: %d %s", r.status, r.raw)
	}
}
