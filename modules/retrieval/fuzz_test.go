package retrieval_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
)

// FuzzRetrievalRequests sends arbitrary bodies to POST /ingest and POST /search, and arbitrary ids to
// DELETE /documents/{docId}, through the real handler stack on the embedded index: whatever arrives,
// the answer is never a 5xx, and every error is a problem JSON with its status, code and requestId
// within 8 KB.
func FuzzRetrievalRequests(f *testing.F) {
	for _, b := range []string{
		`{"docId":"a","text":"Employees get 25 days of paid vacation per year."}`,
		`{"docId":"a","text":"x","title":"t","source":"s","url":"https://x.example/a","metadata":{"team":"hr","n":1,"l":["a",2,null]},"chunking":{"maxChunkSize":100,"overlap":99}}`,
		`{"docId":"a","text":"x","chunking":{"maxChunkSize":100,"overlap":100}}`,
		`{"docId":"a","text":"x","chunking":{"maxChunkSize":99,"overlap":-1}}`,
		`{"docId":"a","text":"x","chunking":null,"metadata":null}`,
		`{"docId":"` + strings.Repeat("d", 300) + `","text":"x"}`,
		`{"docId":"a","text":"` + strings.Repeat("word ", 20_000) + `"}`,
		`{"query":"vacation days","topK":3,"minScore":0.1,"answer":false}`,
		`{"query":"q","filter":{"docId":["a","b"],"team":"hr"},"topK":50}`,
		`{"query":"q","filter":{"docId":{"$ne":1}},"topK":0,"minScore":2}`,
		`{"query":"q","filter":null,"topK":null,"answer":null}`,
		`{"query":"   "}`, `{"query":"a\u0000"}`, "{\"query\":\"\xff\"}", `{"query":1}`, `{"docId":null,"text":null}`,
		`null`, `[]`, `{`, ``, `{"docId":"a","text":"x","extra":1}`,
	} {
		f.Add(uint8(0), []byte(b), "a")
		f.Add(uint8(1), []byte(b), "a")
	}
	for _, id := range []string{"a", "handbook/vacation.md", "  ", "a\x00", "\xff", strings.Repeat("x", 300), "..", "%2F"} {
		f.Add(uint8(2), []byte(nil), id)
	}
	e := newEnv(f, opts{})
	f.Fuzz(func(t *testing.T, op uint8, body []byte, docID string) {
		method, path := http.MethodPost, "/ingest"
		switch op % 3 {
		case 1:
			path = "/search"
		case 2:
			if docID == "" {
				return
			}
			method, path, body = http.MethodDelete, "/documents/"+url.PathEscape(docID), nil
		}
		w := httpapitest.Send(e.h, method, path, "acme", body)
		if err := httpapitest.CheckRecorded(w); err != nil {
			t.Fatalf("%s %.200s %.200q: %v", method, path, body, err)
		}
	})
}
