package auditlog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestWitnessSinks(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	c := Sign(key, acme, 3, bytes.Repeat([]byte{7}, 32), time.Now())
	ctx := context.Background()

	f := &FileSink{Path: filepath.Join(t.TempDir(), "witness.jsonl")}
	for range 2 {
		if err := f.Push(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	fh, _ := os.Open(f.Path)
	defer fh.Close()
	n := 0
	for sc := bufio.NewScanner(fh); sc.Scan(); n++ {
		var got Checkpoint
		if err := json.Unmarshal(sc.Bytes(), &got); err != nil || got.Signature != c.Signature {
			t.Fatalf("line %d: %v %+v", n, err, got)
		}
	}
	if n != 2 {
		t.Fatalf("%d lines, want 2 (appended)", n)
	}

	// A webhook that fails once is retried; one that refuses (4xx) is not.
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var got Checkpoint
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil || got.Signature != c.Signature {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	w := &WebhookSink{URL: srv.URL, Client: srv.Client(), Backoff: time.Millisecond}
	if err := w.Push(ctx, c); err != nil || calls.Load() != 2 {
		t.Fatalf("webhook: %v after %d calls", err, calls.Load())
	}
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusForbidden)
	}))
	defer refusing.Close()
	calls.Store(0)
	if err := (&WebhookSink{URL: refusing.URL, Client: refusing.Client(), Backoff: time.Millisecond}).Push(ctx, c); err == nil || calls.Load() != 1 {
		t.Fatalf("a refusing witness: %v after %d calls", err, calls.Load())
	}
}
