package esdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

var (
	acme  = tenant.MustParse("acme")
	other = tenant.MustParse("other")
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func openFake(t *testing.T, url string, cfg Config) *Store {
	t.Helper()
	cfg.URL = url
	if cfg.ResubscribeDelay == 0 {
		cfg.ResubscribeDelay = 10 * time.Millisecond
	}
	s, err := Open(testCtx(t), cfg, Options{})
	if err != nil {
		t.Fatalf("open against the fake: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func evd(i int) eventstore.EventData {
	return eventstore.EventData{Type: "test.Happened", Data: []byte(fmt.Sprintf(`{"n":%d}`, i))}
}

func mustAppend(t *testing.T, s *Store, st tenant.Stream, exp eventstore.ExpectedRevision, evs ...eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	r, err := s.Append(testCtx(t), st, exp, evs...)
	if err != nil {
		t.Fatalf("append to %s: %v", st, err)
	}
	return r
}

func TestContractAppendSendsExactRevisionTypeContentTypeAndEnvelope(t *testing.T) {
	t.Parallel()
	f, url := startFake(t)
	s := openFake(t, url, Config{})
	st := tenant.MustStream(acme, "session", "a1")
	c := request.With(testCtx(t), request.Info{ID: "req-1", Actor: "user-9", User: "ann"})
	first, err := s.Append(c, st, eventstore.NoStream, evd(0), evd(1))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, st, eventstore.Exact(1), evd(2))
	mustAppend(t, s, st, eventstore.Any, evd(3))
	mustAppend(t, s, st, eventstore.StreamExists, evd(4))

	calls := f.appendCalls()
	// Every expectation is sent as the exact state read: a concurrent writer cannot slip in between
	// the head read and the write and break the hash chain.
	wantExpected := []string{"no_stream", "1", "2", "3"}
	if len(calls) != len(wantExpected) {
		t.Fatalf("fake received %d appends, want %d", len(calls), len(wantExpected))
	}
	for i, call := range calls {
		if call.Stream != "t-acme.session-a1" || call.Expected != wantExpected[i] {
			t.Errorf("append %d: stream %q expected %q, want t-acme.session-a1 and %q", i, call.Stream, call.Expected, wantExpected[i])
		}
	}
	msgs := calls[0].Messages
	if len(msgs) != 2 {
		t.Fatalf("first append sent %d events, want 2", len(msgs))
	}
	var prevHash string
	for i, m := range msgs {
		if m.Metadata["type"] != "test.Happened" || m.Metadata["content-type"] != "application/json" {
			t.Errorf("event %d system metadata = %v, want type test.Happened and content-type application/json", i, m.Metadata)
		}
		if string(m.Data) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Errorf("event %d data = %s", i, m.Data)
		}
		var env map[string]any
		if err := json.Unmarshal(m.CustomMetadata, &env); err != nil {
			t.Fatalf("event %d custom metadata is not JSON: %v (%s)", i, err, m.CustomMetadata)
		}
		for _, k := range []string{"id", "time", "prev", "hash"} {
			if _, ok := env[k]; !ok {
				t.Errorf("event %d envelope lacks %q: %s", i, k, m.CustomMetadata)
			}
		}
		if env["requestId"] != "req-1" || env["actor"] != "user-9" || env["user"] != "ann" || env["correlationId"] != "req-1" {
			t.Errorf("event %d envelope = %v, want request id, actor and correlation from the context", i, env)
		}
		if env["id"] != first.Events[i].ID || sentID(t, m.Id) != first.Events[i].ID {
			t.Errorf("event %d: envelope id %v, server id %s, want both %s", i, env["id"], sentID(t, m.Id), first.Events[i].ID)
		}
		if env["prev"] != prevHash {
			t.Errorf("event %d prev = %v, want %q", i, env["prev"], prevHash)
		}
		prevHash, _ = env["hash"].(string)
	}
	// The head read that continues the chain: the stream, backwards from its end, one event.
	var heads int
	for _, r := range f.readRequests() {
		o := r.GetOptions()
		if o.GetStream() != nil && string(o.GetStream().GetStreamIdentifier().GetStreamName()) == "t-acme.session-a1" &&
			o.GetReadDirection() == api.ReadReq_Options_Backwards && o.GetStream().GetEnd() != nil && o.GetCount() == 1 {
			heads++
		}
	}
	if heads != 4 {
		t.Errorf("saw %d head reads (backwards from end, count 1), want one per append (4)", heads)
	}
	// What was written reads back and re-verifies.
	got, err := s.ReadStream(testCtx(t), st, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("read %d events, want 5", len(got))
	}
	v := eventstore.NewChainVerifier()
	for i := range got {
		if err := v.Check(&got[i]); err != nil {
			t.Fatalf("read-back event %d does not verify: %v", i, err)
		}
		if got[i].Revision != uint64(i) || got[i].Tenant != acme || got[i].Stream != st.String() || got[i].Position == 0 {
			t.Errorf("event %d = %+v", i, got[i])
		}
		if i > 0 && got[i].Position <= got[i-1].Position {
			t.Errorf("positions not increasing at %d", i)
		}
	}
	if got[0].RequestID != "req-1" || got[0].Actor != "user-9" || got[0].User != "ann" {
		t.Errorf("read-back envelope = %+v", got[0])
	}
}

func sentID(t *testing.T, id *shared.UUID) string {
	t.Helper()
	s := id.GetStructured()
	if s == nil {
		return id.GetString_()
	}
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(uint64(s.MostSignificantBits) >> (56 - 8*i))
		b[8+i] = byte(uint64(s.LeastSignificantBits) >> (56 - 8*i))
	}
	return uuid.UUID(b).String()
}

