package bustest_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func TestRegistryFeedsHandlersByTypeWithTenant(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := eventstoretest.NewMemory()
	acme, globex := tenant.MustParse("acme"), tenant.MustParse("globex")
	add := func(tid tenant.ID, typ string) string {
		res, err := store.Append(ctx, tenant.MustStream(tid, "thing", "1"), eventstore.Any, eventstore.EventData{Type: typ, Data: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		return res.Events[0].ID
	}
	a1 := add(acme, "test.A")
	add(globex, "test.B")

	reg := bustest.New(ctx, store)
	var mu sync.Mutex
	got := map[tenant.ID][]string{}
	reg.Project("test.a-only", []string{"test.A"}, func(ctx context.Context, e eventstore.Event) error {
		tid, _ := tenant.FromContext(ctx)
		mu.Lock()
		got[tid] = append(got[tid], e.ID)
		mu.Unlock()
		return nil
	})
	var all []string
	reg.On("test.all", nil, func(_ context.Context, e eventstore.Event) error {
		mu.Lock()
		all = append(all, e.ID)
		mu.Unlock()
		return nil
	})
	a2 := add(acme, "test.A")
	g2 := add(globex, "test.A")

	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	if err := reg.Sync(sctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got[acme], []string{a1, a2}) || !slices.Equal(got[globex], []string{g2}) {
		t.Fatalf("projection got %v", got)
	}
	if len(all) != 4 {
		t.Fatalf("On handler got %d events, want 4", len(all))
	}
	if errs := reg.Errors(); len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
}
