package observability_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
)

// Issue 10, item 9: alert rules and the query parameters of the metrics and audit operations refuse
// blank names, control characters and invalid UTF-8 with 422 naming the field.
func TestBadTextIsRefusedWith422NamingTheField(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	rule := func(fields string) []byte {
		return []byte(`{"metric":"requests","comparator":"gt","threshold":1,` + fields + `}`)
	}
	for _, c := range []struct {
		name, method, path string
		body               []byte
		loc                string
	}{
		{"whitespace-only rule name", "PUT", "/metrics/alerts", rule(`"name":"   "`), "body.name"},
		{"NUL in the rule name", "PUT", "/metrics/alerts", rule(`"name":"a\u0000"`), "body.name"},
		{"invalid UTF-8 in the rule name", "PUT", "/metrics/alerts", rule("\"name\":\"\xe2\x28\xa1\""), "body.name"},
		{"line break in the rule id", "PUT", "/metrics/alerts", rule(`"name":"n","id":"a\nb"`), "body.id"},
		{"tab in the webhook URL", "PUT", "/metrics/alerts", rule(`"name":"n","webhookUrl":"https://hooks.example.com/\t"`), "body.webhookUrl"},
		{"NUL in the id to delete", "DELETE", "/metrics/alerts?id=a%00", nil, "query.id"},
		{"invalid UTF-8 in the period", "GET", "/usage?period=%FF", nil, "query.period"},
		{"line break in an audit filter", "GET", "/audit/events?type=a%0Ab", nil, "query.type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			httpapitest.WantField(t, httpapitest.Send(e.h, c.method, c.path, "acme", c.body), c.loc)
		})
	}
	// None of the refused rules was stored.
	if w := httpapitest.Send(e.h, http.MethodGet, "/metrics/alerts", "acme", nil); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"alerts":[]`) {
		t.Fatalf("list: %d %s", w.Code, w.Body)
	}
}