func TestContractAppendMapsWrongExpectedVersion(t *testing.T) {
	t.Parallel()
	f, url := startFake(t)
	s := openFake(t, url, Config{})
	rival := openFake(t, url, Config{})
	st := tenant.MustStream(acme, "session", "race")
	mustAppend(t, s, st, eventstore.NoStream, evd(0))

	// Another writer appends between this store's head read and its write.
	interpose := func() {
		f.set(func(f *fakeServer) {
			f.beforeAppend = func(string) {
				f.set(func(f *fakeServer) { f.beforeAppend = nil })
				mustAppend(t, rival, st, eventstore.Any, evd(100))
			}
		})
	}
	interpose()
	_, err := s.Append(testCtx(t), st, eventstore.Exact(0), evd(1))
	var ce *eventstore.ConflictError
	if !errors.Is(err, eventstore.ErrConflict) || !errors.As(err, &ce) {
		t.Fatalf("append after a concurrent write: %v, want *ConflictError", err)
	}
	if ce.Stream != st.String() || !ce.Exists || ce.Actual != 1 {
		t.Errorf("conflict = %+v, want stream %s, actual revision 1", ce, st)
	}
	calls := f.appendCalls()
	if last := calls[len(calls)-2]; last.Expected != "0" {
		t.Errorf("the losing append sent expected %q, want the revision it read (0)", last.Expected)
	}

	// Any retries from the fresh head and continues the chain after the rival's event.
	interpose()
	r, err := s.Append(testCtx(t), st, eventstore.Any, evd(2))
	if err != nil {
		t.Fatalf("Any append after a concurrent write: %v", err)
	}
	if r.NextExpected != 3 {
		t.Fatalf("Any append landed at %d, want 3", r.NextExpected)
	}
	got, _ := s.ReadStream(testCtx(t), st, 0, 0)
	v := eventstore.NewChainVerifier()
	for i := range got {
		if err := v.Check(&got[i]); err != nil {
			t.Fatalf("chain after retried append: %v", err)
		}
	}
	// Expectations that cannot hold are refused without writing.
	before := len(f.appendCalls())
	for _, exp := range []eventstore.ExpectedRevision{eventstore.NoStream, eventstore.Exact(9)} {
		if _, err := s.Append(testCtx(t), st, exp, evd(9)); !errors.As(err, &ce) || ce.Actual != 3 || !ce.Exists {
			t.Errorf("append with %s on a stream at 3: %v, want a conflict naming revision 3", exp, err)
		}
	}
	if _, err := s.Append(testCtx(t), tenant.MustStream(acme, "session", "none"), eventstore.StreamExists, evd(0)); !errors.As(err, &ce) || ce.Exists {
		t.Errorf("StreamExists on a new stream: %v, want a conflict saying no stream", err)
	}
	if n := len(f.appendCalls()); n != before {
		t.Errorf("refused appends reached the server %d times", n-before)
	}
}

