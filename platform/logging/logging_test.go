package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/crispy-enigma/crispy/platform/logging"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func TestRecordsCarryRequestIDAndTenant(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := logging.New(&buf, slog.LevelInfo).With("module", "test")
	ctx := request.With(context.Background(), request.Info{ID: "req-1"})
	ctx = tenant.WithID(ctx, tenant.MustParse("acme"))
	log.InfoContext(ctx, "hello")
	log.InfoContext(context.Background(), "bare")
	log.InfoContext(ctx, "explicit", "tenant", "acme")

	raw := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	var lines []map[string]any
	for _, l := range raw {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 {
		t.Fatalf("got %d lines", len(lines))
	}
	if lines[0]["requestId"] != "req-1" || lines[0]["tenant"] != "acme" || lines[0]["module"] != "test" {
		t.Fatalf("first line = %v", lines[0])
	}
	if _, ok := lines[1]["requestId"]; ok {
		t.Fatalf("a record without a request context got a request id: %v", lines[1])
	}
	if lines[2]["tenant"] != "acme" || lines[2]["requestId"] != "req-1" {
		t.Fatalf("third line = %v", lines[2])
	}
	if n := bytes.Count(raw[2], []byte(`"tenant"`)); n != 1 {
		t.Fatalf("tenant logged %d times in %s", n, raw[2])
	}
}
