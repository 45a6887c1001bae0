package alerts_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability/events"
	"github.com/crispy-enigma/crispy/modules/observability/internal/alerts"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/bus/codec"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// eventCodec is the event codec with the observability events, as the module builds it.
func eventCodec() *codec.Registry {
	c := codec.New()
	events.Register(c.Add)
	return c
}

// slowReads widens the window between a writer's read and its append, as an fsync'ing store under
// load does, so concurrent writers of one stream really race.
type slowReads struct{ eventstore.Store }

func (s slowReads) ReadStream(ctx context.Context, st tenant.Stream, from uint64, max int) ([]eventstore.Event, error) {
	evs, err := s.Store.ReadStream(ctx, st, from, max)
	time.Sleep(2 * time.Millisecond) // what was read grows stale meanwhile
	return evs, err
}

// TestConcurrentSavesOfOneRuleAllLand: a burst of saves of one rule (a client retrying, a deploy
// script run twice) exhausted the optimistic-concurrency retries and answered 500.
func TestConcurrentSavesOfOneRuleAllLand(t *testing.T) {
	t.Parallel()
	store := slowReads{eventstoretest.NewMemory()}
	g := alerts.NewEngine(store, eventCodec(), nil, nil, slog.New(slog.DiscardHandler), time.Now)
	acme := tenant.MustParse("acme")
	const n = 64
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := g.Save(context.Background(), acme, events.AlertRule{ID: "burst", Name: fmt.Sprint("Burst ", i), Metric: "requests",
				Comparator: "gt", Threshold: float64(i), Period: "1h", Enabled: true})
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent save: %v (kind %s)", err, apperr.KindOf(err))
		}
	}
	evs, err := store.ReadStream(context.Background(), tenant.MustStream(acme, alerts.Category, "burst"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != n {
		t.Fatalf("%d saves recorded, want %d", len(evs), n)
	}
}
