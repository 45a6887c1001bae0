package esdb

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
)

// TestIntegrationEventStoreDB runs the port's acceptance suite against a real EventStoreDB/KurrentDB.
// Each subtest gets its own stream namespace, so the suite's fixed stream names do not collide across
// subtests or runs on a shared server.
func TestIntegrationEventStoreDB(t *testing.T) {
	url := os.Getenv("CRISPY_EVENTSTORE_URL")
	if url == "" {
		t.Skip("EventStoreDB integration test skipped: set CRISPY_EVENTSTORE_URL (for example esdb://localhost:2113?tls=false) to run the acceptance suite against a real server")
	}
	run := time.Now().UTC().Format("20060102-150405")
	n := 0
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
		n++
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := Open(ctx, Config{URL: url, Namespace: fmt.Sprintf("it-%s-%d", run, n)}, Options{Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if err != nil {
			t.Fatalf("open %s: %v", redact(url), err)
		}
		return s
	})
}

func TestPositionsNameEventsAndTheGapsAfterThem(t *testing.T) {
	t.Parallel()
	for _, commit := range []uint64{0, 1, 1000, 1137, 1 << 40} {
		p := encodePos(commit)
		if p < 1 || p%2 != 0 {
			t.Fatalf("encodePos(%d) = %d, want an even position >= 1", commit, p)
		}
		if d := decodeFrom(p); !d.before || d.commit != commit {
			t.Errorf("decodeFrom(%d) = %+v, want inclusive from commit %d", p, d, commit)
		}
		if d := decodeFrom(p + 1); !d.after || d.commit != commit {
			t.Errorf("decodeFrom(%d) = %+v, want exclusive after commit %d", p+1, d, commit)
		}
		if encodePos(commit+1) <= p+1 {
			t.Errorf("positions of neighbouring commits %d and %d overlap", commit, commit+1)
		}
	}
	for _, from := range []eventstore.Position{0, 1} {
		if d := decodeFrom(from); !d.start {
			t.Errorf("decodeFrom(%d) = %+v, want the start", from, d)
		}
	}
	if p := encodePos(^uint64(0)); p != 0 {
		t.Errorf("a stream read without $all position encodes to %d, want 0", p)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		cfg  Config
		want string // "" when valid
	}{
		{Config{URL: "esdb://localhost:2113?tls=false"}, ""},
		{Config{URL: "esdb+discover://cluster.example:2113"}, ""},
		{Config{URL: "kurrentdb://admin:changeit@localhost:2113"}, ""},
		{Config{URL: "kurrentdb+discover://a:2113,b:2113"}, ""},
		{Config{URL: "esdb://localhost:2113", Namespace: "it-1"}, ""},
		{Config{}, "empty"},
		{Config{URL: "http://admin:secret@localhost:2113"}, "must start with"},
		{Config{URL: "esdb://localhost:2113", Namespace: "Bad:ns"}, "namespace"},
		{Config{URL: "esdb://localhost:2113", AppendRetries: -1}, "negative"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v, want valid", c.cfg, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want an error about %q", c.cfg, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
	if got, _ := clientURL("kurrentdb://h:1?tls=false"); got != "esdb://h:1?tls=false" {
		t.Errorf("clientURL rewrote kurrentdb:// to %q", got)
	}
	if got := redact("esdb://admin:changeit@h:2113"); got != "esdb://admin:***@h:2113" {
		t.Errorf("redact = %q", got)
	}
}

func TestOpenFailsFastWhenNoServerAnswers(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Port 1 on loopback refuses connections; the client's discovery gives up after its attempts.
	_, err := Open(ctx, Config{URL: "esdb://127.0.0.1:1?tls=false&maxDiscoverAttempts=1&discoveryInterval=10"}, Options{})
	if err == nil {
		t.Fatal("open against a closed port succeeded")
	}
}
