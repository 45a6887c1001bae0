package embedded_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// TestSubscribedDataStaysTheEventsOwn: a subscription hands each event's data as part of its page's
// read buffer (no copy); what a handler does to one event's Data (writes, appends) never shows in
// another's, and later reads of the store (which reuse their buffers) never change it.
func TestSubscribedDataStaysTheEventsOwn(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir())
	ctx := context.Background()
	st := tenant.MustStream(acme, "thing", "1")
	var want [][]byte
	var batch []eventstore.EventData
	for i := range 50 {
		d := []byte(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, bytes.Repeat([]byte("x"), i)))
		want = append(want, d)
		batch = append(batch, eventstore.EventData{Type: "test.Thing", Data: d})
	}
	if _, err := s.Append(ctx, st, eventstore.Any, batch...); err != nil {
		t.Fatal(err)
	}
	var kept [][]byte
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := s.Subscribe(sctx, eventstore.SubscribeOptions{CaughtUp: func(context.Context, eventstore.Position) error {
		cancel()
		return nil
	}}, func(_ context.Context, e eventstore.Event) error {
		kept = append(kept, e.Data)
		if len(kept)%2 == 0 {
			// A handler scribbling on its event's data, and appending to it.
			_ = append(e.Data, bytes.Repeat([]byte("g"), 2000)...) // past its record's end

		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Other reads reuse their buffers: the subscribed data must not be one of them.
	for range 3 {
		if _, err := s.ReadStream(ctx, st, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if len(kept) != len(want) {
		t.Fatalf("subscribed %d events, want %d", len(kept), len(want))
	}
	for i := range want {
		if !bytes.Equal(kept[i], want[i]) {
			t.Fatalf("event %d's data is %q, want %q", i, kept[i], want[i])
		}
	}
}
