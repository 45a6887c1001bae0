package tenancy_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/crispy-enigma/crispy/modules/tenancy"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// countingStore counts what a store hands its caller.
type countingStore struct {
	eventstore.Store
	subscribes atomic.Int64 // Subscribe calls
	delivered  atomic.Int64 // events handed over by Subscribe, ReadStream and ReadTenant
}

func (c *countingStore) Subscribe(ctx context.Context, o eventstore.SubscribeOptions, h eventstore.Handler) error {
	c.subscribes.Add(1)
	return c.Store.Subscribe(ctx, o, func(ctx context.Context, e eventstore.Event) error {
		c.delivered.Add(1)
		return h(ctx, e)
	})
}

func (c *countingStore) ReadStream(ctx context.Context, s tenant.Stream, from uint64, max int) ([]eventstore.Event, error) {
	evs, err := c.Store.ReadStream(ctx, s, from, max)
	c.delivered.Add(int64(len(evs)))
	return evs, err
}

func (c *countingStore) ReadTenant(ctx context.Context, t tenant.ID, from eventstore.Position, max int) ([]eventstore.Event, error) {
	evs, err := c.Store.ReadTenant(ctx, t, from, max)
	c.delivered.Add(int64(len(evs)))
	return evs, err
}

func (c *countingStore) reset() { c.subscribes.Store(0); c.delivered.Store(0) }

// history appends n events of other modules (chat sessions of 10 messages, acme's and beta's).
func history(t *testing.T, s eventstore.Store, n int) {
	t.Helper()
	batch := make([]eventstore.EventData, 10)
	for i := range batch {
		batch[i] = eventstore.EventData{Type: "conversation.MessageAppended", Data: []byte(`{"role":"user","content":"hello"}`)}
	}
	for i := 0; i < n/10; i++ {
		id := tenant.MustParse([]string{"acme", "beta"}[i%2])
		if _, err := s.Append(context.Background(), tenant.MustStream(id, "session", fmt.Sprint(i)), eventstore.NoStream, batch...); err != nil {
			t.Fatal(err)
		}
	}
}

// withoutBeta is tenantsYAML with beta gone.
func withoutBeta() string {
	return strings.Replace(tenantsYAML(), "  - id: beta\n    hosts: [beta.example]\n    apiKeys: [\""+tenancy.HashAPIKey(keyB)+"\"]\n", "", 1)
}