func TestContractAppendMapsStreamDeleted(t *testing.T) {
	t.Parallel()
	f, url := startFake(t)
	s := openFake(t, url, Config{})
	st := tenant.MustStream(acme, "session", "gone")
	mustAppend(t, s, st, eventstore.NoStream, evd(0))

	// Deleted between the head read and the write: the append RPC answers stream-deleted.
	f.set(func(f *fakeServer) {
		f.beforeAppend = func(name string) { f.set(func(f *fakeServer) { f.deleted[name] = true }) }
	})
	_, err := s.Append(testCtx(t), st, eventstore.Any, evd(1))
	if !errors.Is(err, eventstore.ErrStreamDeleted) {
		t.Fatalf("append to a deleted stream: %v, want ErrStreamDeleted", err)
	}
	if errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("stream deleted reported as a conflict: %v", err)
	}
	// Reads of a deleted stream say so too.
	if _, err := s.ReadStream(testCtx(t), st, 0, 0); !errors.Is(err, eventstore.ErrStreamDeleted) {
		t.Fatalf("read of a deleted stream: %v, want ErrStreamDeleted", err)
	}
	if _, err := s.Append(testCtx(t), st, eventstore.Any, evd(2)); !errors.Is(err, eventstore.ErrStreamDeleted) {
		t.Fatalf("append whose head read finds the stream deleted: %v, want ErrStreamDeleted", err)
	}
}

func TestContractAppendContinuesAfterHiddenEvents(t *testing.T) {
	t.Parallel()
	f, url := startFake(t)
	s := openFake(t, url, Config{})
	st := tenant.MustStream(acme, "session", "old")
	for i := 0; i < 8; i++ {
		mustAppend(t, s, st, eventstore.Any, evd(i))
	}
	// $maxAge (or $tb) now hides every event: reads find nothing, but the server knows revision 7.
	f.set(func(f *fakeServer) { f.hidden[st.String()] = true })
	r, err := s.Append(testCtx(t), st, eventstore.Any, evd(8))
	if err != nil {
		t.Fatalf("append after every event expired: %v", err)
	}
	if r.NextExpected != 8 || r.Events[0].Revision != 8 || r.Events[0].Prev != "" {
		t.Fatalf("append result = rev %d, event %+v; want revision 8 with the chain restarted", r.NextExpected, r.Events[0])
	}
	calls := f.appendCalls()
	if a, b := calls[len(calls)-2].Expected, calls[len(calls)-1].Expected; a != "no_stream" || b != "7" {
		t.Errorf("sent expectations %q then %q, want no_stream then the server's revision 7", a, b)
	}
	if err := eventstore.NewChainVerifier().Check(&r.Events[0]); err != nil {
		t.Errorf("event after hidden ones does not verify on its own: %v", err)
	}
}

