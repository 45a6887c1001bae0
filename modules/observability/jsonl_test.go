package observability_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/crispy-enigma/crispy/modules/observability"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Replay's lines decode to exactly the stored events, whatever the strings hold.
func TestReplayLinesRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	tricky := []string{"plain", `quote " and \ backslash`, "new\nline\r\ttab\x00nul\x1f", "<html>&amp;", "emoji 🎉 and \u2028 sep", "bad utf8 \xff\xfe end", ""}
	ctx := request.With(context.Background(), request.Info{ID: "req-1", Actor: "key:\"x\"\n"})
	for i, s := range tricky {
		pretty, _ := json.MarshalIndent(map[string]any{"content": s, "n": i}, "", "  ")
		if _, err := e.store.Append(ctx, tenant.MustStream(acme, "session", "s"), eventstore.Any,
			eventstore.EventData{Type: "test.Tricky", Data: pretty, CausationID: s, User: s}); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	n, err := observability.Replay(context.Background(), e.store, acme, observability.ReplayOptions{}, &buf, nil)
	if err != nil || n != len(tricky) {
		t.Fatalf("%d %v", n, err)
	}
	stored, _ := e.store.ReadTenant(context.Background(), acme, eventstore.Start, 0)
	sc := bufio.NewScanner(&buf)
	i := 0
	for sc.Scan() {
		var got eventstore.Event
		if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, sc.Text())
		}
		want := stored[i]
		var compact bytes.Buffer
		_ = json.Compact(&compact, want.Data)
		want.Data = compact.Bytes()
		// encoding/json replaces invalid UTF-8 the same way when decoding the expectation.
		wb, _ := json.Marshal(want)
		var norm eventstore.Event
		_ = json.Unmarshal(wb, &norm)
		if !reflect.DeepEqual(got, norm) {
			t.Fatalf("line %d differs:\n got %+v\nwant %+v", i, got, norm)
		}
		if !got.Time.Equal(stored[i].Time) {
			t.Fatalf("time %v != %v", got.Time, stored[i].Time)
		}
		i++
	}
	if i != len(tricky) {
		t.Fatalf("%d lines", i)
	}
}
