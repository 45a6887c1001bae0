package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy"
)

// A line of crispy replay is what crispy audit prove checks, for sealed events too: "data" is the
// event as stored (the sealed envelope the hash covers), the opened text is beside it in
// "content", and an erased event (its document deleted) still proves, with "erased":true and no
// content. Before, replay printed the opened data, whose hash does not recompute.
func TestReplayedSealedEventsProveOffline(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	cfg := embeddedConfig(data)
	cfg.AuditInterval = time.Hour
	apiKey, hash, err := tenancy.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tenants = filepath.Join(data, "tenants.yaml")
	if err := os.WriteFile(cfg.Tenants, []byte("tenants:\n  - id: demo\n    apiKeys:\n      - {hash: \""+hash+"\", scopes: [chat, search, ingest, tools, audit, usage]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, stop := serveApp(t, cfg, buildOptions{})
	do := func(method, path string, body []byte) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		req.Header.Set("x-tenant-id", "demo")
		req.Header.Set("x-api-key", apiKey)
		req.Header.Set("content-type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	const kept, gone = "zanzibar-budget-approved", "quokka-layoffs-planned"
	for id, text := range map[string]string{"memo": kept, "old": gone} {
		if c, b := do("POST", "/ingest", []byte(`{"docId":"`+id+`","title":"T","text":"The `+text+` note."}`)); c != 200 {
			t.Fatalf("ingest %s: %d %s", id, c, b)
		}
	}
	if c, b := do("DELETE", "/documents/old", nil); c != 200 {
		t.Fatalf("delete: %d %s", c, b)
	}
	c, b := do("GET", "/audit/events?type=retrieval.DocumentIngested", nil)
	var list struct {
		Events []struct {
			ID string `json:"id"`
		} `json:"events"`
	}
	if c != 200 || json.Unmarshal(b, &list) != nil || len(list.Events) != 2 {
		t.Fatalf("events %d %s", c, b)
	}
	root := t.TempDir()
	proofs := map[string]string{}
	for _, e := range list.Events {
		var pb []byte
		waitUntil(t, "the event is in the audit tree", func() bool {
			var c int
			c, pb = do("GET", "/audit/events/"+e.ID+"/proof", nil)
			return c == 200
		})
		proofs[e.ID] = filepath.Join(root, e.ID+".proof.json")
		if err := os.WriteFile(proofs[e.ID], pb, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, pk := do("GET", "/audit/public-key", nil)
	pub := filepath.Join(root, "pub.json")
	if err := os.WriteFile(pub, pk, 0o644); err != nil {
		t.Fatal(err)
	}
	stop()

	ctx := context.Background()
	env := func(string) (string, bool) { return "", false }
	var out, errb bytes.Buffer
	if err := run(ctx, []string{"replay", "--tenant", "demo", "--data-dir", data}, stdio{out: &out, err: &errb}, env); err != nil {
		t.Fatalf("replay: %v\n%s", err, errb.String())
	}
	prove := func(line []byte, id string) error {
		t.Helper()
		ev := filepath.Join(root, "event.json")
		if err := os.WriteFile(ev, line, 0o644); err != nil {
			t.Fatal(err)
		}
		var o, e bytes.Buffer
		err := run(ctx, []string{"audit", "prove", "--proof", proofs[id], "--event", ev, "--public-key", pub}, stdio{out: &o, err: &e}, env)
		if err == nil && !strings.HasPrefix(o.String(), "ok: event "+id) {
			t.Fatalf("prove said: %s", o.String())
		}
		return err
	}
	var sawKept, sawGone bool
	for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
		var ev struct {
			ID      string          `json:"id"`
			Type    string          `json:"type"`
			Data    json.RawMessage `json:"data"`
			Content json.RawMessage `json:"content"`
			Erased  bool            `json:"erased"`
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("replay line %s: %v", line, err)
		}
		if ev.Type != "retrieval.DocumentIngested" {
			continue
		}
		if !bytes.HasPrefix(ev.Data, []byte(`{"sealed":`)) || bytes.Contains(ev.Data, []byte(kept)) || bytes.Contains(ev.Data, []byte(gone)) {
			t.Fatalf("replayed data is not the stored sealed envelope: %s", ev.Data)
		}
		switch {
		case bytes.Contains(ev.Content, []byte(kept)) && !ev.Erased:
			sawKept = true
		case ev.Erased && ev.Content == nil:
			sawGone = true
		default:
			t.Fatalf("replay line neither opened nor erased: %s", line)
		}
		if err := prove(line, ev.ID); err != nil {
			t.Fatalf("crispy audit prove of the replayed line %s: %v", line, err)
		}
		// Control: the line with its opened content as data (what replay printed before) fails,
		// so the check above can fail.
		if ev.Content != nil {
			var m map[string]json.RawMessage
			_ = json.Unmarshal(line, &m)
			m["data"] = ev.Content
			bad, _ := json.Marshal(m)
			if err := prove(bad, ev.ID); err == nil || !strings.Contains(err.Error(), "does not hash") {
				t.Fatalf("prove of the opened data instead of the stored: %v", err)
			}
		}
	}
	if !sawKept || !sawGone {
		t.Fatalf("replay lacked the live (%v) or the erased (%v) document:\n%s", sawKept, sawGone, out.String())
	}
	if strings.Contains(out.String(), gone) {
		t.Fatalf("the deleted document's text is in the replay:\n%s", out.String())
	}
}
