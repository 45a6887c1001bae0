package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/eventstore/postgres/pgtest"
	"github.com/crispy-enigma/crispy/platform/health"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

var (
	acme  = tenant.MustParse("acme")
	other = tenant.MustParse("other")
)

func ev(i int) eventstore.EventData {
	return eventstore.EventData{Type: "test.Happened", Data: []byte(fmt.Sprintf(`{"n":%d}`, i))}
}

func bg(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestIntegrationAcceptanceSuite runs the port's acceptance suite against a real server, each subtest
// in its own schema; once with appends grouped (the default) and once with one transaction per append.
func TestIntegrationAcceptanceSuite(t *testing.T) {
	url := pgURL(t)
	for _, batch := range []int{0, 1} {
		t.Run(fmt.Sprintf("MaxBatch=%d", batch), func(t *testing.T) {
			eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
				return openTest(t, url, testSchema(t, url), func(c *Config) { c.MaxBatch = batch })
			})
		})
	}
}

// TestIntegrationLateCommitIsNeverSkipped forces the sequence-visibility interleaving: appender A (one
// store) has taken its position and inserted its event but not committed; appender B (a second store,
// as another replica would) appends meanwhile; a subscriber reads the log repeatedly while A is held.
// With positions from a sequence, B commits position p+1 first, the subscriber moves past p, and A's
// event is never delivered. The subscriber must see every event exactly once, in position order.
func TestIntegrationLateCommitIsNeverSkipped(t *testing.T) {
	url := pgURL(t)
	schema := testSchema(t, url)
	a := openTest(t, url, schema, nil)
	b := openTest(t, url, schema, func(c *Config) { c.PollInterval = 20 * time.Millisecond })

	held, release := make(chan struct{}), make(chan struct{})
	var holdOnce sync.Once
	a.hooks.beforeCommit = func(context.Context) {
		holdOnce.Do(func() {
			close(held)
			<-release
		})
	}
	polls := make(chan struct{}, 1)
	b.hooks.polled = func() {
		select {
		case polls <- struct{}{}:
		default:
		}
	}

	var mu sync.Mutex
	var got []eventstore.Event
	ctx, cancel := context.WithCancel(bg(t))
	defer cancel()
	subDone := make(chan error, 1)
	go func() {
		subDone <- b.Subscribe(ctx, eventstore.SubscribeOptions{}, func(_ context.Context, e eventstore.Event) error {
			mu.Lock()
			got = append(got, e)
			mu.Unlock()
			return nil
		})
	}()
	seen := func(id string) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, e := range got {
				if e.ID == id {
					return true
				}
			}
			return false
		}
	}
	r0, err := b.Append(bg(t), tenant.MustStream(acme, "session", "zero"), eventstore.Any, ev(0))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the subscriber to see the first event", seen(r0.Events[0].ID))

	type result struct {
		r   eventstore.AppendResult
		err error
	}
	resA, resB := make(chan result, 1), make(chan result, 1)
	go func() {
		r, err := a.Append(bg(t), tenant.MustStream(acme, "session", "late"), eventstore.Any, ev(1))
		resA <- result{r, err}
	}()
	select {
	case <-held:
	case <-time.After(60 * time.Second):
		t.Fatal("appender A never reached its commit")
	}
	go func() {
		r, err := b.Append(bg(t), tenant.MustStream(other, "session", "early"), eventstore.Any, ev(2))
		resB <- result{r, err}
	}()
	// B has either committed (a store whose positions do not commit in order) or waits for A.
	var bDone *result
	conn, err := pgx.Connect(bg(t), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	eventually(t, "appender B to commit or to wait for A", func() bool {
		select {
		case r := <-resB:
			bDone = &r
			return true
		default:
		}
		var waiting int
		err := conn.QueryRow(bg(t), `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%'`, schema).Scan(&waiting)
		return err == nil && waiting > 0
	})
	t.Logf("while A held its transaction open, B had returned: %v", bDone != nil)
	// Let the subscriber read the log (at least) twice while A is still held.
	for i := 0; i < 2; i++ {
		select {
		case <-polls:
		case <-time.After(60 * time.Second):
			t.Fatal("the subscriber did not read while A was held")
		}
	}
	close(release)
	ra := <-resA
	if ra.err != nil {
		t.Fatalf("append A: %v", ra.err)
	}
	rb := bDone
	if rb == nil {
		r := <-resB
		rb = &r
	}
	if rb.err != nil {
		t.Fatalf("append B: %v", rb.err)
	}
	r3, err := b.Append(bg(t), tenant.MustStream(acme, "session", "after"), eventstore.Any, ev(3))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the subscriber to see the last event", seen(r3.Events[0].ID))
	cancel()
	if err := <-subDone; err != nil {
		t.Fatalf("subscription ended with %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	want := map[string]eventstore.Position{
		r0.Events[0].ID: r0.Position, ra.r.Events[0].ID: ra.r.Position, rb.r.Events[0].ID: rb.r.Position, r3.Events[0].ID: r3.Position,
	}
	count := map[string]int{}
	for i, e := range got {
		count[e.ID]++
		if i > 0 && e.Position <= got[i-1].Position {
			t.Errorf("delivery %d at position %d after %d: not in position order", i, e.Position, got[i-1].Position)
		}
	}
	for id, pos := range want {
		if count[id] != 1 {
			t.Errorf("event %s (position %d) delivered %d times, want exactly once", id, pos, count[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("delivered %d events, want %d", len(got), len(want))
	}
}

// TestIntegrationDatabaseCutAndRestored: with the server unreachable mid-run, appends and reads answer
// 503 storage_unavailable and Health says down; when it is back the same store appends again, a
// subscription that was running delivers what follows without a restart, and Health recovers.
func TestIntegrationDatabaseCutAndRestored(t *testing.T) {
	url := pgURL(t)
	schema := testSchema(t, url)
	p := pgtest.NewProxy(t, url)
	s := openTest(t, p.Via(t, url), schema, func(c *Config) {
		c.PollInterval = 100 * time.Millisecond
		c.WriteTimeout = 5 * time.Second
	})
	st := tenant.MustStream(acme, "session", "cut")
	got := make(chan eventstore.Event, 100)
	ctx, cancel := context.WithCancel(bg(t))
	defer cancel()
	subDone := make(chan error, 1)
	go func() {
		subDone <- s.Subscribe(ctx, eventstore.SubscribeOptions{Tenant: acme}, func(_ context.Context, e eventstore.Event) error {
			got <- e
			return nil
		})
	}()
	if _, err := s.Append(bg(t), st, eventstore.NoStream, ev(0)); err != nil {
		t.Fatal(err)
	}
	expect(t, got, 0)
	eventually(t, "the listener to be up", func() bool { return s.Health(bg(t)) == nil })

	p.Cut()
	_, err := s.Append(bg(t), st, eventstore.Exact(0), ev(1))
	wantUnavailable(t, "append while the database is cut", err)
	if errors.Is(err, eventstore.ErrStorageOutcomeUnknown) {
		t.Errorf("an append refused before its commit was sent says its outcome is unknown: %v", err)
	}
	_, err = s.ReadStream(bg(t), st, 0, 0)
	wantUnavailable(t, "read while the database is cut", err)
	_, err = s.LastPosition(bg(t))
	wantUnavailable(t, "last position while the database is cut", err)
	if status, _ := health.Classify(s.Health(bg(t))); status != health.Down {
		t.Errorf("health while the database is cut: %s, want down", status)
	}

	p.Restore(t)
	eventually(t, "an append to succeed after the database is back", func() bool {
		_, err := s.Append(bg(t), st, eventstore.Exact(0), ev(1))
		if err != nil && !errors.Is(err, eventstore.ErrStorageUnavailable) {
			t.Fatalf("append after restore: %v", err)
		}
		return err == nil
	})
	expect(t, got, 1)
	eventually(t, "health to recover", func() bool { return s.Health(bg(t)) == nil })
	if _, err := s.Append(bg(t), st, eventstore.Exact(1), ev(2)); err != nil {
		t.Fatal(err)
	}
	expect(t, got, 2)
	evs, err := s.ReadStream(bg(t), st, 0, 0)
	if err != nil || len(evs) != 3 {
		t.Fatalf("after the outage the stream has %d events (%v), want 3: refused appends must record nothing", len(evs), err)
	}
	cancel()
	if err := <-subDone; err != nil {
		t.Fatalf("the subscription ended with %v, want it to survive the outage", err)
	}
}

func wantUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	var ae *apperr.Error
	if !errors.Is(err, eventstore.ErrStorageUnavailable) || !errors.As(err, &ae) || ae.Code != "storage_unavailable" || apperr.KindOf(err) != apperr.KindUnavailable {
		t.Errorf("%s: %v, want ErrStorageUnavailable (503 storage_unavailable)", what, err)
	}
}

func expect(t *testing.T, ch <-chan eventstore.Event, n int) {
	t.Helper()
	eventstoretest.ExpectEvent(t, ch, n, 60*time.Second)
}

// TestIntegrationTwoStoresShareOneDatabase: two stores on one schema behave as replicas: a
// subscription on one is woken by the other's append through NOTIFY (its poll is an hour, so nothing
// else can wake it), and expected revisions hold across them.
func TestIntegrationTwoStoresShareOneDatabase(t *testing.T) {
	url := pgURL(t)
	schema := testSchema(t, url)
	a := openTest(t, url, schema, nil)
	b := openTest(t, url, schema, func(c *Config) { c.PollInterval = time.Hour })
	got := make(chan eventstore.Event, 10)
	caught := make(chan struct{})
	ctx, cancel := context.WithCancel(bg(t))
	defer cancel()
	go b.Subscribe(ctx, eventstore.SubscribeOptions{Tenant: acme, CaughtUp: func(context.Context, eventstore.Position) error {
		close(caught)
		return nil
	}}, func(_ context.Context, e eventstore.Event) error {
		got <- e
		return nil
	})
	<-caught
	eventually(t, "b's listener to be up", func() bool { return b.listening.Load() })
	st := tenant.MustStream(acme, "session", "shared")
	if _, err := a.Append(bg(t), st, eventstore.NoStream, ev(0)); err != nil {
		t.Fatal(err)
	}
	expect(t, got, 0)

	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for i := 0; i < 16; i++ {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Append(bg(t), st, eventstore.Exact(0), ev(1))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, eventstore.ErrConflict):
				conflicts++
			default:
				t.Errorf("append: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || conflicts != 15 {
		t.Fatalf("across two stores: %d wins, %d conflicts; want exactly one winner", wins, conflicts)
	}
	v := eventstore.NewChainVerifier()
	evs, _ := b.ReadStream(bg(t), st, 0, 0)
	for i := range evs {
		if err := v.Check(&evs[i]); err != nil {
			t.Fatal(err)
		}
	}
}

// TestIntegrationGroupedAppendsAnswerEachAlone: concurrent appends through one store share
// transactions, but a conflict or a value the database refuses fails only its own append.
func TestIntegrationGroupedAppendsAnswerEachAlone(t *testing.T) {
	url := pgURL(t)
	s := openTest(t, url, testSchema(t, url), nil)
	const n = 48
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			d := ev(i)
			exp := eventstore.NoStream
			switch i % 8 {
			case 3:
				d.Actor = "bad\x00actor" // text cannot hold NUL: refused before it reaches the server
			case 5:
				exp = eventstore.StreamExists // a new stream: conflict
			}
			_, errs[i] = s.Append(bg(t), tenant.MustStream(acme, "session", fmt.Sprintf("g%d", i)), exp, d)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		switch i % 8 {
		case 3:
			if !errors.Is(err, eventstore.ErrInvalid) {
				t.Errorf("append %d with a NUL in its actor: %v, want ErrInvalid", i, err)
			}
		case 5:
			if !errors.Is(err, eventstore.ErrConflict) {
				t.Errorf("append %d expecting a stream that does not exist: %v, want ErrConflict", i, err)
			}
		default:
			if err != nil {
				t.Errorf("append %d: %v", i, err)
			}
		}
	}
	all, err := s.ReadTenant(bg(t), acme, eventstore.Start, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := n - 2*n/8; len(all) != want {
		t.Fatalf("recorded %d events, want %d", len(all), want)
	}
	for i := range all {
		if all[i].Position != eventstore.Position(i+1) {
			t.Fatalf("event %d at position %d: positions must be gapless (refused appends take none)", i, all[i].Position)
		}
	}
}

// TestIntegrationMaxAgeHidesOldEvents: max-age hides events older than the store's clock allows, in
// stream and tenant reads and in subscriptions.
func TestIntegrationMaxAgeHidesOldEvents(t *testing.T) {
	url := pgURL(t)
	var mu sync.Mutex
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	s := openTest(t, url, testSchema(t, url), nil, Options{Log: testLog(), Now: clock})
	st := tenant.MustStream(acme, "session", "aging")
	if _, err := s.Append(bg(t), st, eventstore.Any, ev(0)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	if _, err := s.Append(bg(t), st, eventstore.Any, ev(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetStreamMetadata(bg(t), st, eventstore.StreamMetadata{MaxAge: 30 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	md, err := s.StreamMetadata(bg(t), st)
	if err != nil || md.MaxAge != 30*time.Minute || md.TruncateBefore != nil {
		t.Fatalf("metadata = %+v, %v", md, err)
	}
	evs, _ := s.ReadStream(bg(t), st, 0, 0)
	if len(evs) != 1 || evs[0].Revision != 1 {
		t.Fatalf("stream read with max-age 30m at +1h: %v, want only revision 1", evs)
	}
	evs, _ = s.ReadTenant(bg(t), acme, eventstore.Start, 0)
	if len(evs) != 1 || evs[0].Revision != 1 {
		t.Fatalf("tenant read with max-age: %v, want only revision 1", evs)
	}
	got := make(chan eventstore.Event, 10)
	ctx, cancel := context.WithCancel(bg(t))
	defer cancel()
	go s.Subscribe(ctx, eventstore.SubscribeOptions{Tenant: acme}, func(_ context.Context, e eventstore.Event) error {
		got <- e
		return nil
	})
	expect(t, got, 1)
	if err := s.SetStreamMetadata(bg(t), st, eventstore.StreamMetadata{}); err != nil {
		t.Fatal(err)
	}
	if evs, _ := s.ReadStream(bg(t), st, 0, 0); len(evs) != 2 {
		t.Fatalf("after clearing max-age the stream reads %d events, want 2", len(evs))
	}
}

// TestIntegrationMigrations: the schema is created once (reopening and concurrent first opens
// change nothing), and a schema written by a newer binary is refused with a line that says so.
func TestIntegrationMigrations(t *testing.T) {
	url := pgURL(t)
	schema := testSchema(t, url)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(bg(t), Config{URL: url, Schema: schema}, Options{})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent first open: %v", err)
		}
	}
	s := openTest(t, url, schema, nil)
	if _, err := s.Append(bg(t), tenant.MustStream(acme, "session", "m"), eventstore.NoStream, ev(0)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, url, schema, nil)
	if evs, err := s.ReadStream(bg(t), tenant.MustStream(acme, "session", "m"), 0, 0); err != nil || len(evs) != 1 {
		t.Fatalf("after reopening: %d events, %v", len(evs), err)
	}
	var versions []int
	rows, _ := s.pool.Query(bg(t), `SELECT version FROM `+pgx.Identifier{schema}.Sanitize()+`.schema_migrations ORDER BY version`)
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil || len(versions) != len(migrations) || versions[len(versions)-1] != latestVersion() {
		t.Fatalf("schema_migrations = %v (%v), want each of %d versions once", versions, err, len(migrations))
	}
	if _, err := s.pool.Exec(bg(t), `INSERT INTO `+pgx.Identifier{schema}.Sanitize()+`.schema_migrations (version, description) VALUES ($1, 'from the future')`, latestVersion()+1); err != nil {
		t.Fatal(err)
	}
	_, err = Open(bg(t), Config{URL: url, Schema: schema}, Options{})
	if err == nil || !errors.Is(err, errSchemaNewer) || !strings.Contains(err.Error(), "newer crispy") {
		t.Fatalf("open of a newer schema: %v, want a refusal that says to run a newer crispy", err)
	}
}