func TestContractReadTenantFiltersOnTheServerByTenantPrefix(t *testing.T) {
	t.Parallel()
	f, url := startFake(t)
	s := openFake(t, url, Config{})
	f.addRaw("$stats-127.0.0.1:2113", "$statsCollected", nil, []byte(`{}`))
	mustAppend(t, s, tenant.MustStream(acme, "session", "x"), eventstore.Any, evd(1))
	mustAppend(t, s, tenant.MustStream(other, "session", "x"), eventstore.Any, evd(100))
	mustAppend(t, s, tenant.MustStream(acme, "tenant", ""), eventstore.Any, evd(2))
	mustAppend(t, s, tenant.MustStream(other, "session", "x"), eventstore.Any, evd(101))
	mustAppend(t, s, tenant.MustStream(acme, "session", "x"), eventstore.Any, evd(3))
	f.addRaw("$stats-127.0.0.1:2113", "$statsCollected", nil, []byte(`{}`)) // $all ends on a system event

	got, err := s.ReadTenant(testCtx(t), acme, eventstore.Start, 0)
	if err != nil {
		t.Fatal(err)
	}
	assertData(t, got, `{"n":1}`, `{"n":2}`, `{"n":3}`)
	subs := f.subscriptions()
	if len(subs) != 1 {
		t.Fatalf("ReadTenant made %d subscriptions, want 1", len(subs))
	}
	o := subs[0]
	if p := o.GetFilter().GetStreamIdentifier().GetPrefix(); strings.Join(p, ",") != "t-acme.,$$t-acme." {
		t.Errorf("filter prefixes = %v, want the tenant's streams and their metadata: [t-acme. $$t-acme.]", p)
	}
	if o.GetAll().GetStart() == nil {
		t.Errorf("ReadTenant from Start subscribed from %v, want the start of $all", o.GetAll())
	}
	// Tenant B reads nothing of A's, nor does a tenant whose id is a prefix of A's.
	others, _ := s.ReadTenant(testCtx(t), other, eventstore.Start, 0)
	assertData(t, others, `{"n":100}`, `{"n":101}`)
	if evs, err := s.ReadTenant(testCtx(t), tenant.MustParse("ac"), eventstore.Start, 0); err != nil || len(evs) != 0 {
		t.Fatalf("tenant ac read %d events (%v)", len(evs), err)
	}
	if p := f.subscriptions()[2].GetFilter().GetStreamIdentifier().GetPrefix(); p[0] != "t-ac." {
		t.Errorf("tenant ac filtered on %v, want t-ac.", p)
	}
	// Paging: a position + 1 resumes strictly after that event, without a lookup.
	page, err := s.ReadTenant(testCtx(t), acme, got[0].Position+1, 1)
	if err != nil {
		t.Fatal(err)
	}
	assertData(t, page, `{"n":2}`)
	last := f.subscriptions()[3]
	if p := last.GetAll().GetPosition(); p == nil || encodePos(p.GetCommitPosition()) != got[0].Position {
		t.Errorf("resume after an event subscribed from %v, want that event's $all position", last.GetAll())
	}
	// An event's own position includes it: the store starts after the event before it.
	incl, err := s.ReadTenant(testCtx(t), acme, got[1].Position, 0)
	if err != nil {
		t.Fatal(err)
	}
	assertData(t, incl, `{"n":2}`, `{"n":3}`)
	if p := f.subscriptions()[4].GetAll().GetPosition(); p == nil || encodePos(p.GetCommitPosition()) >= got[1].Position {
		t.Errorf("read from an event's position subscribed from %v, want the position before it", p)
	}
}

func TestContractReadTenantEndsOnCheckpointWithoutCaughtUp(t *testing.T) {
	t.Parallel()
	f, url := startFake(t)
	s := openFake(t, url, Config{})
	f.set(func(f *fakeServer) { f.noCaughtUp = true })
	mustAppend(t, s, tenant.MustStream(acme, "session", "x"), eventstore.Any, evd(1))
	mustAppend(t, s, tenant.MustStream(other, "session", "x"), eventstore.Any, evd(2)) // last in $all, filtered out
	got, err := s.ReadTenant(testCtx(t), acme, eventstore.Start, 0)
	if err != nil {
		t.Fatal(err)
	}
	assertData(t, got, `{"n":1}`)
}

