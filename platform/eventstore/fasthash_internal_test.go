package eventstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The fast hasher agrees with ComputeHash on every kind of data, compact or not.
func TestFastHashMatchesReference(t *testing.T) {
	t.Parallel()
	datas := []string{``, `{}`, `{"a":1}`, `{"s":"with spaces and \"quotes\" and \\ back"}`, "{\n  \"pretty\": [1, 2]\n}",
		`{"u":"ünïcødé 🎉","e":"\\\" }"}`, `[ 1 ,2 ]`, `"str"`, `{"x":"\t"}`, "{\"a\":\"b\\\\\" , \"c\":1}"}
	x := NewFastHasher()
	ctx := context.Background()
	for i, d := range datas {
		var data []EventData
		// Every third event has an asserted user, so both forms of the canonical bytes are covered.
		user := ""
		if i%3 == 0 {
			user = fmt.Sprint("ann-", i)
		}
		data = append(data, EventData{Type: "t.E", Data: json.RawMessage(d), RequestID: fmt.Sprint("r", i), Actor: "key:0123456789ab", User: user, CausationID: "c"})
		evs, err := Prepare(ctx, tenant.MustStream(tenant.MustParse("acme"), "session", "s"), uint64(i*1000+7), "prevhash",
			time.Date(2026, 1, 2, 3, 4, 5, i*1000+1, time.FixedZone("x", 3600)), data)
		if err != nil {
			t.Fatalf("%q: %v", d, err)
		}
		e := evs[0]
		if i%2 == 0 {
			e.Data = json.RawMessage(d) // as the store may hand it back: uncompacted
		}
		want, err := ComputeHash(e.Prev, &e)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := x.hash(&e); !ok || got != want {
			t.Errorf("%q: fast %s (%v), reference %s", d, got, ok, want)
		}
		if got, err := x.Check(&e); err != nil || got != want {
			t.Errorf("%q: check %s %v", d, got, err)
		}
	}
	for in, want := range map[string]bool{`{"a":"b c"}`: true, `{"a": 1}`: false, `"a\"b c"`: true, `"a\\" , 1`: false, "[1,\n2]": false,
		`{"a":"x\\\" y","b":1}`: true, `{"a":"x\\\\" ,"b":1}`: false, `{"a":"\\\\\\"}`: true, `{"a":"q"}` + " ": false, `"`: true, `""`: true} {
		var c bytes.Buffer
		if json.Compact(&c, []byte(in)) == nil && (c.String() == in) != want {
			t.Errorf("test case %q: json.Compact says compact=%v", in, c.String() == in)
		}
		if isCompact([]byte(in)) != want {
			t.Errorf("isCompact(%q) != %v", in, want)
		}
	}
}

// The hash's own time formatter writes what time.RFC3339Nano does, for every shape of fraction and
// zone, and years the general formatter has to take.
func TestRFC3339NanoUTC(t *testing.T) {
	t.Parallel()
	times := []time.Time{time.Unix(0, 0), time.Date(2026, 11, 29, 13, 4, 5, 0, time.UTC), time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("x", -3600)), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-5, 3, 4, 0, 0, 0, 120, time.UTC), time.Date(2026, 2, 3, 4, 5, 6, 100000000, time.FixedZone("y", 5*3600+1800))}
	for i := range 2000 {
		times = append(times, time.Unix(int64(i)*987654321+int64(i%7)*31536000*40, int64(i)*7919*int64(i%10)%1e9).In(time.FixedZone("z", (i%27-13)*3600)))
	}
	for _, tm := range times {
		if got, want := string(appendRFC3339NanoUTC([]byte("x"), tm)), "x"+tm.UTC().Format(time.RFC3339Nano); got != want {
			t.Fatalf("%v: %s, want %s", tm, got, want)
		}
	}
}

