package postgres

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore/postgres/pgtest"
)

func pgURL(t testing.TB) string { return pgtest.URL(t) }

func testSchema(t testing.TB, url string) string { return pgtest.Schema(t, url) }

// openTest opens a store on url in schema, closed when the test ends. mod adjusts the configuration.
func openTest(t testing.TB, url, schema string, mod func(*Config), opts ...Options) *Store {
	t.Helper()
	cfg := Config{URL: url, Schema: schema}
	if mod != nil {
		mod(&cfg)
	}
	o := Options{Log: testLog()}
	if len(opts) > 0 {
		o = opts[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, cfg, o)
	if err != nil {
		t.Fatalf("open %s: %v", Redact(url), err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// eventually waits (generously: a loaded machine is slow) until ok holds.
func eventually(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
