package retrieval_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Issue 10, item 9: blank text, control characters and invalid UTF-8 are refused with 422 naming the
// field on every retrieval operation, and a refused ingest records nothing.
func TestBadTextIsRefusedWith422NamingTheField(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	for _, c := range []struct {
		name, method, path string
		body               string
		loc                string
	}{
		{"whitespace-only docId", "POST", "/ingest", `{"docId":"   ","text":"some text"}`, "body.docId"},
		{"line break in the docId", "POST", "/ingest", `{"docId":"a\nb","text":"some text"}`, "body.docId"},
		{"whitespace-only text", "POST", "/ingest", `{"docId":"a","text":" \n\t\r\n "}`, "body.text"},
		{"NUL in the text", "POST", "/ingest", `{"docId":"a","text":"one\u0000two"}`, "body.text"},
		{"invalid UTF-8 in the text", "POST", "/ingest", "{\"docId\":\"a\",\"text\":\"na\xefve\"}", "body.text"},
		{"control character in the title", "POST", "/ingest", `{"docId":"a","text":"x","title":"\u001b[1mbold"}`, "body.title"},
		{"line break in the source", "POST", "/ingest", `{"docId":"a","text":"x","source":"a\r\nb"}`, "body.source"},
		{"tab in the url", "POST", "/ingest", `{"docId":"a","text":"x","url":"https://x.example/\t"}`, "body.url"},
		{"NUL in metadata", "POST", "/ingest", `{"docId":"a","text":"x","metadata":{"team":["ok","\u0000"]}}`, "body.metadata.team[1]"},
		{"whitespace-only query", "POST", "/search", `{"query":"  \t "}`, "body.query"},
		{"DEL in the query", "POST", "/search", `{"query":"vacation\u007f"}`, "body.query"},
		{"invalid UTF-8 in a filter", "POST", "/search", "{\"query\":\"q\",\"filter\":{\"docId\":\"\xc3\"}}", "body.filter.docId"},
		{"blank docId in the path", "DELETE", "/documents/%20%20", "", "path.docId"},
		{"NUL in the path", "DELETE", "/documents/a%00", "", "path.docId"},
		{"invalid UTF-8 in the path", "DELETE", "/documents/%C3%28", "", "path.docId"},
	} {
		t.Run(c.name, func(t *testing.T) {
			httpapitest.WantField(t, httpapitest.Send(e.h, c.method, c.path, "acme", []byte(c.body)), c.loc)
		})
	}
	evs, err := e.store.ReadTenant(context.Background(), tenant.MustParse("acme"), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 0 {
		t.Fatalf("%d events were recorded for refused requests, the first %s", len(evs), evs[0].Type)
	}
	// Multi-line text with tabs is a document like any other.
	if w := httpapitest.Send(e.h, http.MethodPost, "/ingest", "acme", []byte(`{"docId":"a","text":"Title\n\n\tIndented paragraph.\r\n"}`)); w.Code != http.StatusOK {
		t.Fatalf("multi-line text: %d %s", w.Code, w.Body)
	}
}
