package bus

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// flakyPublisher fails its 2nd call after publishing only the first message of the batch, and its
// 4th call outright.
type flakyPublisher struct {
	message.Publisher
	mu    sync.Mutex
	calls int
}

func (p *flakyPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	p.calls++
	n := p.calls
	p.mu.Unlock()
	switch n {
	case 2:
		if err := p.Publisher.Publish(topic, msgs[0]); err != nil {
			return err
		}
		return errors.New("broker went away mid-batch")
	case 4:
		return errors.New("broker down")
	}
	return p.Publisher.Publish(topic, msgs...)
}

// A failed publish (whole or partial) restarts forwarding after the last event published: every
// event reaches the processor once, in order, and the bus reports healthy again.
func TestForwarderRecoversFromPublishFailures(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	b, err := New(Config{CheckpointDir: t.TempDir(), RetryInitial: time.Millisecond, RetryMax: 2 * time.Millisecond}, Deps{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	flaky := &flakyPublisher{}
	b.decoratePublisher = func(p message.Publisher) message.Publisher { flaky.Publisher = p; return flaky }
	var mu sync.Mutex
	var got []string
	b.codec.Add("test.Happened", rawHappened{})
	Handle(b.Processor("test.flaky-broker"), func(_ context.Context, env Envelope, _ rawHappened) error {
		mu.Lock()
		got = append(got, env.ID)
		mu.Unlock()
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	var want []string
	for range 12 {
		res, err := store.Append(ctx, tenant.MustStream(tenant.MustParse("acme"), "thing", "1"), eventstore.Any,
			eventstore.EventData{Type: "test.Happened", Data: []byte(`{}`)}, eventstore.EventData{Type: "test.Happened", Data: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range res.Events {
			want = append(want, e.ID)
		}
		// One publish per append, so that the failing calls fall on batches in the middle.
		for wait := time.Now().Add(time.Minute); b.shared.pos.Load() < uint64(res.Position); time.Sleep(time.Millisecond) {
			if time.Now().After(wait) {
				t.Fatalf("forwarder stuck at %d", b.shared.pos.Load())
			}
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= len(want) && b.Lag() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handler got %d of %d events", n, len(want))
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := b.Check(ctx); err != nil {
		t.Fatalf("Check after recovery: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) {
		t.Fatalf("handler got %v\nwant %v", got, want)
	}
	if flaky.calls < 5 {
		t.Fatalf("publisher called %d times: the failures were not exercised", flaky.calls)
	}
}
