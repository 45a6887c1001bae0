package auditlog

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// gatedSink is a witness that takes nothing until its gate opens (slow or down for a while), and
// fails the first `fail` pushes after that.
type gatedSink struct {
	gate chan struct{}
	mu   sync.Mutex
	fail int
	got  map[string][]uint64 // sizes taken, per tenant
}

func (s *gatedSink) Name() string { return "gated" }

func (s *gatedSink) Push(ctx context.Context, c Checkpoint) error {
	select {
	case <-s.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail > 0 {
		s.fail--
		return errors.New("witness unavailable")
	}
	s.got[c.Tenant] = append(s.got[c.Tenant], c.Size)
	return nil
}

func (s *gatedSink) last(tid string) (uint64, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.got[tid]
	if len(g) == 0 {
		return 0, 0
	}
	return g[len(g)-1], len(g)
}

// waitFor polls until cond holds (a deadline only so a broken build does not hang; no timing is asserted).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("never happened: %s", what)
}

func startLog(t *testing.T, ctx context.Context, store eventstore.Store, sinks ...Sink) (*Log, func(tid tenant.ID) Checkpoint) {
	t.Helper()
	l, err := New(Deps{Key: newKey(t), Store: store, Dir: filepath.Join(t.TempDir(), "cp"), Interval: time.Hour, Sinks: sinks,
		WitnessRetry: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b := bustest.NewBus(t, store)
	l.Register(b)
	bustest.Start(t, b)
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	// appendAndSign appends one event to tid's log and asks for its checkpoint (what a client
	// looping append + GET /audit/checkpoint does).
	return l, func(tid tenant.ID) Checkpoint {
		ed, _ := eventstore.NewEventData("test.Happened", map[string]int{"i": 1})
		if _, err := store.Append(ctx, tenant.MustStream(tid, "session", "s"), eventstore.Any, ed); err != nil {
			t.Fatal(err)
		}
		if err := b.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		c, err := l.Checkpoint(ctx, tid)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

// One tenant signing a checkpoint after each of its appends while the witness is slow neither
// pushes another tenant's checkpoint out nor queues without bound: the witness gets each tenant's
// latest checkpoint once it recovers.
func TestWitnessGetsEveryTenantsLatestCheckpoint(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink := &gatedSink{gate: make(chan struct{}), got: map[string][]uint64{}}
	_, appendAndSign := startLog(t, ctx, eventstoretest.NewMemory(), sink)
	var lastAcme Checkpoint
	for range 1100 {
		lastAcme = appendAndSign(acme)
	}
	lastBeta := appendAndSign(beta)
	close(sink.gate) // the witness recovers
	waitFor(t, "the witness has both tenants' latest checkpoints", func() bool {
		a, _ := sink.last("acme")
		b, _ := sink.last("beta")
		return a == lastAcme.Size && b == lastBeta.Size
	})
	// Coalesced: at most the one in flight when the gate opened, and the latest.
	if _, n := sink.last("acme"); n > 2 {
		t.Fatalf("the witness was pushed %d of acme's checkpoints, want only the latest (and at most one in flight)", n)
	}
	cancel()
}

// A checkpoint the witness did not take is pushed again until it does, though the log does not grow.
func TestWitnessIsRetriedUntilItTakesTheCheckpoint(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gate := make(chan struct{})
	close(gate)
	sink := &gatedSink{gate: gate, fail: 3, got: map[string][]uint64{}}
	_, appendAndSign := startLog(t, ctx, eventstoretest.NewMemory(), sink)
	c := appendAndSign(acme)
	waitFor(t, "the witness took the checkpoint after failing 3 times", func() bool {
		size, _ := sink.last("acme")
		return size == c.Size
	})
	cancel()
}

// A witness URL's credentials and query (tokens) never reach the log or an error.
func TestWebhookWitnessURLIsRedacted(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	defer srv.Close()
	secretURL := strings.Replace(srv.URL, "://", "://user:pa55word@", 1) + "/hook?token=s3cret#frag"
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &WebhookSink{URL: secretURL, Client: srv.Client(), Retries: 1, Backoff: time.Millisecond}
	l, err := New(Deps{Key: newKey(t), Store: eventstoretest.NewMemory(), Dir: t.TempDir(), Sinks: []Sink{w},
		Log: slog.New(slog.NewTextHandler(&logs, nil)), WitnessRetry: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); l.wit.run(ctx) }()
	l.wit.offer(Sign(l.d.Key, acme, 1, bytes.Repeat([]byte{1}, 32), time.Now()))
	// The worker logs the failure before it waits WitnessRetry (an hour), so the log line is there
	// once the round is over; the unreachable case goes through net/http's *url.Error.
	waitFor(t, "the failure was logged", func() bool { return l.wit.workers[0].failures.Load() > 0 })
	cancel()
	<-done
	dead := &WebhookSink{URL: "http://user:pa55word@127.0.0.1:1/hook?token=s3cret", Client: srv.Client(), Retries: 0, Backoff: time.Millisecond}
	errDead := dead.Push(context.Background(), Sign(l.d.Key, acme, 1, bytes.Repeat([]byte{1}, 32), time.Now()))
	for _, text := range []string{logs.String(), w.Name(), errDead.Error()} {
		if strings.Contains(text, "s3cret") || strings.Contains(text, "pa55word") || strings.Contains(text, "frag") {
			t.Fatalf("a witness credential leaked: %s", text)
		}
	}
	if !strings.Contains(logs.String(), "/hook") {
		t.Fatalf("the log line does not name the witness: %s", logs.String())
	}
}