func TestContractReadTenantSkipsAnotherTenantsEventsTheServerLeaks(t *testing.T) {
	t.Parallel()
	f, url := startFake(t)
	s := openFake(t, url, Config{})
	f.set(func(f *fakeServer) { f.ignoreFilter = true })
	mustAppend(t, s, tenant.MustStream(acme, "session", "x"), eventstore.Any, evd(1))
	mustAppend(t, s, tenant.MustStream(other, "session", "x"), eventstore.Any, evd(2))
	got, err := s.ReadTenant(testCtx(t), other, eventstore.Start, 0)
	if err != nil {
		t.Fatal(err)
	}
	assertData(t, got, `{"n":2}`)
}

func TestContractMetadataMapsToMaxAgeAndTruncateBeforeAndHidesEventsInAll(t *testing.T) {
	t.Parallel()
	f, url := startFake(t)
	s := openFake(t, url, Config{})
	st := tenant.MustStream(acme, "session", "del")
	mustAppend(t, s, st, eventstore.Any, evd(0), evd(1), evd(2))
	md, err := s.StreamMetadata(testCtx(t), st)
	if err != nil || md.TruncateBefore != nil || md.MaxAge != 0 {
		t.Fatalf("metadata before any was set = %+v, %v; want zero", md, err)
	}
	cut := uint64(2)
	if err := s.SetStreamMetadata(testCtx(t), st, eventstore.StreamMetadata{TruncateBefore: &cut, MaxAge: 1500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	calls := f.appendCalls()
	call := calls[len(calls)-1]
	if call.Stream != "$$t-acme.session-del" || len(call.Messages) != 1 || call.Messages[0].Metadata["type"] != "$metadata" ||
		call.Messages[0].Metadata["content-type"] != "application/json" {
		t.Fatalf("metadata append = %+v, want one $metadata JSON event on $$t-acme.session-del", call)
	}
	var props map[string]any
	if err := json.Unmarshal(call.Messages[0].Data, &props); err != nil {
		t.Fatal(err)
	}
	if props["$tb"] != float64(2) || props["$maxAge"] != float64(2) || len(props) != 2 {
		t.Errorf("metadata = %s, want {$tb: 2, $maxAge: 2} (seconds, rounded up)", call.Messages[0].Data)
	}
	md, err = s.StreamMetadata(testCtx(t), st)
	if err != nil || md.TruncateBefore == nil || *md.TruncateBefore != 2 || md.MaxAge != 2*time.Second {
		t.Fatalf("metadata read back = %+v, %v", md, err)
	}
	// $all ignores $tb on the server; the store hides the truncated events itself.
	got, err := s.ReadTenant(testCtx(t), acme, eventstore.Start, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Revision != 2 {
		t.Fatalf("tenant read after truncate = %v, want only revision 2", got)
	}
}

func TestContractSubscribeCatchUpThenLiveOnTheTenantPrefix(t *testing.T) {
	t.Parallel()
	f, url := startFake(t)
	s := openFake(t, url, Config{})
	st := tenant.MustStream(acme, "session", "sub")
	mustAppend(t, s, st, eventstore.Any, evd(0), evd(1))
	mustAppend(t, s, tenant.MustStream(other, "session", "sub"), eventstore.Any, evd(50))

	c, cancel := context.WithCancel(testCtx(t))
	got := make(chan eventstore.Event, 10)
	done := make(chan error, 1)
	go func() {
		done <- s.Subscribe(c, eventstore.SubscribeOptions{Tenant: acme}, func(_ context.Context, e eventstore.Event) error {
			got <- e
			return nil
		})
	}()
	expect(t, got, `{"n":0}`)
	expect(t, got, `{"n":1}`)
	mustAppend(t, s, tenant.MustStream(other, "session", "sub"), eventstore.Any, evd(51))
	mustAppend(t, s, st, eventstore.Any, evd(2))
	expect(t, got, `{"n":2}`)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("subscribe returned %v after cancel, want nil", err)
	}
	sub := f.subscriptions()[0]
	if p := sub.GetFilter().GetStreamIdentifier().GetPrefix(); strings.Join(p, ",") != "t-acme.,$$t-acme." {
		t.Errorf("subscription filter = %v", p)
	}
	// The all-tenant subscription filters on t- so the server's own streams stay out.
	f.addRaw("$stats-node", "$statsCollected", nil, []byte(`{}`))
	c2, cancel2 := context.WithCancel(testCtx(t))
	defer cancel2()
	all := make(chan eventstore.Event, 10)
	go s.Subscribe(c2, eventstore.SubscribeOptions{}, func(_ context.Context, e eventstore.Event) error { //nolint:errcheck // ends with cancel
		all <- e
		return nil
	})
	for _, want := range []string{`{"n":0}`, `{"n":1}`, `{"n":50}`, `{"n":51}`, `{"n":2}`} {
		expect(t, all, want)
	}
	if p := f.subscriptions()[1].GetFilter().GetStreamIdentifier().GetPrefix(); strings.Join(p, ",") != "t-,$$t-" {
		t.Errorf("all-tenant filter = %v, want [t- $$t-]", p)
	}
	// A handler error ends the subscription with it.
	boom := errors.New("boom")
	if err := s.Subscribe(testCtx(t), eventstore.SubscribeOptions{Tenant: acme}, func(context.Context, eventstore.Event) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("subscribe with a failing handler returned %v", err)
	}
}

func TestContractSubscribeResubscribesAfterTheLastDeliveredEvent(t *testing.T) {
	t.Parallel()
	f, url := startFake(t)
	s := openFake(t, url, Config{})
	st := tenant.MustStream(acme, "session", "drop")
	r := mustAppend(t, s, st, eventstore.Any, evd(0))
	f.set(func(f *fakeServer) { f.dropAfter = 1 })
	c, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	got := make(chan eventstore.Event, 10)
	go s.Subscribe(c, eventstore.SubscribeOptions{Tenant: acme}, func(_ context.Context, e eventstore.Event) error { //nolint:errcheck // ends with cancel
		got <- e
		return nil
	})
	expect(t, got, `{"n":0}`)
	mustAppend(t, s, st, eventstore.Any, evd(1))
	expect(t, got, `{"n":1}`)
	subs := f.subscriptions()
	if len(subs) < 2 {
		t.Fatalf("saw %d subscriptions, want a second one after the drop", len(subs))
	}
	if p := subs[1].GetAll().GetPosition(); p == nil || encodePos(p.GetCommitPosition()) != r.Position {
		t.Errorf("re-subscribed from %v, want after the last delivered event (%d)", subs[1].GetAll(), r.Position)
	}
	select {
	case e := <-got:
		t.Fatalf("event %s delivered twice or out of order", e.Data)
	default:
	}
}

func TestContractStoreReconnectsAfterTheClientGaveUp(t *testing.T) {
	t.Parallel()
	_, addr, srv := serveFake(t, "127.0.0.1:0")
	s := openFake(t, fmt.Sprintf("esdb://%s?tls=false&maxDiscoverAttempts=1&discoveryInterval=10", addr), Config{})
	st := tenant.MustStream(acme, "session", "r")
	mustAppend(t, s, st, eventstore.Any, evd(0))
	gaveUp := s.conn()
	srv.Stop()
	// A subscription keeps re-subscribing while the node is gone; the client's rediscovery fails and
	// the v4 client closes itself for good. The store must notice and start a new client.
	c, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() {
		done <- s.Subscribe(c, eventstore.SubscribeOptions{Tenant: acme}, func(context.Context, eventstore.Event) error { return nil })
	}()
	for s.conn() == gaveUp {
		select {
		case <-testCtx(t).Done():
			t.Fatal("the store kept the client that gave up")
		case err := <-done:
			t.Fatalf("subscribe ended while the server was away: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("subscribe after cancel: %v", err)
	}
	// The node is back (empty: a new fake on the same address) and the store works again.
	serveFake(t, addr)
	if _, err := s.Append(testCtx(t), st, eventstore.Any, evd(1)); err != nil {
		t.Fatalf("append after the server came back: %v", err)
	}
}

func TestContractLastPositionAndClose(t *testing.T) {
	t.Parallel()
	f, url := startFake(t)
	s := openFake(t, url, Config{})
	if p, err := s.LastPosition(testCtx(t)); err != nil || p != 0 {
		t.Fatalf("empty store last position = %d, %v", p, err)
	}
	r := mustAppend(t, s, tenant.MustStream(acme, "session", "p"), eventstore.Any, evd(0))
	p, err := s.LastPosition(testCtx(t))
	if err != nil || p != encodePos(f.lastPos()) || p != r.Position || p < 1 {
		t.Fatalf("last position = %d (%v), want the append's %d", p, err, r.Position)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(testCtx(t), tenant.MustStream(acme, "session", "p"), eventstore.Any, evd(1)); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if _, err := s.ReadTenant(testCtx(t), acme, 0, 0); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

func TestContractInvalidAppendsNeverReachTheServer(t *testing.T) {
	t.Parallel()
	f, url := startFake(t)
	s := openFake(t, url, Config{})
	st := tenant.MustStream(acme, "session", "bad")
	for name, evs := range map[string][]eventstore.EventData{
		"no events":    nil,
		"no type":      {{Data: []byte(`{}`)}},
		"invalid JSON": {{Type: "t.E", Data: []byte(`{not json`)}},
	} {
		if _, err := s.Append(testCtx(t), st, eventstore.Any, evs...); !errors.Is(err, eventstore.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if n := len(f.appendCalls()); n != 0 {
		t.Errorf("invalid appends reached the server %d times", n)
	}
}

func TestContractNamespacePrefixesEveryServerStream(t *testing.T) {
	t.Parallel()
	f, url := startFake(t)
	s := openFake(t, url, Config{Namespace: "run-7"})
	plain := openFake(t, url, Config{})
	st := tenant.MustStream(acme, "session", "n")
	mustAppend(t, s, st, eventstore.Any, evd(0))
	mustAppend(t, plain, st, eventstore.Any, evd(1))
	if calls := f.appendCalls(); calls[0].Stream != "run-7:t-acme.session-n" {
		t.Fatalf("namespaced append went to %q", calls[0].Stream)
	}
	got, err := s.ReadTenant(testCtx(t), acme, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	assertData(t, got, `{"n":0}`)
	if got[0].Stream != st.String() {
		t.Errorf("namespaced event reads back as stream %q, want %q", got[0].Stream, st)
	}
	if p := f.subscriptions()[0].GetFilter().GetStreamIdentifier().GetPrefix(); p[0] != "run-7:t-acme." {
		t.Errorf("namespaced filter = %v", p)
	}
}

func assertData(t *testing.T, evs []eventstore.Event, want ...string) {
	t.Helper()
	if len(evs) != len(want) {
		var got []string
		for _, e := range evs {
			got = append(got, string(e.Data))
		}
		t.Fatalf("got %d events %v, want %v", len(evs), got, want)
	}
	for i, e := range evs {
		if string(e.Data) != want[i] {
			t.Errorf("event %d = %s, want %s", i, e.Data, want[i])
		}
	}
}

func expect(t *testing.T, ch <-chan eventstore.Event, data string) {
	t.Helper()
	select {
	case e := <-ch:
		if string(e.Data) != data {
			t.Fatalf("got %s, want %s", e.Data, data)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no event %s delivered", data)
	}
}
