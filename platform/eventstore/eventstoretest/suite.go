package eventstoretest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// NewStore opens a fresh, empty store for one subtest. The suite closes it.
type NewStore func(t *testing.T) eventstore.Store

// Run is the acceptance suite of the eventstore port. Every implementation calls it:
//
//	func TestStore(t *testing.T) { eventstoretest.Run(t, func(t *testing.T) eventstore.Store { … }) }
func Run(t *testing.T, newStore NewStore) {
	t.Helper()
	cases := []struct {
		name string
		fn   func(t *testing.T, s eventstore.Store)
	}{
		{"AppendAndReadStream", testAppendAndRead},
		{"EnvelopeFromContext", testEnvelope},
		{"ExpectedRevision", testExpectedRevision},
		{"ConcurrentAppendsOneStreamOneWins", testConcurrentOneStream},
		{"ConcurrentAppendsManyStreams", testConcurrentManyStreams},
		{"ReadStreamFromAndMax", testReadFromMax},
		{"ReadTenantGlobalOrderAndIsolation", testReadTenant},
		{"HashChainVerifies", testHashChain},
		{"SubscribeCatchUpThenLive", testSubscribe},
		{"SubscribeTenantIsolation", testSubscribeTenant},
		{"SubscribeReportsCaughtUp", testSubscribeCaughtUp},
		{"TruncateBeforeHidesEarlierEvents", testTruncate},
		{"AppendAfterCloseFails", testClosed},
		{"InvalidAppendsRejected", testInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			defer s.Close()
			c.fn(t, s)
		})
	}
}

var (
	acme  = tenant.MustParse("acme")
	other = tenant.MustParse("other")
)

