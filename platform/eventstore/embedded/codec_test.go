package embedded

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Reads decode through a cache (shared names, one allocation for an event's own strings): the
// events are exactly what the plain decoder gives, a caller changing one event's data changes no
// other field nor event, and damage is refused the same way.
func TestCachedDecodeMatchesPlain(t *testing.T) {
	t.Parallel()
	c := newDecodeCache()
	var got []eventstore.Event
	var encoded [][]byte
	for i := range 6 {
		e := eventstore.Event{ID: "01900000-0000-7000-8000-00000000000" + string(rune('0'+i)), Type: "conversation.UserMessageAdded",
			Tenant: tenant.MustParse("acme"), Stream: []string{"t-acme.session-a", "t-acme.session-b", "t-beta.tool-audit-x"}[i%3],
			Revision: uint64(i), Position: eventstore.Position(i + 1), Time: time.Unix(0, int64(i)*1e9+7).UTC(),
			RequestID: "req", Actor: "key:0123456789ab", CorrelationID: "corr", Data: json.RawMessage(`{"n":1}`), Prev: "p", Hash: "h"}
		if i%3 == 2 {
			e.Tenant, e.User, e.CausationID, e.RequestID = tenant.MustParse("beta"), "ann", "cause", ""
		}
		b := encodeEvent(nil, &e)
		encoded = append(encoded, b)
		want, err := decodeEvent(b)
		if err != nil {
			t.Fatal(err)
		}
		var ev eventstore.Event
		if err := decodeEventInto(&ev, b, c); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ev, want) || !reflect.DeepEqual(ev, e) {
			t.Fatalf("event %d: cached %+v\nplain %+v\nwritten %+v", i, ev, want, e)
		}
		got = append(got, ev)
	}
	got[0].Data[1] = 'X'
	got[0].Data = append(got[0].Data, "more"...)
	for i, b := range encoded {
		want, _ := decodeEvent(b)
		if i == 0 {
			want.Data = got[0].Data
		}
		if !reflect.DeepEqual(got[i], want) {
			t.Fatalf("event %d changed with another's data: %+v", i, got[i])
		}
	}
	// Damage: cut short, an unknown tag after the hash, a stream name that does not parse.
	e := got[1]
	bad := [][]byte{encoded[1][:len(encoded[1])-3], append(append([]byte(nil), encoded[1]...), 9, 1, 'x')}
	e.Stream = "no-tenant-here"
	bad = append(bad, encodeEvent(nil, &e))
	for i, b := range bad {
		var ev eventstore.Event
		_, plainErr := decodeEvent(b)
		if err := decodeEventInto(&ev, b, c); err == nil || plainErr == nil {
			t.Fatalf("damaged encoding %d decoded: cached %v, plain %v", i, err, plainErr)
		}
	}
}
