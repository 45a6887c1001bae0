package embedded_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/keystore/embedded"
	"github.com/crispy-enigma/crispy/platform/keystore/keystoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"

	"github.com/crispy-enigma/crispy/platform/erasuretest"
)

var (
	ctx  = context.Background()
	acme = tenant.MustParse("acme")
)

func open(t *testing.T, path string) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSuite(t *testing.T) {
	t.Parallel()
	keystoretest.Run(t, func(t *testing.T) keystore.Store {
		return open(t, filepath.Join(t.TempDir(), embedded.FileName))
	})
}

func TestKeysSurviveReopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), embedded.FileName)
	s := open(t, path)
	k, err := s.Create(ctx, acme, "session/1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(ctx, acme, "session/2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	defer s.Close()
	if got, err := s.Key(ctx, acme, "session/1"); err != nil || !bytes.Equal(got, k) {
		t.Fatalf("after reopen: %x, %v; want %x", got, err, k)
	}
	if _, err := s.Key(ctx, acme, "session/2"); !errors.Is(err, keystore.ErrDestroyed) {
		t.Fatalf("tombstone after reopen: %v, want ErrDestroyed", err)
	}
}

// A copy of the file taken while the store is open and never closed holds an acknowledged Create's
// complete record. (The copy reads the page cache, so this cannot tell whether it was fsynced:
// durability_internal_test.go checks that against what a Sync made durable.)
func TestOpenFileCopyHoldsAcknowledgedCreate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, embedded.FileName)
	s := open(t, path)
	defer s.Close()
	k, err := s.Create(ctx, acme, "session/crash")
	if err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(dir, "crashed.db")
	copyFile(t, path, crashed)
	c := open(t, crashed)
	defer c.Close()
	if got, err := c.Key(ctx, acme, "session/crash"); err != nil || !bytes.Equal(got, k) {
		t.Fatalf("after crash: %x, %v; want %x", got, err, k)
	}
}

// A record a crash cut short (half written) is zeroed on open, and the record next to it is intact;
// so is a file cut inside its last record.
func TestTornRecordsAreZeroedOnOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, embedded.FileName)
	s := open(t, path)
	k1, _ := s.Create(ctx, acme, "session/1")
	k2, _ := s.Create(ctx, acme, "session/2")
	_, _ = s.Create(ctx, acme, "session/3")
	s.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, k2) {
		t.Fatal("session/2's key is not in the file before the tear (the check below could not fail)")
	}
	// Record 1 (session/2): its first half overwritten with zeros, as a Destroy cut mid-write.
	rec := b[512+512 : 512+2*512]
	clear(rec[:256])
	// The file cut inside record 2 (session/3).
	b = b[:len(b)-100]
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	if got, err := s.Key(ctx, acme, "session/1"); err != nil || !bytes.Equal(got, k1) {
		t.Fatalf("intact neighbour: %x, %v", got, err)
	}
	for _, id := range []string{"session/2", "session/3"} {
		if _, err := s.Key(ctx, acme, id); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("torn %s: %v, want ErrNotFound", id, err)
		}
	}
	s.Close()
	b, _ = os.ReadFile(path)
	if bytes.Contains(b, k2) {
		t.Fatal("the torn record's key bytes are still in the file")
	}
}

// The point of the store: after Destroy and DestroyTenant the key bytes are in no file of the folder.
func TestDestroyedKeyBytesAreInNoFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, embedded.FileName)
	s := open(t, path)
	defer s.Close()
	bravo := tenant.MustParse("bravo")
	var gone, kept [][]byte
	for i := range 20 {
		k, err := s.Create(ctx, acme, fmt.Sprintf("session/%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			gone = append(gone, k)
			if err := s.Destroy(ctx, acme, fmt.Sprintf("session/%d", i)); err != nil {
				t.Fatal(err)
			}
		} else {
			kept = append(kept, k)
		}
		kb, err := s.Create(ctx, bravo, fmt.Sprintf("session/%d", i))
		if err != nil {
			t.Fatal(err)
		}
		gone = append(gone, kb)
	}
	if err := s.DestroyTenant(ctx, bravo); err != nil {
		t.Fatal(err)
	}
	for _, k := range gone {
		if len(erasuretest.FilesHolding(t, dir, k)) > 0 {
			t.Fatalf("destroyed key %x is still in the data folder", k)
		}
	}
	for _, k := range kept {
		if len(erasuretest.FilesHolding(t, dir, k)) == 0 {
			t.Fatalf("kept key %x is not in the file (the check above could not fail)", k)
		}
	}
	if len(erasuretest.FilesHolding(t, dir, []byte("bravo"))) > 0 {
		t.Fatal("a destroyed tenant's name is still in the file")
	}
}

