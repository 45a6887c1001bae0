package audit_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/crispy-enigma/crispy/modules/observability/internal/audit"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// mutated serves t's events with one change applied to the event at index at.
type mutated struct {
	eventstore.Store
	at  int
	fn  func(*eventstore.Event)
	all []eventstore.Event
}

func (m mutated) ReadTenant(_ context.Context, _ tenant.ID, from eventstore.Position, max int) ([]eventstore.Event, error) {
	var out []eventstore.Event
	for i, e := range m.all {
		if e.Position < from {
			continue
		}
		if i == m.at {
			m.fn(&e)
		}
		out = append(out, e)
		if max > 0 && len(out) == max {
			break
		}
	}
	return out, nil
}

// Verify's parallel walk gives the same verdict as eventstore.ChainVerifier for every kind of damage.
func TestVerifyAgreesWithChainVerifier(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	acme := tenant.MustParse("acme")
	mem := eventstoretest.NewMemory()
	for i := 0; i < 4200; i++ { // more than one page
		if _, err := mem.Append(ctx, tenant.MustStream(acme, "session", fmt.Sprint(i%7)), eventstore.Any,
			eventstore.EventData{Type: "t.E", Data: []byte(fmt.Sprintf(`{"i":%d}`, i))}); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := mem.ReadTenant(ctx, acme, eventstore.Start, 0)
	damages := map[string]func(*eventstore.Event){
		"none":     func(*eventstore.Event) {},
		"data":     func(e *eventstore.Event) { e.Data = []byte(`{"i":-1}`) },
		"hash":     func(e *eventstore.Event) { e.Hash = e.Prev },
		"relinked": func(e *eventstore.Event) { _ = eventstore.Seal("00", e) },
		"gap":      func(e *eventstore.Event) { e.Revision += 2; _ = eventstore.Seal(e.Prev, e) },
		"badjson":  func(e *eventstore.Event) { e.Data = []byte(`{`) },
	}
	for name, fn := range damages {
		for _, at := range []int{0, 4100, 4199} {
			s := mutated{Store: mem, at: at, fn: fn, all: all}
			got, err := audit.Verify(ctx, s, acme, nil)
			if err != nil {
				t.Fatal(err)
			}
			v := eventstore.NewChainVerifier()
			var want *audit.BadEvent
			evs, _ := s.ReadTenant(ctx, acme, eventstore.Start, 0)
			for i := range evs {
				if err := v.Check(&evs[i]); err != nil {
					ce := err.(*eventstore.ChainError)
					want = &audit.BadEvent{ID: ce.EventID, Stream: ce.Stream, Revision: ce.Revision, Reason: ce.Reason}
					break
				}
			}
			if (want == nil) != got.OK || (want != nil && *want != *got.FirstBadEvent) || (want == nil && got.EventsChecked != 4200) {
				t.Errorf("%s at %d: got %+v %+v, want %+v", name, at, got, got.FirstBadEvent, want)
			}
		}
	}
}
