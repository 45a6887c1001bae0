package retrieval_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func TestSealingPolicy(t *testing.T) {
	acme := tenant.MustParse("acme")
	st := tenant.MustStream(acme, events.DocCategory, events.DocStreamKey("d"))
	key := events.NewDocumentKey("d")
	data := func(ev any) eventstore.EventData {
		d, err := eventstore.NewEventData(events.TypeDocumentIngested, ev)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	cases := []struct {
		name   string
		stream tenant.Stream
		e      eventstore.EventData
		want   string // "" = not sealed
		refuse bool   // sealed under no valid key: the decorator fails the append
	}{
		{"an ingest with its key", st, data(events.DocumentIngested{DocID: "d", Text: `a "quoted", text \ with ,"key":"x"}`, Key: key}), key, false},
		{"an ingest without a key", st, data(events.DocumentIngested{DocID: "d", Text: "t"}), "", true},
		{"a key of another document", st, data(events.DocumentIngested{DocID: "d", Text: "t", Key: events.NewDocumentKey("other")}), "", true},
		{"metadata posing as the key", st, data(events.DocumentIngested{DocID: "d", Text: "t",
			Metadata: map[string]any{"a": 1, "key": "document/" + events.DocStreamKey("d") + "/ff"}}), "", true},
		{"not JSON", st, eventstore.EventData{Type: events.TypeDocumentIngested, Data: json.RawMessage(`{"docId":`)}, "", true},
		{"the key not last (another encoder)", st, eventstore.EventData{Type: events.TypeDocumentIngested,
			Data: json.RawMessage(`{"key":"` + key + `","docId":"d","text":"t"}`)}, key, false},
		{"a deletion", st, eventstore.EventData{Type: events.TypeDocumentDeleted, Data: json.RawMessage(`{"docId":"d","key":"` + key + `"}`)}, "", false},
		{"another category", tenant.MustStream(acme, "session", events.DocStreamKey("d")), data(events.DocumentIngested{DocID: "d", Key: key}), "", false},
	}
	for _, c := range cases {
		got, ok := retrieval.SealingPolicy(c.stream, c.e)
		if ok != (c.want != "" || c.refuse) || got != c.want {
			t.Errorf("%s: (%q, %v), want %q", c.name, got, ok, c.want)
		}
	}
}

// BenchmarkSealingPolicy: the policy runs on every append; on a 500 KB document it reads the key
// from the JSON's end instead of decoding the text (9.5 ms an event, decoded, under load).
func BenchmarkSealingPolicy(b *testing.B) {
	ev := events.DocumentIngested{DocID: "d", Text: strings.Repeat("Employees get 25 days of \"paid\" vacation. ", 12000), Key: events.NewDocumentKey("d")}
	data, _ := eventstore.NewEventData(events.TypeDocumentIngested, ev)
	st := tenant.MustStream(tenant.MustParse("acme"), events.DocCategory, events.DocStreamKey("d"))
	b.SetBytes(int64(len(data.Data)))
	for b.Loop() {
		if _, ok := retrieval.SealingPolicy(st, data); !ok {
			b.Fatal("not sealed")
		}
	}
}
