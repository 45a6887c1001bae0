package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

const typeAnswered = "test.Answered"

// textDecodes counts how many times an answeredEvent's text was decoded, across the test's buses.
var textDecodes atomic.Int64

// countedText is a text that counts its decodings.
type countedText string

func (c *countedText) UnmarshalJSON(b []byte) error {
	textDecodes.Add(1)
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*c = countedText(s)
	return nil
}

// answeredEvent has the shape of an answer: a long text and the few fields a ledger counts.
type answeredEvent struct {
	N     int         `json:"n"`
	Model string      `json:"model"`
	Text  countedText `json:"text"`
}

// answeredCount is a view of answeredEvent: no text.
type answeredCount struct {
	N     int    `json:"n"`
	Model string `json:"model"`
}

// appendAnswers appends n answers to one stream of acme (text "bad": a number, which does not
// decode into answeredEvent but does into the view, for the last of them).
func appendAnswers(t *testing.T, store eventstore.Store, n int, badLast bool) {
	t.Helper()
	for i := range n {
		var data any = map[string]any{"n": i, "model": "m" + string(rune('a'+i)), "text": strings.Repeat("words ", 200)}
		if badLast && i == n-1 {
			data = map[string]any{"n": i, "model": "m" + string(rune('a'+i)), "text": 42}
		}
		d, err := eventstore.NewEventData(typeAnswered, data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Append(context.Background(), tenant.MustStream(acme, "session", "s"), eventstore.Any, d); err != nil {
			t.Fatal(err)
		}
	}
}

// Handlers that take a view of an event type (ApplyView, HandleView) get its fields as the full
// type decodes them, and the fields they leave out are not decoded at all when every handler on
// the cursor takes the view; beside a handler of the full type each event is decoded once into
// each, not once per handler. Data that decodes into the view but not into the full type is
// applied by the view's handlers and passed by the full type's.
func TestViewHandlersDecodeOnlyTheirFields(t *testing.T) {
	const n = 6
	store := eventstoretest.NewMemory()
	appendAnswers(t, store, n, true)
	type seen struct {
		mu   sync.Mutex
		byID map[string][]int // consumer → N of each event it was given, in order
	}
	run := func(withFull bool) (*seen, int64) {
		s := &seen{byID: map[string][]int{}}
		note := func(who string, ev answeredCount) {
			if ev.Model != "m"+string(rune('a'+ev.N)) {
				t.Errorf("%s: event %d decoded model %q", who, ev.N, ev.Model)
			}
			s.mu.Lock()
			s.byID[who] = append(s.byID[who], ev.N)
			s.mu.Unlock()
		}
		textDecodes.Store(0)
		r := start(t, projectionConfig(t), store, func(reg bus.Consumers) {
			reg.Codec().Add(typeAnswered, answeredEvent{})
			for _, name := range []string{"test.ledger", "test.usage"} {
				p := reg.Projection(name, bus.ProjectionOptions{Version: 1})
				bus.ApplyView[answeredEvent](p, func(_ context.Context, _ *readmodel.Tx, _ bus.Envelope, ev answeredCount) error {
					note(name, ev)
					return nil
				})
			}
			bus.HandleView[answeredEvent](reg.Processor("test.metrics"), func(_ context.Context, _ bus.Envelope, ev answeredCount) error {
				note("test.metrics", ev)
				return nil
			})
			if withFull {
				p := reg.Projection("test.full", bus.ProjectionOptions{Version: 1})
				bus.Apply(p, func(_ context.Context, _ *readmodel.Tx, _ bus.Envelope, ev answeredEvent) error {
					if len(ev.Text) != len("words ")*200 {
						t.Errorf("full handler: event %d has a text of %d bytes", ev.N, len(ev.Text))
					}
					note("test.full", answeredCount{N: ev.N, Model: ev.Model})
					return nil
				})
			}
		})
		if err := r.b.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		return s, textDecodes.Load()
	}
	want := "[0 1 2 3 4 5]"
	s, texts := run(false)
	for _, who := range []string{"test.ledger", "test.usage", "test.metrics"} {
		if got := fmt.Sprint(s.byID[who]); got != want {
			t.Errorf("%s applied %s, want %s", who, got, want)
		}
	}
	if texts != 0 {
		t.Errorf("with view handlers only, the text was decoded %d times; want never", texts)
	}
	s, texts = run(true)
	if got := fmt.Sprint(s.byID["test.full"]); got != "[0 1 2 3 4]" {
		t.Errorf("the full type's handler applied %s, want every event but the one whose text does not decode", got)
	}
	for _, who := range []string{"test.ledger", "test.usage"} {
		if got := fmt.Sprint(s.byID[who]); got != want {
			t.Errorf("beside the full type's handler, %s applied %s, want %s", who, got, want)
		}
	}
	if texts != n {
		t.Errorf("beside the full type's handler, the text was decoded %d times; want once per event (%d)", texts, n)
	}
}

// A processor's view handler gets the view, decoded once by the processors' cursor.
func TestProcessorViewHandler(t *testing.T) {
	store := eventstoretest.NewMemory()
	var mu sync.Mutex
	var got []int
	textDecodes.Store(0)
	r := start(t, goChannelConfig(t), store, func(reg bus.Consumers) {
		reg.Codec().Add(typeAnswered, answeredEvent{})
		bus.HandleView[answeredEvent](reg.Processor("test.metrics"), func(_ context.Context, _ bus.Envelope, ev answeredCount) error {
			if ev.Model != "m"+string(rune('a'+ev.N)) {
				t.Errorf("event %d decoded model %q", ev.N, ev.Model)
			}
			mu.Lock()
			got = append(got, ev.N)
			mu.Unlock()
			return nil
		})
	})
	appendAnswers(t, store, 4, true)
	if err := r.b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != "[0 1 2 3]" || textDecodes.Load() != 0 {
		t.Fatalf("processor view handler got %v, text decoded %d times; want [0 1 2 3] and never", got, textDecodes.Load())
	}
}

// A view that is not one (a field under another JSON name, of another type, or absent from the
// event type) is refused when the bus runs, naming the field.
func TestBadViewIsRefusedAtRun(t *testing.T) {
	type otherTag struct {
		Model string `json:"modelName"`
	}
	type otherType struct {
		N int64 `json:"n"`
	}
	type notAField struct {
		Cost float64 `json:"cost"`
	}
	for name, reg := range map[string]func(*bus.Projection){
		"tag":   func(p *bus.Projection) { bus.ApplyView[answeredEvent](p, noop[otherTag]) },
		"type":  func(p *bus.Projection) { bus.ApplyView[answeredEvent](p, noop[otherType]) },
		"field": func(p *bus.Projection) { bus.ApplyView[answeredEvent](p, noop[notAField]) },
	} {
		t.Run(name, func(t *testing.T) {
			b, err := bus.New(projectionConfig(t), bus.Deps{Store: eventstoretest.NewMemory()})
			if err != nil {
				t.Fatal(err)
			}
			b.Codec().Add(typeAnswered, answeredEvent{})
			reg(b.Projection("test.bad", bus.ProjectionOptions{Version: 1}))
			err = b.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), "view") || !strings.Contains(err.Error(), "test.bad") {
				t.Fatalf("Run with a bad view: %v", err)
			}
		})
	}
}

func noop[V any](context.Context, *readmodel.Tx, bus.Envelope, V) error { return nil }
