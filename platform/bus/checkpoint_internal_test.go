package bus

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func TestForwarderCheckpointRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pos, err := readForwarderCheckpoint(dir)
	if err != nil || pos != eventstore.Start {
		t.Fatalf("missing checkpoint: got %d, %v; want Start, nil", pos, err)
	}
	for _, want := range []eventstore.Position{7, 1 << 40} {
		if err := writeForwarderCheckpoint(dir, want, time.Unix(0, 0)); err != nil {
			t.Fatal(err)
		}
		got, err := readForwarderCheckpoint(dir)
		if err != nil || got != want {
			t.Fatalf("got %d, %v; want %d", got, err, want)
		}
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 1 || ents[0].Name() != forwarderFile {
		t.Fatalf("the folder holds %v (%v), want only %s: a temporary file was left behind", ents, err, forwarderFile)
	}
	if err := os.WriteFile(filepath.Join(dir, forwarderFile), []byte("{garbage"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := readForwarderCheckpoint(dir); err == nil {
		t.Fatal("an unreadable checkpoint must be refused, not read as Start")
	}
}

func TestSlotFileSurvivesATornSlot(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "h.ckpt")
	s, pos, found, err := openSlotFile(path)
	if err != nil || found || pos != 0 {
		t.Fatalf("new file: %d %v %v", pos, found, err)
	}
	for _, p := range []uint64{3, 4, 9} {
		if err := s.set(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	s, pos, found, err = openSlotFile(path)
	if err != nil || !found || pos != 9 {
		t.Fatalf("reopen: got %d %v %v; want 9", pos, found, err)
	}
	// The next write goes to the older slot; tear it and the newer one must still be read.
	if err := s.set(12); err != nil {
		t.Fatal(err)
	}
	s.close()
	b, _ := os.ReadFile(path)
	newest := -1
	for i := 0; i < 2; i++ {
		if p, ok := decodeSlot(b[i*slotSize : (i+1)*slotSize]); ok && p == 12 {
			newest = i
		}
	}
	if newest < 0 {
		t.Fatalf("position 12 not in either slot: %x", b)
	}
	b[newest*slotSize+3] ^= 0xff // a torn write of the newest slot
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	s, pos, found, err = openSlotFile(path)
	if err != nil || !found || pos != 9 {
		t.Fatalf("after tearing the newest slot: got %d %v %v; want the previous position 9", pos, found, err)
	}
	// And the torn slot is the one overwritten next.
	if err := s.set(13); err != nil {
		t.Fatal(err)
	}
	s.close()
	if _, pos, _, _ = openSlotFile(path); pos != 13 {
		t.Fatalf("got %d, want 13", pos)
	}
}

func TestSafeNameKeepsNamesApart(t *testing.T) {
	t.Parallel()
	a, b := safeName("tooling.stats"), safeName("tooling_stats")
	if a == b {
		t.Fatalf("%q and %q collide", a, b)
	}
	if !prefixPattern.MatchString(a) {
		t.Fatalf("%q is not broker-safe", a)
	}
}

func TestRecentIDsForgetsTheOldest(t *testing.T) {
	t.Parallel()
	r := newRecentIDs(2)
	r.add("a")
	r.add("b")
	r.add("b")
	if !r.has("a") || !r.has("b") {
		t.Fatal("recent ids lost")
	}
	r.add("c")
	if r.has("a") || !r.has("b") || !r.has("c") {
		t.Fatal("the oldest id must be the one forgotten")
	}
}

// rawHappened is the data of the internal tests' test.Happened events.
type rawHappened struct{}

// testDurable is a processor's durable consumer for test.Happened events that calls h with each.
func testDurable(b *Bus, name string, h func(Envelope)) *durable {
	b.codec.Add("test.Happened", rawHappened{})
	typ := reflect.TypeFor[rawHappened]()
	return newDurable(name, map[string]procHandler{"test.Happened": {typ: typ, into: typ, call: func(_ context.Context, env Envelope, _ any) error {
		h(env)
		return nil
	}}}, b)
}

// A processor's durable consumer drops a redelivered event: by id in memory, and by its persisted position
// after a restart (ordered transport); by id alone on an unordered one.
func TestDurableDropsRedeliveries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := eventstoretest.NewMemory()
	acme := tenant.MustParse("acme")
	var evs []eventstore.Event
	for range 3 {
		res, err := store.Append(ctx, tenant.MustStream(acme, "thing", "1"), eventstore.Any, eventstore.EventData{Type: "test.Happened", Data: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, res.Events...)
	}
	for _, ordered := range []bool{true, false} {
		dir := t.TempDir()
		b, err := New(Config{CheckpointDir: dir}, Deps{Store: store})
		if err != nil {
			t.Fatal(err)
		}
		calls := map[string]int{}
		h := func(env Envelope) { calls[env.ID]++ }
		d := testDurable(b, "h", h)
		if err := d.open(eventstore.Start, ordered); err != nil {
			t.Fatal(err)
		}
		deliver := func(d *durable, e eventstore.Event) {
			m, err := toMessage(e)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.handle(m); err != nil {
				t.Fatal(err)
			}
		}
		deliver(d, evs[0])
		deliver(d, evs[1])
		deliver(d, evs[0]) // redelivery in the same process
		deliver(d, evs[1])
		if calls[evs[0].ID] != 1 || calls[evs[1].ID] != 1 {
			t.Fatalf("ordered=%v: redelivery handled again: %v", ordered, calls)
		}
		if err := d.close(); err != nil {
			t.Fatal(err)
		}
		// A restart: a fresh handler over the same checkpoint directory.
		d2 := testDurable(b, "h", h)
		if err := d2.open(eventstore.Start, ordered); err != nil {
			t.Fatal(err)
		}
		deliver(d2, evs[1])
		deliver(d2, evs[2])
		wantAgain := 1
		if !ordered {
			wantAgain = 2 // no local checkpoint: the broker's acks are what prevent this delivery
		}
		if calls[evs[1].ID] != wantAgain || calls[evs[2].ID] != 1 {
			t.Fatalf("ordered=%v after restart: %v", ordered, calls)
		}
		d2.close()
	}
}

// A message whose metadata names another tenant than its envelope is refused: never handed to a
// module under the wrong tenant, counted as failed, and not retried.
func TestMislabelledMessageIsRefused(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	res, err := store.Append(context.Background(), tenant.MustStream(tenant.MustParse("acme"), "thing", "1"), eventstore.Any,
		eventstore.EventData{Type: "test.Happened", Data: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{CheckpointDir: t.TempDir()}, Deps{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	d := testDurable(b, "h", func(Envelope) { calls++ })
	if err := d.open(eventstore.Start, false); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(m *message.Message){
		"tenant metadata": func(m *message.Message) { m.Metadata.Set(MetaTenant, "globex") },
		"message id":      func(m *message.Message) { m.UUID = "another" },
		"payload":         func(m *message.Message) { m.Payload = []byte("{") },
	} {
		m, err := toMessage(res.Events[0])
		if err != nil {
			t.Fatal(err)
		}
		mutate(m)
		if err := d.handle(m); err != nil {
			t.Fatalf("%s: a refused message must be acked, got %v", name, err)
		}
		if calls != 0 {
			t.Fatalf("%s: mislabelled message reached the handler", name)
		}
	}
}
