package auditlog

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	bolt "go.etcd.io/bbolt"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// refRoot is RFC 6962's MTH written out from its definition, to check the stored tree against.
func refRoot(leaves [][]byte) []byte {
	switch n := len(leaves); n {
	case 0:
		return Hasher.EmptyRoot()
	case 1:
		return leaves[0]
	default:
		k := 1
		for k*2 < n {
			k *= 2
		}
		return Hasher.HashChildren(refRoot(leaves[:k]), refRoot(leaves[k:]))
	}
}

func hashHex(i int) string {
	h := sha256.Sum256([]byte(fmt.Sprint(i)))
	return hex.EncodeToString(h[:])
}

// The stored tree's roots, inclusion and consistency proofs at every size agree with RFC 6962's
// definition and verify with the library's verifier; tenants' trees are separate.
func TestStoredTreeRootsAndProofs(t *testing.T) {
	t.Parallel()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a := newAppender()
	const n = 70
	var leaves [][]byte
	err = db.Update(func(tx *bolt.Tx) error {
		st, _ := tx.CreateBucketIfNotExists([]byte("state"))
		for i := range n {
			if err := a.Append(st, acme, fmt.Sprintf("id-%d", i), uint64(2*i+1), hashHex(i)); err != nil {
				return err
			}
			if err := a.Append(st, beta, fmt.Sprintf("b-%d", i), uint64(2*i+2), hashHex(1000+i)); err != nil {
				return err
			}
			l, _ := LeafHash(hashHex(i))
			leaves = append(leaves, l)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A rolled-back transaction leaves the appender's cached range ahead: the next append rebuilds it.
	_ = db.Update(func(tx *bolt.Tx) error {
		_ = a.Append(tx.Bucket([]byte("state")), acme, "rolled-back", 999, hashHex(999))
		return errors.New("roll back")
	})
	if err := db.Update(func(tx *bolt.Tx) error {
		l, _ := LeafHash(hashHex(n))
		leaves = append(leaves, l)
		return a.Append(tx.Bucket([]byte("state")), acme, fmt.Sprintf("id-%d", n), 999, hashHex(n))
	}); err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *bolt.Tx) error {
		tr := Open(tx.Bucket([]byte("state")), acme)
		if tr.Size() != n+1 {
			t.Fatalf("size %d", tr.Size())
		}
		for size := uint64(1); size <= n+1; size++ {
			root, err := tr.Root(size)
			if err != nil || !bytes.Equal(root, refRoot(leaves[:size])) {
				t.Fatalf("root at %d: %x %v", size, root, err)
			}
			for i := uint64(0); i < size; i += 7 {
				p, err := tr.Inclusion(i, size)
				if err != nil {
					t.Fatal(err)
				}
				if err := proof.VerifyInclusion(Hasher, i, size, leaves[i], p, root); err != nil {
					t.Fatalf("inclusion %d in %d: %v", i, size, err)
				}
			}
			for s1 := uint64(1); s1 <= size; s1 += 5 {
				p, err := tr.Consistency(s1, size)
				if err != nil {
					t.Fatal(err)
				}
				if err := proof.VerifyConsistency(Hasher, s1, size, p, refRoot(leaves[:s1]), root); err != nil {
					t.Fatalf("consistency %d->%d: %v", s1, size, err)
				}
			}
		}
		if idx, pos, err := tr.Locate("id-5"); err != nil || idx != 5 || pos != 11 {
			t.Fatalf("locate: %d %d %v", idx, pos, err)
		}
		if _, _, err := tr.Locate("b-5"); !errors.Is(err, ErrNotInTree) {
			t.Fatalf("acme's tree locates beta's event: %v", err)
		}
		if _, err := tr.Root(n + 2); err == nil {
			t.Fatal("a root beyond the tree")
		}
		sizes, _ := Tenants(tx.Bucket([]byte("state")))
		if sizes[acme] != n+1 || sizes[beta] != n {
			t.Fatalf("tenants %v", sizes)
		}
		return nil
	})
}

func TestCheckpointChecks(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	now := time.Now()
	c := Sign(key, acme, 3, bytes.Repeat([]byte{1}, 32), now)
	if err := c.Check(pub, acme, now); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(pub, beta, now); !errors.Is(err, ErrOtherTenant) {
		t.Fatalf("another tenant's checkpoint: %v", err)
	}
	edited := c
	edited.Size = 2
	if err := edited.Check(pub, acme, now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("edited size: %v", err)
	}
	if err := c.Check(newKey(t).Public().(ed25519.PublicKey), acme, now); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("another key: %v", err)
	}
	future := Sign(key, acme, 3, bytes.Repeat([]byte{1}, 32), now.Add(time.Hour))
	if err := future.Check(pub, acme, now); !errors.Is(err, ErrFromTheFuture) {
		t.Fatalf("future: %v", err)
	}
	sigless := c
	sigless.Signature = ""
	if err := sigless.Check(pub, acme, now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("no signature: %v", err)
	}
	// The note carries the same signature under the note key hash.
	if !bytes.Contains([]byte(c.Note), c.Body()) || c.KeyID != KeyID(pub) {
		t.Fatalf("note %q", c.Note)
	}
}

// Appends after the checkpoint verify, with a consistency proof from the checkpoint to the store.
func TestAppendsAfterACheckpointVerifyWithAConsistencyProof(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := eventstoretest.NewMemory()
	app := func(n int) {
		for i := range n {
			ed, _ := eventstore.NewEventData("test.Happened", map[string]int{"i": i})
			if _, err := s.Append(ctx, tenant.MustStream(acme, "session", fmt.Sprint(i%3)), eventstore.Any, ed); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Append(ctx, tenant.MustStream(beta, "session", "x"), eventstore.Any, ed); err != nil {
				t.Fatal(err)
			}
		}
	}
	app(10)
	key := newKey(t)
	size, root, err := Compute(ctx, s, acme)
	if err != nil || size != 10 {
		t.Fatal(size, err)
	}
	cp := Sign(key, acme, size, root, time.Now())
	app(7)
	all, _ := s.ReadTenant(ctx, acme, 0, 0)
	tree := storedTree(t, all)
	rep, err := Verify(ctx, s, VerifyOptions{Checkpoint: cp, PublicKey: key.Public().(ed25519.PublicKey), Tenant: acme, Now: time.Now(), Tree: tree})
	if err != nil || !rep.OK || rep.StoreSize != 17 || len(rep.ConsistencyProof) == 0 {
		t.Fatalf("%+v %v", rep, err)
	}
	// Beta cannot verify with acme's checkpoint.
	if _, err := Verify(ctx, s, VerifyOptions{Checkpoint: cp, PublicKey: key.Public().(ed25519.PublicKey), Tenant: beta, Now: time.Now()}); !errors.Is(err, ErrOtherTenant) {
		t.Fatalf("beta with acme's checkpoint: %v", err)
	}
}