func lastPosition(t *testing.T, s eventstore.Store) eventstore.Position {
	t.Helper()
	p, err := s.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStartReadsNoHistory: the tenants-file sync reads the file's tenants' configuration streams and
// learns the other recorded tenants from the tenant directory read model, so it is handed no event
// of the store's history, on a first start (the bus builds the directory in its one pass over the
// store) as on a restart (the bus resumes from the directory's checkpoint). Removed tenants are
// recorded as removed, unchanged ones get nothing.
func TestStartReadsNoHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := eventstoretest.NewMemory()
	const noise = 20_000
	history(t, mem, noise)
	mod, busStore := &countingStore{Store: mem}, &countingStore{Store: mem}
	dir := t.TempDir()
	path := writeFile(t, tenantsYAML())

	h1, err := build(t, tenancy.Config{TenantsFile: path}, setup{store: mod, busStore: busStore, busDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if n, s := mod.delivered.Load(), mod.subscribes.Load(); n != 0 || s != 0 {
		t.Fatalf("first start: the sync was handed %d events (%d subscriptions), want none", n, s)
	}
	if n := busStore.delivered.Load(); n < noise {
		t.Fatalf("first start: the bus read %d events, fewer than the store's %d: the directory was not built from it", n, noise)
	}
	if err := h1.bus.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h1.stopBus(); err != nil {
		t.Fatal(err)
	}

	// Restart from the checkpoint, with beta gone from the file.
	if err := writeFileAt(path, withoutBeta()); err != nil {
		t.Fatal(err)
	}
	last1 := lastPosition(t, mem)
	mod.reset()
	busStore.reset()
	h2, err := build(t, tenancy.Config{TenantsFile: path}, setup{store: mod, busStore: busStore, busDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.bus.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	recorded := int64(lastPosition(t, mem) - last1)
	if recorded != 1 {
		t.Fatalf("restart recorded %d events, want beta's removal alone", recorded)
	}
	if n, s := mod.delivered.Load(), mod.subscribes.Load(); n != 4 || s != 0 {
		t.Fatalf("restart: the sync was handed %d events (%d subscriptions), want acme's and open's configuration streams (4 events) alone", n, s)
	}
	if n := busStore.delivered.Load(); n > recorded {
		t.Fatalf("restart: the bus delivered %d events, want at most the %d recorded since its checkpoint", n, recorded)
	}
	if got := fmt.Sprint(streamTypes(t, mem, "beta", 0)); got != "[TenantRegistered ApiKeyAdded TenantRemoved]" {
		t.Fatalf("beta after leaving the file: %s", got)
	}
	for _, id := range []string{"acme", "open"} {
		if got := fmt.Sprint(streamTypes(t, mem, id, 0)); strings.Contains(got, "Changed") || strings.Contains(got, "Removed") || strings.Count(got, "Registered") != 1 {
			t.Fatalf("%s, unchanged, got %s", id, got)
		}
	}

	// What the restart serves came from the directory, and stays each tenant's own.
	for _, c := range []struct {
		r      req
		status int
	}{
		{req{tenant: "acme", key: keyA}, 200},
		{req{host: "acme.example", key: keyA2}, 200},
		{req{tenant: "open"}, 200},
		{req{tenant: "beta", key: keyB}, 404},
		{req{key: keyB}, 401},
		{req{tenant: "acme", key: keyB}, 401},
		{req{host: "open.example", key: keyA}, 401},
	} {
		if r := h2.get(t, c.r); r.status != c.status {
			t.Fatalf("%+v: %d %v, want %d", c.r, r.status, r.body, c.status)
		}
	}
	if c, err := h2.mod.Config(ctx, tenant.MustParse("open")); err != nil || c.ID != "open" || fmt.Sprint(c.Hosts) != "[open.example]" || c.Feature("rag") {
		t.Fatalf("open's config = %+v, %v", c, err)
	}
	if got := fmt.Sprint(h2.mod.Tenants()); got != "[acme open]" {
		t.Fatalf("tenants = %s", got)
	}

	// Another restart with the same file records nothing.
	if err := h2.stopBus(); err != nil {
		t.Fatal(err)
	}
	last2 := lastPosition(t, mem)
	if _, err := build(t, tenancy.Config{TenantsFile: path}, setup{store: mod, busDir: dir}); err != nil {
		t.Fatal(err)
	}
	if last3 := lastPosition(t, mem); last3 != last2 {
		t.Fatalf("an unchanged restart recorded %d events", last3-last2)
	}
}

// TestCorruptDirectoryRebuilds: a tenant directory file that cannot be read is moved aside and rebuilt
// from the start of the store; the rebuilt directory still knows every recorded tenant.
func TestCorruptDirectoryRebuilds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := eventstoretest.NewMemory()
	history(t, mem, 2_000)
	dir := t.TempDir()
	path := writeFile(t, tenantsYAML())
	h1, err := build(t, tenancy.Config{TenantsFile: path}, setup{store: mem, busDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := h1.bus.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h1.stopBus(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "readmodels", "tenancy.directory.db")
	if err := os.WriteFile(file, []byte(strings.Repeat("not a bbolt file ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}

	if err := writeFileAt(path, withoutBeta()); err != nil {
		t.Fatal(err)
	}
	last1 := lastPosition(t, mem)
	busStore := &countingStore{Store: mem}
	h2, err := build(t, tenancy.Config{TenantsFile: path}, setup{store: mem, busStore: busStore, busDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if n := busStore.delivered.Load(); n < int64(last1) {
		t.Fatalf("the bus delivered %d events, want the whole store (%d): the directory was not rebuilt", n, last1)
	}
	if aside, _ := filepath.Glob(file + ".corrupt-*"); len(aside) != 1 {
		t.Fatalf("the corrupt file was not moved aside: %v", aside)
	}
	if got := fmt.Sprint(streamTypes(t, mem, "beta", 0)); got != "[TenantRegistered ApiKeyAdded TenantRemoved]" {
		t.Fatalf("beta after leaving the file: %s", got)
	}
	if last2 := lastPosition(t, mem); last2 != last1+1 {
		t.Fatalf("recorded %d events, want beta's removal alone", last2-last1)
	}
	if r := h2.get(t, req{tenant: "acme", key: keyA}); r.status != 200 {
		t.Fatalf("acme after the rebuild: %d %v", r.status, r.body)
	}
}

// TestStartWithoutBusSyncsTheFileOnly: a command-line tool starts the module without a bus (no
// Register, no Run). It records the file's tenants, each folded from its own stream, subscribes to
// nothing, and serves only the file's tenants; a removal is recorded by the next server start.
func TestStartWithoutBusSyncsTheFileOnly(t *testing.T) {
	t.Parallel()
	mem := eventstoretest.NewMemory()
	history(t, mem, 2_000)
	path := writeFile(t, tenantsYAML())
	if _, err := newHarness(t, mem, tenancy.Config{TenantsFile: path}); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAt(path, withoutBeta()); err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: mem}
	h, err := build(t, tenancy.Config{TenantsFile: path}, setup{store: cs, noBus: true})
	if err != nil {
		t.Fatal(err)
	}
	if s, n := cs.subscribes.Load(), cs.delivered.Load(); s != 0 || n != 4 {
		t.Fatalf("without a bus: %d subscriptions, %d events read; want none, and acme's and open's streams (4 events)", s, n)
	}
	if got := fmt.Sprint(h.mod.Tenants()); got != "[acme open]" {
		t.Fatalf("tenants = %s", got)
	}
	if r := h.get(t, req{tenant: "beta", key: keyB}); r.status != 404 {
		t.Fatalf("beta: %d", r.status)
	}
	if got := fmt.Sprint(streamTypes(t, mem, "beta", 0)); got != "[TenantRegistered ApiKeyAdded]" {
		t.Fatalf("beta without a bus: %s", got)
	}
	if _, err := newHarness(t, mem, tenancy.Config{TenantsFile: path}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(streamTypes(t, mem, "beta", 0)); got != "[TenantRegistered ApiKeyAdded TenantRemoved]" {
		t.Fatalf("beta after a server start: %s", got)
	}
}
