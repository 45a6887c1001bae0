package app

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/conversation/internal/convtest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// BenchmarkLoad1000 rebuilds a 1,000-message session from the embedded store: cold (fold of every
// event, what a restart or a cache miss costs) and cached (the cached fold plus a read of the events
// after its revision, what every turn and GET history costs), and cached after one new event.
func BenchmarkLoad1000(b *testing.B) {
	st, err := embedded.Open(b.TempDir(), embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	t := tenant.MustParse("acme")
	s := uuid.NewString()
	stream, err := convtest.SeedSession(ctx, st, t, s, 500)
	if err != nil {
		b.Fatal(err)
	}
	svc := snapService(st, 0)
	b.Run("cold", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			svc.Cache.drop(cacheKey(t, s))
			sess, err := svc.load(ctx, t, s)
			if err != nil || len(sess.Messages) != 1000 {
				b.Fatalf("%d %v", len(sess.Messages), err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			sess, err := svc.load(ctx, t, s)
			if err != nil || len(sess.Messages) < 1000 {
				b.Fatalf("%d %v", len(sess.Messages), err)
			}
		}
	})
	b.Run("cached-plus-one-event", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			ev, _ := eventstore.NewEventData(events.TypeAssistantMessageFailed, events.AssistantMessageFailed{SessionID: s, TurnID: "x", Code: "cancelled"})
			if _, err := st.Append(ctx, stream, eventstore.Any, ev); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := svc.load(ctx, t, s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLoadCold10000 folds a 10,000-message session on a cold cache, the cost of a restart or
// a cache miss on a long session: from every event (no snapshots, as before them), and from
// snapshot segments every 256 events (written by the first cold load) plus the events after them.
func BenchmarkLoadCold10000(b *testing.B) {
	for _, every := range []int{0, 256} {
		name := "every-event"
		if every > 0 {
			name = "segments-every-256"
		}
		b.Run(name, func(b *testing.B) {
			st, err := embedded.Open(b.TempDir(), embedded.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			ctx := context.Background()
			t := tenant.MustParse("acme")
			s := uuid.NewString()
			if _, err := convtest.SeedSession(ctx, st, t, s, 5000); err != nil {
				b.Fatal(err)
			}
			svc := snapService(st, every)
			if _, err := svc.load(ctx, t, s); err != nil { // writes the segments
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				svc.Cache.drop(cacheKey(t, s))
				sess, err := svc.load(ctx, t, s)
				if err != nil || len(sess.Messages) != 10000 {
					b.Fatalf("%d %v", len(sess.Messages), err)
				}
			}
		})
	}
}