// Free records are reused, so creating and destroying whole tenants does not grow the file.
func TestFreedRecordsAreReused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), embedded.FileName)
	s := open(t, path)
	defer s.Close()
	size := func() int64 {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	var first int64
	for round := range 3 {
		tt := tenant.MustParse(fmt.Sprintf("t%d", round))
		for i := range 10 {
			if _, err := s.Create(ctx, tt, fmt.Sprintf("document/%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		if round == 0 {
			first = size()
		} else if size() != first {
			t.Fatalf("round %d: file %d bytes, want %d (freed records reused)", round, size(), first)
		}
		if err := s.DestroyTenant(ctx, tt); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSecondProcessIsRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), embedded.FileName)
	s := open(t, path)
	defer s.Close()
	if _, err := embedded.Open(path); err == nil {
		t.Fatal("a second Open of a key store in use succeeded")
	}
}

func TestNotAKeyStoreIsRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), embedded.FileName)
	if err := os.WriteFile(path, bytes.Repeat([]byte("x"), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := embedded.Open(path); err == nil {
		t.Fatal("opened a file that is not a key store")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// The operator's read-only open works beside the live server (no lock), sees its keys, writes
// nothing; a missing file is an empty store.
func TestReadOnlyBesideALiveStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, embedded.FileName)
	s := open(t, path)
	defer s.Close()
	k, err := s.Create(ctx, acme, "session/1")
	if err != nil {
		t.Fatal(err)
	}
	r, err := embedded.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, err := r.Key(ctx, acme, "session/1"); err != nil || !bytes.Equal(got, k) {
		t.Fatalf("read-only Key: %x, %v", got, err)
	}
	if _, err := r.Create(ctx, acme, "session/2"); err == nil {
		t.Fatal("Create on a read-only store succeeded")
	}
	if err := r.Destroy(ctx, acme, "session/1"); err == nil {
		t.Fatal("Destroy on a read-only store succeeded")
	}
	empty, err := embedded.OpenReadOnly(filepath.Join(dir, "missing.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := empty.Key(ctx, acme, "session/1"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("missing file: %v, want ErrNotFound", err)
	}
}

// Concurrent Creates (group commit) each write a whole record of their own: a copy of the open file
// taken after they returned holds every key, distinct, in distinct records. (That each was fsynced
// before it returned is checked in durability_internal_test.go: a copy cannot tell.)
func TestConcurrentCreatesAreAllInTheFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, embedded.FileName)
	s := open(t, path)
	defer s.Close()
	keys := make([][]byte, 64)
	done := make(chan error, len(keys))
	for i := range keys {
		go func() {
			k, err := s.Create(ctx, acme, fmt.Sprintf("document/%d", i))
			keys[i] = k
			done <- err
		}()
	}
	for range keys {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	crashed := filepath.Join(dir, "crashed.db")
	copyFile(t, path, crashed)
	c := open(t, crashed)
	defer c.Close()
	seen := map[string]bool{}
	for i, k := range keys {
		got, err := c.Key(ctx, acme, fmt.Sprintf("document/%d", i))
		if err != nil || !bytes.Equal(got, k) || seen[string(k)] {
			t.Fatalf("key %d after the crash: %x, %v (want %x, distinct)", i, got, err, k)
		}
		seen[string(k)] = true
	}
}