func ev(typ string, i int) eventstore.EventData {
	return eventstore.EventData{Type: typ, Data: []byte(fmt.Sprintf(`{"n":%d}`, i))}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustAppend(t *testing.T, s eventstore.Store, st tenant.Stream, exp eventstore.ExpectedRevision, evs ...eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	r, err := s.Append(ctx(t), st, exp, evs...)
	if err != nil {
		t.Fatalf("append to %s: %v", st, err)
	}
	return r
}

func testAppendAndRead(t *testing.T, s eventstore.Store) {
	st := tenant.MustStream(acme, "session", "a1")
	r := mustAppend(t, s, st, eventstore.NoStream, ev("test.Happened", 0), ev("test.Happened", 1))
	if r.NextExpected != 1 || len(r.Events) != 2 {
		t.Fatalf("append result = %+v, want next expected 1 and 2 events", r)
	}
	mustAppend(t, s, st, eventstore.Exact(1), ev("test.Happened", 2))
	got, err := s.ReadStream(ctx(t), st, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("read %d events, want 3", len(got))
	}
	for i, e := range got {
		if e.Revision != uint64(i) || string(e.Data) != fmt.Sprintf(`{"n":%d}`, i) || e.Stream != st.String() || e.Tenant != acme {
			t.Errorf("event %d = %+v", i, e)
		}
		if i > 0 && e.Position <= got[i-1].Position {
			t.Errorf("positions not increasing: %d then %d", got[i-1].Position, e.Position)
		}
		if e.ID == "" || e.Time.IsZero() || e.Hash == "" {
			t.Errorf("event %d lacks id/time/hash: %+v", i, e)
		}
	}
	empty, err := s.ReadStream(ctx(t), tenant.MustStream(acme, "session", "none"), 0, 0)
	if err != nil || len(empty) != 0 {
		t.Fatalf("missing stream: %v events, err %v; want none and no error", len(empty), err)
	}
}

func testEnvelope(t *testing.T, s eventstore.Store) {
	st := tenant.MustStream(acme, "session", "env")
	c := request.With(ctx(t), request.Info{ID: "req-1", Actor: "key:0123456789ab", User: "ann ü"})
	if _, err := s.Append(c, st, eventstore.Any,
		eventstore.EventData{Type: "test.Happened", Data: []byte(`{ "a" : 1 }`), CausationID: "cause-1"},
		eventstore.EventData{Type: "test.Happened", Data: []byte(`{}`), Actor: "system:x", User: "bob"}); err != nil {
		t.Fatal(err)
	}
	// Without an asserted user the field stays empty (and, per CanonicalBytes, unhashed).
	c = request.With(ctx(t), request.Info{ID: "req-2", Actor: "anonymous:acme"})
	if _, err := s.Append(c, st, eventstore.Any, eventstore.EventData{Type: "test.Happened", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	want := []struct{ req, actor, user string }{{"req-1", "key:0123456789ab", "ann ü"}, {"req-1", "system:x", "bob"}, {"req-2", "anonymous:acme", ""}}
	check := func(how string, got []eventstore.Event) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: got %d events, want %d", how, len(got), len(want))
		}
		v := eventstore.NewChainVerifier()
		for i, w := range want {
			e := got[i]
			if e.RequestID != w.req || e.Actor != w.actor || e.User != w.user {
				t.Errorf("%s: event %d has request id %q, actor %q, user %q; want %q, %q, %q", how, i, e.RequestID, e.Actor, e.User, w.req, w.actor, w.user)
			}
			// The user is covered by the hash: the event as read verifies, and does not with
			// another user.
			if err := v.Check(&e); err != nil {
				t.Errorf("%s: event %d: %v", how, i, err)
			}
			forged := e
			forged.User = "mallory"
			if eventstore.NewChainVerifier().Check(&forged) == nil {
				t.Errorf("%s: event %d verifies with its user changed", how, i)
			}
		}
	}
	got, err := s.ReadStream(ctx(t), st, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	check("ReadStream", got)
	e := got[0]
	if e.CausationID != "cause-1" || e.CorrelationID != "req-1" {
		t.Errorf("envelope = %+v, want causation and correlation from the context", e)
	}
	if len(e.ID) != 36 || e.ID[14] != '7' {
		t.Errorf("id %q is not a UUIDv7", e.ID)
	}
	if got, err = s.ReadTenant(ctx(t), acme, eventstore.Start, 0); err != nil {
		t.Fatal(err)
	}
	check("ReadTenant", got)
	sub := make(chan eventstore.Event, len(want))
	sc, cancel := context.WithCancel(ctx(t))
	defer cancel()
	go s.Subscribe(sc, eventstore.SubscribeOptions{Tenant: acme}, func(_ context.Context, e eventstore.Event) error {
		sub <- e
		return nil
	})
	got = got[:0]
	for range want {
		select {
		case e := <-sub:
			got = append(got, e)
		case <-time.After(60 * time.Second): // a hang bound, not a timing assertion
			t.Fatal("Subscribe did not deliver the events")
		}
	}
	check("Subscribe", got)
}

func testExpectedRevision(t *testing.T, s eventstore.Store) {
	st := tenant.MustStream(acme, "session", "exp")
	_, err := s.Append(ctx(t), st, eventstore.StreamExists, ev("t.E", 0))
	assertConflict(t, err, "StreamExists on a new stream")
	_, err = s.Append(ctx(t), st, eventstore.Exact(0), ev("t.E", 0))
	assertConflict(t, err, "Exact(0) on a new stream")
	mustAppend(t, s, st, eventstore.NoStream, ev("t.E", 0))
	_, err = s.Append(ctx(t), st, eventstore.NoStream, ev("t.E", 1))
	assertConflict(t, err, "NoStream on an existing stream")
	_, err = s.Append(ctx(t), st, eventstore.Exact(5), ev("t.E", 1))
	assertConflict(t, err, "Exact(5) when last is 0")
	var ce *eventstore.ConflictError
	if !errors.As(err, &ce) || ce.Actual != 0 || !ce.Exists {
		t.Errorf("conflict details = %+v, want actual 0", ce)
	}
	mustAppend(t, s, st, eventstore.StreamExists, ev("t.E", 1))
	mustAppend(t, s, st, eventstore.Any, ev("t.E", 2))
	got, _ := s.ReadStream(ctx(t), st, 0, 0)
	if len(got) != 3 {
		t.Fatalf("after conflicts the stream has %d events, want 3 (a conflict must write nothing)", len(got))
	}
}

func assertConflict(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Errorf("%s: err = %v, want ErrConflict", what, err)
	}
}

func testConcurrentOneStream(t *testing.T, s eventstore.Store) {
	st := tenant.MustStream(acme, "session", "race")
	mustAppend(t, s, st, eventstore.NoStream, ev("t.E", 0))
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := s.Append(context.Background(), st, eventstore.Exact(0), ev("t.E", i))
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
		}(i)
	}
	wg.Wait()
	if wins != 1 || conflicts != n-1 {
		t.Fatalf("wins=%d conflicts=%d, want exactly one winner", wins, conflicts)
	}
}

