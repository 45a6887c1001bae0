package embedded

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// MayHold finds bytes of an event's data in the log whatever the size of its reads, the bytes split
// between two reads included (reads of every size from a few bytes here), and answers false when
// no run of the log's bytes is them (JSON text quoting them escapes them).
func TestMayHoldFindsDataBytesAcrossReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	needle := []byte(`{"sealed":{`)
	if held, err := s.MayHold(ctx, needle); err != nil || held {
		t.Fatalf("empty store: MayHold = %v, %v", held, err)
	}
	put := func(stream, data string) {
		t.Helper()
		_, err := s.Append(ctx, tenant.MustStream(tenant.MustParse("acme"), "session", stream), eventstore.Any,
			eventstore.EventData{Type: "test.Said", Data: []byte(data)})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		// Text that quotes the bytes is escaped in JSON: it holds no run of them.
		put(fmt.Sprintf("s%d", i%7), fmt.Sprintf(`{"n":%d,"text":"{\"sealed\":{ %s"}`, i, strings.Repeat("x", i)))
	}
	for _, chunk := range []int{1, 7, 64, 1000, scanChunk} {
		if held, err := s.mayHold(ctx, needle, chunk); err != nil || held {
			t.Fatalf("reads of %d bytes, no event holds the bytes: MayHold = %v, %v", chunk, held, err)
		}
	}
	put("last", `{"sealed":{"k":"session/last","n":"AA==","c":"AA=="}}`)
	s.mu.RLock()
	size := int(s.size)
	s.mu.RUnlock()
	for chunk := 1; chunk < 300; chunk++ {
		if held, err := s.mayHold(ctx, needle, chunk); err != nil || !held {
			t.Fatalf("reads of %d bytes: MayHold = %v, %v; the last event holds the bytes", chunk, held, err)
		}
	}
	for _, chunk := range []int{size - 1, size, size + 1, scanChunk} {
		if held, err := s.mayHold(ctx, needle, chunk); err != nil || !held {
			t.Fatalf("reads of %d bytes (log of %d): MayHold = %v, %v", chunk, size, held, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.MayHold(cctx, needle); err == nil {
		t.Fatal("MayHold with its context ended read on")
	}
	s.Close()
	if _, err := s.MayHold(ctx, needle); err == nil {
		t.Fatal("MayHold on a closed store answered")
	}
}
