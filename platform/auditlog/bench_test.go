package auditlog

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	bolt "go.etcd.io/bbolt"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// benchEvents is the size of the benchmarks' tenant log: CRISPY_AUDIT_BENCH_EVENTS (default 100,000;
// the README's numbers are at 1,000,000).
func benchEvents(b *testing.B) int {
	if v := os.Getenv("CRISPY_AUDIT_BENCH_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	return 100_000
}

// benchStore is an embedded store holding n events of tenant acme in 1,000 streams, kept under
// CRISPY_AUDIT_BENCH_DIR when set (building 1M events takes a while), else in a temporary folder.
func benchStore(b *testing.B, n int) string {
	b.Helper()
	dir := os.Getenv("CRISPY_AUDIT_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	dir = filepath.Join(dir, fmt.Sprintf("store-%d", n))
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		return dir
	}
	_ = os.RemoveAll(dir)
	s, err := embedded.Open(dir, embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	const perAppend = 500
	data := make([]eventstore.EventData, perAppend)
	for i := 0; i < n; i += perAppend {
		k := min(perAppend, n-i)
		for j := range k {
			data[j], _ = eventstore.NewEventData("conversation.UserMessageAdded", map[string]any{"sessionId": i / perAppend % 1000, "turnId": strconv.Itoa(i + j), "content": "a question of about the usual length for a chat turn, some sixty words or so would be more typical but this will do"})
		}
		if _, err := s.Append(ctx, tenant.MustStream(acme, "session", strconv.Itoa(i/perAppend%1000)), eventstore.Any, data[:k]...); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "done"), nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkVerifyAgainstACheckpoint: crispy verify --checkpoint's work on the embedded store opened
// read-only: every event read, its hash recomputed, chains checked, the tree recomputed and
// compared. Reports events/s.
func BenchmarkVerifyAgainstACheckpoint(b *testing.B) {
	n := benchEvents(b)
	dir := benchStore(b, n)
	s, err := embedded.OpenReadOnly(dir, embedded.Options{TempDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	size, root, err := Compute(ctx, s, acme)
	if err != nil || size != uint64(n) {
		b.Fatal(size, err)
	}
	key := newKeyB(b)
	cp := Sign(key, acme, size, root, time.Now())
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		rep, err := Verify(ctx, s, VerifyOptions{Checkpoint: cp, PublicKey: key.Public().(ed25519.PublicKey), Tenant: acme, Now: time.Now()})
		if err != nil || !rep.OK {
			b.Fatal(rep, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/time.Since(start).Seconds(), "events/s")
}

func newKeyB(b *testing.B) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

// treeFile builds a stored tree of n leaves of tenant acme as the projection does (transactions of
// commitEvery events), and returns the open file and the build's rate.
func treeFile(b *testing.B, n int) (*bolt.DB, float64) {
	b.Helper()
	// Left open when the benchmark ends (BenchmarkInclusionProof keeps it across b.N; on Linux the
	// removed folder's file stays readable).
	db, err := bolt.Open(filepath.Join(b.TempDir(), "tree.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	a := newAppender()
	const commitEvery = 4096 // bus.Config.CatchUpCommitEvery's default order of magnitude
	start := time.Now()
	for i := 0; i < n; i += commitEvery {
		if err := db.Update(func(tx *bolt.Tx) error {
			st, err := tx.CreateBucketIfNotExists([]byte("state"))
			if err != nil {
				return err
			}
			for j := i; j < min(n, i+commitEvery); j++ {
				if err := a.Append(st, acme, fmt.Sprintf("01900000-0000-7000-8000-%012d", j), uint64(j+1), hashHex(j)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	return db, float64(n) / time.Since(start).Seconds()
}

// BenchmarkTreeAppend: the tree projection's own cost per event (leaf and node writes, id index,
// in bbolt transactions with fsync'd commits), without the bus. Reports events/s.
func BenchmarkTreeAppend(b *testing.B) {
	n := benchEvents(b)
	var rate float64
	for range b.N {
		_, rate = treeFile(b, n)
	}
	b.ReportMetric(rate, "events/s")
}

var (
	proofTree  *bolt.DB
	proofTreeN int
)

// BenchmarkInclusionProof: an inclusion proof of a random event from the stored tree of n leaves
// (locate by id, root, proof) and its verification.
func BenchmarkInclusionProof(b *testing.B) {
	n := benchEvents(b)
	if proofTree == nil || proofTreeN != n {
		// Built once for every b.N the framework tries (1M leaves take a while).
		proofTree, _ = treeFile(b, n)
		proofTreeN = n
	}
	db := proofTree
	b.ResetTimer()
	for i := range b.N {
		j := (i * 7919) % n
		err := db.View(func(tx *bolt.Tx) error {
			tr := Open(tx.Bucket([]byte("state")), acme)
			idx, _, err := tr.Locate(fmt.Sprintf("01900000-0000-7000-8000-%012d", j))
			if err != nil {
				return err
			}
			root, err := tr.Root(tr.Size())
			if err != nil {
				return err
			}
			p, err := tr.Inclusion(idx, tr.Size())
			if err != nil {
				return err
			}
			leaf, _ := tr.Leaf(idx)
			return proof.VerifyInclusion(Hasher, idx, tr.Size(), leaf, p, root)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
