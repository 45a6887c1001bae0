package embedded_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// testdata/before-user/events.log was written by the store as it was before events had a user
// field (12 events of acme and beta, actors "user:alice", "system:test" and "anonymous", data
// with and without insignificant spaces). Such a data folder must still open, read and verify,
// and take new events that carry a user, without a byte of the old log changing.
func TestLogWrittenBeforeUserFieldStillVerifies(t *testing.T) {
	t.Parallel()
	old, err := os.ReadFile(filepath.Join("testdata", "before-user", "events.log"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "events.log"), old, 0o640); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir)
	beta := tenant.MustParse("beta")
	before := verifyAll(t, s, acme)
	if n := len(before) + len(verifyAll(t, s, beta)); n != 12 {
		t.Fatalf("the old log reads %d events, want 12", n)
	}
	for _, e := range before {
		if e.User != "" || e.Actor == "" {
			t.Fatalf("old event %s reads with actor %q, user %q", e.ID, e.Actor, e.User)
		}
	}

	ctx := request.With(context.Background(), request.Info{ID: "req-new", Actor: "key:0123456789ab", User: "alice"})
	st := tenant.MustStream(acme, "session", "a")
	if _, err := s.Append(ctx, st, eventstore.Any, eventstore.EventData{Type: "t.H", Data: []byte(`{"new":true}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	now, err := os.ReadFile(filepath.Join(dir, "events.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(now, old) {
		t.Fatal("appending changed the bytes of the old log")
	}

	s = open(t, dir)
	defer s.Close()
	after := verifyAll(t, s, acme) // the new event continues the old chain of t-acme.session-a
	last := after[len(after)-1]
	if len(after) != len(before)+1 || last.Actor != "key:0123456789ab" || last.User != "alice" || last.Revision != 6 {
		t.Fatalf("after reopening: %d events, last %+v", len(after), last)
	}
	for i := range before {
		if after[i].Hash != before[i].Hash || after[i].User != "" {
			t.Fatalf("old event %s changed: %+v", before[i].ID, after[i])
		}
	}
}
