package observability_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
)

// FuzzAlertAndAuditRequests sends arbitrary alert rules to PUT /metrics/alerts and arbitrary query
// strings to the alert, metrics and audit operations (periods, ids, RFC 3339 times, cursors): never a
// 5xx, and every error is a problem JSON with its status, code and requestId within 8 KB.
func FuzzAlertAndAuditRequests(f *testing.F) {
	for _, c := range []struct{ body, query string }{
		{`{"id":"errors","name":"Chat errors","metric":"chatErrorRate","comparator":"gt","threshold":0.1,"period":"1h"}`, "period=24h"},
		{`{"name":"n","metric":"costUsd","comparator":"gte","threshold":5,"enabled":false,"webhookUrl":"https://hooks.example.com/x"}`, "id=errors"},
		{`{"name":"n","metric":"nope","comparator":"eq","threshold":"x"}`, "period=2h"},
		{`{"name":"n","metric":"requests","comparator":"gt","threshold":1e308,"webhookUrl":"http://127.0.0.1:1/"}`, "from=2026-01-01T00:00:00Z&until=x"},
		{`{"name":null,"metric":null,"comparator":null,"threshold":null,"enabled":null}`, "limit=0&cursor=zz"},
		{`{"id":"` + strings.Repeat("a", 100) + `","name":"n","metric":"requests","comparator":"lt","threshold":-1}`, "limit=99999999999999999999"},
		{`{"name":"   ","metric":"requests","comparator":"lt","threshold":1}`, "stream=session-x&type=a"},
		{`{"name":"a\u0000","metric":"requests","comparator":"lt","threshold":1}`, "period=%00"},
		{"{\"name\":\"\xff\",\"metric\":\"requests\",\"comparator\":\"lt\",\"threshold\":1}", "period=%FF"},
		{`null`, "asOf=not-a-time"}, {`[]`, ""}, {`{`, "cursor=" + strings.Repeat("9", 50)}, {``, "id="},
	} {
		for op := uint8(0); op < 5; op++ {
			f.Add(op, []byte(c.body), c.query)
		}
	}
	e := newEnv(f, opts{})
	f.Fuzz(func(t *testing.T, op uint8, body []byte, query string) {
		method, path := http.MethodGet, ""
		switch op % 5 {
		case 0:
			method, path = http.MethodPut, "/metrics/alerts"
		case 1:
			method, path, body = http.MethodDelete, "/metrics/alerts", nil
		case 2:
			path, body = "/usage", nil
		case 3:
			path, body = "/metrics/overview", nil
		case 4:
			path, body = "/audit/events", nil
		}
		target := path + "?" + sanitizeQuery(query)
		w := httpapitest.Send(e.h, method, target, "acme", body, "x-api-key", "k")
		if err := httpapitest.CheckRecorded(w); err != nil {
			t.Fatalf("%s %.200s %.200q: %v", method, target, body, err)
		}
	})
}

// sanitizeQuery keeps a fuzzed query string to what a request line can carry (no spaces, controls,
// '#' or bytes above ASCII, which an HTTP client percent-encodes).
func sanitizeQuery(q string) string {
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c <= ' ' || c >= 0x7f || c == '#' {
			b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
