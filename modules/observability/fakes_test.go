package observability_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

type fakeSearch struct {
	mu      sync.Mutex
	tenants []string
}

func (f *fakeSearch) CacheStats(_ context.Context, t tenant.ID, since, until time.Time) (observability.CacheStats, error) {
	f.mu.Lock()
	f.tenants = append(f.tenants, t.String())
	f.mu.Unlock()
	if t.String() != "acme" {
		return observability.CacheStats{}, nil
	}
	return observability.CacheStats{Hits: 3, Misses: 1, AvgLatencyMs: 12}, nil
}

func mustRead(t testing.TB, e *env) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	for _, tn := range []tenant.ID{acme, beta} {
		evs, err := e.store.ReadTenant(context.Background(), tn, eventstore.Start, 0)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, evs...)
	}
	return out
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
