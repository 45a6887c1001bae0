package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	crispy "github.com/crispy-enigma/crispy/openapi/clients/go"
)

// findDoc searches the tenant's document id for its marker word: 200 with the document, 200
// without it, or a refusal (the status and the response, to inspect).
func findDoc(t *testing.T, c *crispy.ClientWithResponses, id string) (*crispy.SearchDocumentsResponse, bool) {
	t.Helper()
	r, err := c.SearchDocumentsWithResponse(ctx(t), &crispy.SearchDocumentsParams{}, crispy.SearchDocumentsInput{
		Query: "marker" + id, TopK: ptr(int64(3)), Answer: ptr(false), Filter: &map[string]any{"docId": id}})
	if err != nil {
		t.Fatalf("search %s: %v", id, err)
	}
	return r, r.StatusCode() == http.StatusOK && strings.Contains(string(r.Body), "marker"+id)
}

// TestIndexAfterKill9NeverServesPartialTruth ingests documents, deletes one, and kills the server
// with SIGKILL before its next index snapshot (the snapshot interval is 10 s). After the restart,
// every search answers 503 catching_up with retry-after or a complete answer, never a 200 with part
// of the documents; then every acknowledged ingest is searchable and the acknowledged delete is not.
func TestIndexAfterKill9NeverServesPartialTruth(t *testing.T) {
	data := t.TempDir()
	tenants := filepath.Join(t.TempDir(), "tenants.yaml")
	yaml := "tenants:\n  - id: bulk\n    rateLimit: {perMinute: 1000000, burst: 100000, tenantPerMinute: 1000000}\n"
	if err := os.WriteFile(tenants, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, data, "--tenants", tenants)
	c := as(t, srv.BaseURL, "bulk", "")
	ingest := func(c *crispy.ClientWithResponses, id string) {
		r, err := c.IngestDocumentWithResponse(ctx(t), &crispy.IngestDocumentParams{}, crispy.IngestDocumentInput{
			DocId: id, Text: fmt.Sprintf("Document %s mentions marker%s and the handbook policy.", id, id)})
		if err != nil || r.StatusCode() != 200 {
			t.Fatalf("ingest %s: %v %s", id, err, r.Body)
		}
	}
	// Wait until the new server's (empty) index has caught up.
	for deadline := time.Now().Add(60 * time.Second); ; {
		r, _ := findDoc(t, c, "warmup")
		if r.StatusCode() == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("search never ready: %d %s", r.StatusCode(), r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Enough documents that rebuilding them takes a moment; four clients at once.
	const docs = 1200
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < docs; i += 4 {
				ingest(c, fmt.Sprintf("d%d", i))
			}
		}()
	}
	wg.Wait()
	if d, err := c.DeleteDocumentWithResponse(ctx(t), "d7", &crispy.DeleteDocumentParams{}); err != nil || d.StatusCode() != 200 {
		t.Fatalf("delete: %v %s", err, d.Body)
	}
	ingest(c, "last") // acknowledged just before the kill
	srv.Kill()

	srv2 := startServer(t, data, "--tenants", tenants)
	c2 := as(t, srv2.BaseURL, "bulk", "")
	var searches, partial, refused, healthCatchingUp int
	for i, deadline := 0, time.Now().Add(2*time.Minute); ; i++ {
		id := fmt.Sprintf("d%d", (i*37)%docs)
		if id == "d7" {
			id = "last"
		}
		r, found := findDoc(t, c2, id)
		searches++
		switch {
		case r.StatusCode() == 503:
			refused++
			if !strings.Contains(string(r.Body), `"catching_up"`) || r.HTTPResponse.Header.Get("Retry-After") == "" {
				t.Fatalf("refusal after the restart: retry-after %q, %s", r.HTTPResponse.Header.Get("Retry-After"), r.Body)
			}
			if refused == 1 {
				// The catch-up may end between the refusal and this call (when a snapshot taken
				// before the kill left little to replay): /health not catching_up is wrong only if
				// search still refuses after it.
				h, err := c2.GetHealthWithResponse(ctx(t), &crispy.GetHealthParams{})
				if err != nil {
					t.Fatalf("/health: %v", err)
				}
				if strings.Contains(string(h.Body), "catching_up") {
					healthCatchingUp++
				} else if again, _ := findDoc(t, c2, id); again.StatusCode() == 503 {
					t.Errorf("/health says the index is complete while search answers catching_up: %s", h.Body)
				}
			}
			time.Sleep(20 * time.Millisecond) // as a client honouring retry-after would, sooner
		case r.StatusCode() == 200 && !found:
			partial++
		case r.StatusCode() != 200:
			t.Fatalf("search after the restart: %d %s", r.StatusCode(), r.Body)
		}
		if r.StatusCode() == 200 && i > 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("search never answered after the restart (%d refused)", refused)
		}
	}
	t.Logf("after kill -9: %d searches, %d partial 200s, %d refused as catching_up (/health said catching_up: %d)", searches, partial, refused, healthCatchingUp)
	if partial > 0 {
		t.Fatalf("%d of %d searches after the restart answered 200 without a document that exists", partial, searches)
	}
	var lost []string
	for i := range docs {
		if id := fmt.Sprintf("d%d", i); id != "d7" {
			if _, found := findDoc(t, c2, id); !found {
				lost = append(lost, id)
			}
		}
	}
	if _, found := findDoc(t, c2, "last"); !found {
		lost = append(lost, "last")
	}
	if r, found := findDoc(t, c2, "d7"); r.StatusCode() != 200 || found || strings.Contains(string(r.Body), "markerd7") {
		t.Fatalf("the document deleted before the kill: %d %s", r.StatusCode(), r.Body)
	}
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged ingests not searchable after kill -9: %v", len(lost), lost[:min(len(lost), 20)])
	}
}
