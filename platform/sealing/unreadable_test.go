package sealing_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// alterCiphertext flips one bit of a stored envelope's ciphertext (what a damaged disk or an
// editor of the data folder leaves).
func alterCiphertext(t *testing.T, data []byte) []byte {
	t.Helper()
	var env map[string]map[string]string
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	c, err := base64.StdEncoding.DecodeString(env["sealed"]["c"])
	if err != nil {
		t.Fatal(err)
	}
	c[0] ^= 1
	return bytes.Replace(data, []byte(env["sealed"]["c"]), []byte(base64.StdEncoding.EncodeToString(c)), 1)
}

// F7: a sealed event that does not open with its live key reads like an erased one, flagged
// Unreadable (not an erasure), logged once at ERROR with where it is, and counted; the read does
// not fail, so other events (and other tenants) are read on. Before: every read failed with
// eventstore.ErrCorrupt, which stopped the bus for every tenant.
func TestUnopenableSealedEventReadsAsUnreadableAndIsReportedOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var logs bytes.Buffer
	set := metrics.NewSet()
	sl := sealing.New(f.keys).Report(slog.New(slog.NewTextHandler(&logs, nil)), set)
	sealed := sealing.NewStore(f.inner, sl, sessions)
	st := tenant.MustStream(acme, "session", "s1")
	if _, err := sealed.Append(ctx, st, eventstore.NoStream, msg("first secret")); err != nil {
		t.Fatal(err)
	}
	raw, err := f.inner.ReadStream(ctx, st, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The damaged copy, in its own stream, followed by an intact event of the same key.
	bad := tenant.MustStream(acme, "session", "s1x")
	if _, err := f.inner.Append(ctx, bad, eventstore.NoStream, eventstore.EventData{Type: "test.Said", Data: alterCiphertext(t, raw[0].Data)}); err != nil {
		t.Fatal(err)
	}
	if _, err := sealed.Append(ctx, st, eventstore.Any, msg("second secret")); err != nil {
		t.Fatal(err)
	}
	if _, err := sealed.Append(ctx, tenant.MustStream(bravo, "session", "b1"), eventstore.NoStream, msg("bravo's")); err != nil {
		t.Fatal(err)
	}
	for range 2 { // read twice: reported once
		evs, err := sealed.ReadTenant(ctx, acme, eventstore.Start, 0)
		if err != nil {
			t.Fatalf("reading a tenant with one damaged event: %v", err)
		}
		if len(evs) != 3 {
			t.Fatalf("%d events, want 3", len(evs))
		}
		if e := evs[1]; !e.Unreadable || !e.Erased || string(e.Data) != "{}" || e.Stream != bad.String() {
			t.Fatalf("damaged event read as %+v", e)
		}
		if e := evs[2]; e.Unreadable || e.Erased || !strings.Contains(string(e.Data), "second secret") {
			t.Fatalf("the intact event after it: %+v", e)
		}
	}
	var got []eventstore.Event
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	caughtUp := false
	err = sealed.Subscribe(sctx, eventstore.SubscribeOptions{CaughtUp: func(context.Context, eventstore.Position) error {
		caughtUp = true
		cancel()
		return nil
	}}, func(_ context.Context, e eventstore.Event) error {
		got = append(got, e)
		return nil
	})
	if !caughtUp {
		t.Fatalf("subscription over a damaged event ended before catching up: %v", err)
	}
	if len(got) != 4 || !got[1].Unreadable || got[3].Tenant != bravo || !strings.Contains(string(got[3].Data), "bravo's") {
		t.Fatalf("subscription: %+v", got)
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Fatalf("%d ERROR lines, want 1:\n%s", n, logs.String())
	}
	for _, want := range []string{"tenant=acme", "stream=" + bad.String(), "revision=0", "position="} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("the log line does not name %q:\n%s", want, logs.String())
		}
	}
	var m bytes.Buffer
	set.WritePrometheus(&m)
	if !strings.Contains(m.String(), "crispy_sealing_unreadable_events_total 1\n") {
		t.Fatalf("metric:\n%s", m.String())
	}
}

// F3: the keys of a tenant destroyed as a whole keep no trace of their ids, so sealing under an
// old id again makes a fresh key. The content sealed under the destroyed key must read as erased
// (it is), not as damage, and the new content under the new key opens. Before: every read of the
// stream failed with ErrCorrupt ("does not open with its key").
func TestKeyIDReusedAfterDestroyTenantReadsOldContentAsErased(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	st := tenant.MustStream(acme, "session", "x")
	if _, err := f.sealed.Append(ctx, st, eventstore.NoStream, msg("before the tenant's erasure")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.sealed.Append(ctx, tenant.MustStream(bravo, "session", "x"), eventstore.NoStream, msg("bravo keeps this")); err != nil {
		t.Fatal(err)
	}
	if err := f.keys.DestroyTenant(ctx, acme); err != nil {
		t.Fatal(err)
	}
	if _, err := f.sealed.Append(ctx, st, eventstore.Any, msg("after, under a fresh key")); err != nil {
		t.Fatal(err)
	}
	evs, err := f.sealed.ReadStream(ctx, st, 0, 0)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if len(evs) != 2 || !evs[0].Erased || evs[0].Unreadable || strings.Contains(string(evs[0].Data), "before") {
		t.Fatalf("content sealed under the destroyed key: %+v", evs)
	}
	if evs[1].Erased || !strings.Contains(string(evs[1].Data), "under a fresh key") {
		t.Fatalf("content sealed under the new key: %+v", evs[1])
	}
	b, err := f.sealed.ReadStream(ctx, tenant.MustStream(bravo, "session", "x"), 0, 0)
	if err != nil || len(b) != 1 || b[0].Erased || !strings.Contains(string(b[0].Data), "bravo keeps this") {
		t.Fatalf("bravo's session under the same id: %+v, %v", b, err)
	}
	// The same for values sealed with Seal (read models, indexes).
	sl := f.sealed.Sealer()
	if err := f.keys.DestroyTenant(ctx, bravo); err != nil {
		t.Fatal(err)
	}
	old, err := sl.Seal(ctx, bravo, "document/d", []byte("old title"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.keys.DestroyTenant(ctx, bravo); err != nil {
		t.Fatal(err)
	}
	if _, err := sl.Seal(ctx, bravo, "document/d", []byte("new title")); err != nil {
		t.Fatal(err)
	}
	if p, err := sl.Open(ctx, bravo, "document/d", old); p != nil || !errors.Is(err, sealing.ErrErased) {
		t.Fatalf("a value sealed under the destroyed key: %q, %v; want ErrErased", p, err)
	}
}
