package auditlog

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// A checkpoint's note opens with golang.org/x/mod/sumdb/note (the signed-note format of the Go
// checksum database and C2SP tooling) under the published verifier key, and not under another key:
// third parties can check checkpoints without our code.
func TestCheckpointNoteOpensWithTheSignedNoteLibrary(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	c := Sign(key, acme, 42, bytes.Repeat([]byte{3}, 32), time.Now())
	v, err := note.NewVerifier(VerifierKey(key.Public().(ed25519.PublicKey)))
	if err != nil {
		t.Fatalf("the published verifier key does not parse: %v", err)
	}
	n, err := note.Open([]byte(c.Note), note.VerifierList(v))
	if err != nil {
		t.Fatalf("the note does not open: %v\n%s", err, c.Note)
	}
	if n.Text != string(c.Body()) {
		t.Fatalf("note text %q, want the signed body %q", n.Text, c.Body())
	}
	other, _ := note.NewVerifier(VerifierKey(newKey(t).Public().(ed25519.PublicKey)))
	if _, err := note.Open([]byte(c.Note), note.VerifierList(other)); err == nil {
		t.Fatal("the note opened under another key")
	}
}