func testConcurrentManyStreams(t *testing.T, s eventstore.Store) {
	const writers, per = 16, 20
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			st := tenant.MustStream(acme, "session", fmt.Sprintf("w%d", w))
			for i := 0; i < per; i++ {
				if _, err := s.Append(context.Background(), st, eventstore.After(uint64(i-1), i > 0), ev("t.E", i)); err != nil {
					t.Errorf("writer %d append %d: %v", w, i, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	all, err := s.ReadTenant(ctx(t), acme, eventstore.Start, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != writers*per {
		t.Fatalf("tenant has %d events, want %d", len(all), writers*per)
	}
	seen := map[string]bool{}
	for i, e := range all {
		if seen[e.ID] {
			t.Fatalf("duplicate event id %s", e.ID)
		}
		seen[e.ID] = true
		if i > 0 && e.Position <= all[i-1].Position {
			t.Fatalf("global order broken at %d", i)
		}
	}
}

func testReadFromMax(t *testing.T, s eventstore.Store) {
	st := tenant.MustStream(acme, "session", "page")
	var evs []eventstore.EventData
	for i := 0; i < 10; i++ {
		evs = append(evs, ev("t.E", i))
	}
	mustAppend(t, s, st, eventstore.NoStream, evs...)
	got, err := s.ReadStream(ctx(t), st, 4, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Revision != 4 || got[2].Revision != 6 {
		t.Fatalf("ReadStream(from 4, max 3) = %d events starting at %v", len(got), got)
	}
	got, _ = s.ReadStream(ctx(t), st, 10, 0)
	if len(got) != 0 {
		t.Fatalf("reading past the end gave %d events", len(got))
	}
}

func testReadTenant(t *testing.T, s eventstore.Store) {
	a1 := tenant.MustStream(acme, "session", "x")
	a2 := tenant.MustStream(acme, "tenant", "")
	o1 := tenant.MustStream(other, "session", "x") // same entity id, other tenant
	mustAppend(t, s, a1, eventstore.Any, ev("t.E", 1))
	mustAppend(t, s, o1, eventstore.Any, ev("t.E", 100))
	mustAppend(t, s, a2, eventstore.Any, ev("t.E", 2))
	mustAppend(t, s, o1, eventstore.Any, ev("t.E", 101))
	mustAppend(t, s, a1, eventstore.Any, ev("t.E", 3))
	got, err := s.ReadTenant(ctx(t), acme, eventstore.Start, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`{"n":1}`, `{"n":2}`, `{"n":3}`}
	if len(got) != len(want) {
		t.Fatalf("acme read %d events, want %d: %v", len(got), len(want), got)
	}
	for i, e := range got {
		if string(e.Data) != want[i] || e.Tenant != acme {
			t.Errorf("event %d = %s (tenant %s), want %s of acme", i, e.Data, e.Tenant, want[i])
		}
	}
	page, _ := s.ReadTenant(ctx(t), acme, got[0].Position+1, 1)
	if len(page) != 1 || string(page[0].Data) != `{"n":2}` {
		t.Fatalf("page after first = %v", page)
	}
	others, _ := s.ReadTenant(ctx(t), other, eventstore.Start, 0)
	if len(others) != 2 {
		t.Fatalf("other read %d events, want 2", len(others))
	}
	for _, e := range others {
		if e.Tenant != other {
			t.Fatalf("tenant other read an event of %s", e.Tenant)
		}
	}
	// A tenant whose id is a prefix of another's must not see the other's streams.
	ac := tenant.MustParse("ac")
	if evs, _ := s.ReadTenant(ctx(t), ac, eventstore.Start, 0); len(evs) != 0 {
		t.Fatalf("tenant ac read %d events of acme", len(evs))
	}
}

func testHashChain(t *testing.T, s eventstore.Store) {
	st := tenant.MustStream(acme, "session", "chain")
	mustAppend(t, s, st, eventstore.Any, ev("t.E", 0), ev("t.E", 1))
	mustAppend(t, s, st, eventstore.Any, ev("t.E", 2))
	mustAppend(t, s, tenant.MustStream(acme, "tenant", ""), eventstore.Any, ev("t.E", 9))
	all, _ := s.ReadTenant(ctx(t), acme, eventstore.Start, 0)
	v := eventstore.NewChainVerifier()
	for i := range all {
		if err := v.Check(&all[i]); err != nil {
			t.Fatalf("verify: %v", err)
		}
	}
	evs, _ := s.ReadStream(ctx(t), st, 0, 0)
	if evs[0].Prev != "" || evs[1].Prev != evs[0].Hash || evs[2].Prev != evs[1].Hash {
		t.Fatalf("prev links wrong: %+v", evs)
	}
	tampered := evs[1]
	tampered.Data = []byte(`{"n":42}`)
	if err := eventstore.NewChainVerifier().Check(&tampered); err == nil {
		t.Fatal("a tampered event verified")
	}
}

func testSubscribe(t *testing.T, s eventstore.Store) {
	st := tenant.MustStream(acme, "session", "sub")
	mustAppend(t, s, st, eventstore.Any, ev("t.E", 0), ev("t.E", 1))
	c, cancel := context.WithCancel(ctx(t))
	defer cancel()
	got := make(chan eventstore.Event, 10)
	done := make(chan error, 1)
	go func() {
		done <- s.Subscribe(c, eventstore.SubscribeOptions{Tenant: acme}, func(_ context.Context, e eventstore.Event) error {
			got <- e
			return nil
		})
	}()
	for i := 0; i < 2; i++ {
		expectEvent(t, got, i)
	}
	mustAppend(t, s, st, eventstore.Any, ev("t.E", 2))
	expectEvent(t, got, 2)
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("subscribe returned %v after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscribe did not return after cancel")
	}
	// From a position: only later events.
	all, _ := s.ReadTenant(ctx(t), acme, eventstore.Start, 0)
	c2, cancel2 := context.WithCancel(ctx(t))
	defer cancel2()
	got2 := make(chan eventstore.Event, 10)
	go s.Subscribe(c2, eventstore.SubscribeOptions{Tenant: acme, From: all[1].Position}, func(_ context.Context, e eventstore.Event) error {
		got2 <- e
		return nil
	})
	expectEvent(t, got2, 1)
	expectEvent(t, got2, 2)
	// A handler error stops the subscription with it.
	boom := errors.New("boom")
	if err := s.Subscribe(ctx(t), eventstore.SubscribeOptions{Tenant: acme}, func(context.Context, eventstore.Event) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("subscribe with failing handler returned %v", err)
	}
}

func expectEvent(t *testing.T, ch <-chan eventstore.Event, n int) {
	ExpectEvent(t, ch, n, 10*time.Second)
}

// ExpectEvent fails t unless the next event on ch is the suite's event {"n":n}, arriving within
// the given wait (a bound on a hang, not a speed check).
func ExpectEvent(t *testing.T, ch <-chan eventstore.Event, n int, within time.Duration) {
	t.Helper()
	select {
	case e := <-ch:
		if string(e.Data) != fmt.Sprintf(`{"n":%d}`, n) {
			t.Fatalf("got %s, want n=%d", e.Data, n)
		}
	case <-time.After(within):
		t.Fatalf("timed out waiting for event n=%d", n)
	}
}

// testSubscribeCaughtUp: the live end is reported once, after every event that was there, with the
// store's last position (also when the last event belongs to another tenant), and live events follow.
func testSubscribeCaughtUp(t *testing.T, s eventstore.Store) {
	// An empty store is caught up at once.
	c0, cancel0 := context.WithCancel(ctx(t))
	defer cancel0()
	empty := make(chan eventstore.Position, 1)
	go s.Subscribe(c0, eventstore.SubscribeOptions{Tenant: acme, CaughtUp: func(_ context.Context, at eventstore.Position) error {
		empty <- at
		return nil
	}}, func(context.Context, eventstore.Event) error { return nil })
	select {
	case at := <-empty:
		if at != eventstore.Start {
			t.Fatalf("an empty store caught up at %d", at)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a subscription to an empty store never reported the live end")
	}
	cancel0()

	st := tenant.MustStream(acme, "session", "cu")
	mustAppend(t, s, st, eventstore.Any, ev("t.E", 0), ev("t.E", 1))
	last := mustAppend(t, s, tenant.MustStream(other, "session", "cu"), eventstore.Any, ev("t.E", 9))
	c, cancel := context.WithCancel(ctx(t))
	defer cancel()
	type item struct {
		e  *eventstore.Event
		at eventstore.Position
	}
	got := make(chan item, 10)
	calls := 0
	go s.Subscribe(c, eventstore.SubscribeOptions{Tenant: acme, CaughtUp: func(_ context.Context, at eventstore.Position) error {
		calls++
		got <- item{at: at}
		return nil
	}}, func(_ context.Context, e eventstore.Event) error {
		got <- item{e: &e}
		return nil
	})
	next := func() item {
		t.Helper()
		select {
		case it := <-got:
			return it
		case <-time.After(10 * time.Second):
			t.Fatal("timed out waiting for the subscription")
			return item{}
		}
	}
	for i := 0; i < 2; i++ {
		if it := next(); it.e == nil || string(it.e.Data) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("delivery %d: %+v, want event n=%d before the live end", i, it, i)
		}
	}
	if it := next(); it.e != nil || it.at < last.Position {
		t.Fatalf("after the catch-up: %+v, want the live end at %d or later", it, last.Position)
	}
	mustAppend(t, s, st, eventstore.Any, ev("t.E", 2))
	if it := next(); it.e == nil || string(it.e.Data) != `{"n":2}` {
		t.Fatalf("live delivery: %+v", it)
	}
	if calls != 1 {
		t.Fatalf("the live end was reported %d times", calls)
	}
	// An error from CaughtUp ends the subscription with it.
	boom := errors.New("boom")
	if err := s.Subscribe(ctx(t), eventstore.SubscribeOptions{Tenant: acme, CaughtUp: func(context.Context, eventstore.Position) error { return boom }},
		func(context.Context, eventstore.Event) error { return nil }); !errors.Is(err, boom) {
		t.Fatalf("subscribe with failing CaughtUp returned %v", err)
	}
}

func testSubscribeTenant(t *testing.T, s eventstore.Store) {
	c, cancel := context.WithCancel(ctx(t))
	defer cancel()
	got := make(chan eventstore.Event, 10)
	go s.Subscribe(c, eventstore.SubscribeOptions{Tenant: other}, func(_ context.Context, e eventstore.Event) error {
		got <- e
		return nil
	})
	mustAppend(t, s, tenant.MustStream(acme, "session", "s"), eventstore.Any, ev("t.E", 0))
	mustAppend(t, s, tenant.MustStream(other, "session", "s"), eventstore.Any, ev("t.E", 1))
	expectEvent(t, got, 1)
	// The all-tenant subscription sees both.
	all := make(chan eventstore.Event, 10)
	go s.Subscribe(c, eventstore.SubscribeOptions{}, func(_ context.Context, e eventstore.Event) error {
		all <- e
		return nil
	})
	expectEvent(t, all, 0)
	expectEvent(t, all, 1)
}

func testTruncate(t *testing.T, s eventstore.Store) {
	st := tenant.MustStream(acme, "session", "del")
	mustAppend(t, s, st, eventstore.Any, ev("t.E", 0), ev("t.E", 1), ev("t.E", 2))
	cut := uint64(2)
	if err := s.SetStreamMetadata(ctx(t), st, eventstore.StreamMetadata{TruncateBefore: &cut}); err != nil {
		t.Fatal(err)
	}
	md, err := s.StreamMetadata(ctx(t), st)
	if err != nil || md.TruncateBefore == nil || *md.TruncateBefore != 2 {
		t.Fatalf("metadata = %+v, %v", md, err)
	}
	got, _ := s.ReadStream(ctx(t), st, 0, 0)
	if len(got) != 1 || got[0].Revision != 2 {
		t.Fatalf("after truncate read %v, want only revision 2", got)
	}
	all, _ := s.ReadTenant(ctx(t), acme, eventstore.Start, 0)
	if len(all) != 1 {
		t.Fatalf("after truncate the tenant read shows %d events, want 1", len(all))
	}
	// Appends continue the stream's revisions.
	r := mustAppend(t, s, st, eventstore.Exact(2), ev("t.E", 3))
	if r.NextExpected != 3 {
		t.Fatalf("next expected after truncate = %d, want 3", r.NextExpected)
	}
}

func testClosed(t *testing.T, s eventstore.Store) {
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Append(ctx(t), tenant.MustStream(acme, "session", "c"), eventstore.Any, ev("t.E", 0))
	if !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("append after close: %v, want ErrClosed", err)
	}
}

func testInvalid(t *testing.T, s eventstore.Store) {
	st := tenant.MustStream(acme, "session", "bad")
	if _, err := s.Append(ctx(t), st, eventstore.Any); !errors.Is(err, eventstore.ErrInvalid) {
		t.Errorf("empty append: %v, want ErrInvalid", err)
	}
	if _, err := s.Append(ctx(t), st, eventstore.Any, eventstore.EventData{Data: []byte(`{}`)}); !errors.Is(err, eventstore.ErrInvalid) {
		t.Errorf("append without type: %v, want ErrInvalid", err)
	}
	if _, err := s.Append(ctx(t), st, eventstore.Any, eventstore.EventData{Type: "t.E", Data: []byte(`{not json`)}); !errors.Is(err, eventstore.ErrInvalid) {
		t.Errorf("append with invalid JSON: %v, want ErrInvalid", err)
	}
	if evs, _ := s.ReadStream(ctx(t), st, 0, 0); len(evs) != 0 {
		t.Errorf("invalid appends wrote %d events", len(evs))
	}
}