// BenchmarkFastHash: one event's hash recomputed, as verification does for every stored event.
func BenchmarkFastHash(b *testing.B) {
	ed := EventData{Type: "conversation.UserMessageAdded", Data: json.RawMessage(`{"sessionId":"0b0f6a2e-0c4b-4a57-9a65-3f5f0f3a1d2e","turnId":"7","content":"a question of about the usual length for a chat turn, some sixty words or so would be more typical"}`),
		RequestID: "r1", Actor: "key:0123456789ab"}
	evs, err := Prepare(context.Background(), tenant.MustStream(tenant.MustParse("acme"), "session", "s"), 3, "prevhash", time.Now(), []EventData{ed})
	if err != nil {
		b.Fatal(err)
	}
	x := NewFastHasher()
	b.ReportAllocs()
	for b.Loop() {
		if h, err := x.Check(&evs[0]); err != nil || h != evs[0].Hash {
			b.Fatal(h, err)
		}
	}
}

// Seal (pooled FastHashers for valid JSON) sets the hash ComputeHash computes, with and without a
// user, compact data or not; data that is not JSON is refused as ComputeHash refuses it, compact
// or not (the FastHasher alone would hash a compact-looking `{"a"1}`).
func TestSealMatchesComputeHash(t *testing.T) {
	t.Parallel()
	base := Event{ID: "0193b2c4-0000-7000-8000-000000000001", Type: "t.E", Tenant: tenant.MustParse("acme"), Stream: "acme/session/s",
		Revision: 42, Time: time.Date(2026, 1, 2, 3, 4, 5, 6789, time.UTC), RequestID: "r", Actor: "key:0123456789ab", CausationID: "c"}
	for i, d := range []string{`{}`, `{"a":1}`, "{\n  \"pretty\": [1, 2]\n}", `{"u":"ünïcødé 🎉","e":"\\\" }"}`, `[ 1 ,2 ]`, `"str"`, `null`} {
		for _, user := range []string{"", "ann"} {
			e := base
			e.Data, e.User = json.RawMessage(d), user
			want, err := ComputeHash(fmt.Sprint("prev", i), &e)
			if err != nil {
				t.Fatal(err)
			}
			if err := Seal(fmt.Sprint("prev", i), &e); err != nil || e.Hash != want || e.Prev != fmt.Sprint("prev", i) {
				t.Errorf("%q user %q: sealed %s (%v), reference %s", d, user, e.Hash, err, want)
			}
		}
	}
	for _, d := range []string{`{"a"1}`, `{"a":1`, `{"a":1}}`, `{"a": 1,}`, "{\"a\":\"\x01\"}"} {
		e := base
		e.Data = json.RawMessage(d)
		if _, want := ComputeHash("p", &e); want == nil {
			t.Fatalf("%q: the reference hashes it", d)
		}
		if err := Seal("p", &e); err == nil {
			t.Errorf("%q is not JSON, sealed as %s", d, e.Hash)
		}
	}
}

// BenchmarkSeal seals a usage event of the size a proxied /v1 call records (~450 bytes of data).
func BenchmarkSeal(b *testing.B) {
	data := json.RawMessage(`{"turnId":"0193b2c4-5a6b-7c8d-9e0f-112233445566","model":"openai:gpt-4o-mini","usage":{"promptTokens":13,"completionTokens":7,"totalTokens":20},` +
		`"latencyMs":1.234,"ttftMs":0.567,"fallbacks":null,"userId":"","source":"openai","offline":false,"stateless":true,"modelId":"fake:m","sessionId":"",` +
		`"priceMicroUsd":0,"key":"key:0123456789ab","outcome":"completed","recordedAt":"2026-11-29T23:00:00.123456789Z"}`)
	e := Event{ID: "0193b2c4-0000-7000-8000-000000000001", Type: "conversation.CompletionRecorded", Tenant: tenant.MustParse("acme"), Stream: "acme/usage/x",
		Revision: 42, Time: time.Date(2026, 1, 2, 3, 4, 5, 6789, time.UTC), RequestID: "0193b2c4-0000-7000-8000-000000000002", Actor: "key:0123456789ab", Data: data}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := Seal("prev", &e); err != nil {
			b.Fatal(err)
		}
	}
}
