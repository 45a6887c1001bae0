package sealedindex_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/modules/retrieval/internal/sealedindex"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

var errErased = errors.New("erased")

// keys is a Sealer over in-memory AES-GCM keys per (tenant, key id), created on first Seal.
type keys struct {
	mu   sync.Mutex
	keys map[string][]byte
	gone map[string]bool
}

func (k *keys) aead(t tenant.ID, id string, create bool) (cipher.AEAD, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	name := t.String() + "/" + id
	if k.gone[name] {
		return nil, errErased
	}
	key, ok := k.keys[name]
	if !ok {
		if !create {
			return nil, errErased
		}
		key = make([]byte, 32)
		_, _ = rand.Read(key)
		k.keys[name] = key
	}
	b, _ := aes.NewCipher(key)
	return cipher.NewGCM(b)
}

func (k *keys) Seal(_ context.Context, t tenant.ID, id string, pt []byte) ([]byte, error) {
	a, err := k.aead(t, id, true)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.NonceSize())
	_, _ = rand.Read(nonce)
	return a.Seal(nonce, nonce, pt, nil), nil
}

func (k *keys) Open(_ context.Context, t tenant.ID, id string, ct []byte) ([]byte, error) {
	a, err := k.aead(t, id, false)
	if err != nil {
		return nil, err
	}
	n := a.NonceSize()
	return a.Open(nil, ct[:n], ct[n:], nil)
}

func (k *keys) destroy(t tenant.ID, id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.keys, t.String()+"/"+id)
	k.gone[t.String()+"/"+id] = true
}

// spy is an index that keeps what it is given, per tenant, and returns all of a tenant's chunks
// that pass the filter (in the order written) on any search.
type spy struct {
	search.Index // the methods the tests do not call
	chunks       map[tenant.ID][]search.Chunk
	seen         []search.Chunk
}

func (s *spy) Upsert(_ context.Context, t tenant.ID, cs []search.Chunk) error {
	s.seen = append(s.seen, cs...)
	s.chunks[t] = append(s.chunks[t], cs...)
	return nil
}

func (s *spy) Search(_ context.Context, t tenant.ID, q search.Query) ([]search.Hit, error) {
	var out []search.Hit
	for _, c := range s.chunks[t] {
		if q.Filter.Matches(&c) {
			out = append(out, search.Hit{Chunk: c, Score: 1})
		}
	}
	return out, nil
}

func setup(t *testing.T) (*sealedindex.Index, *spy, *keys) {
	t.Helper()
	sp := &spy{chunks: map[tenant.ID][]search.Chunk{}}
	k := &keys{keys: map[string][]byte{}, gone: map[string]bool{}}
	keyOf := func(_ tenant.ID, docID string) string { return "document/" + docID }
	return sealedindex.New(sp, k, keyOf, func(err error) bool { return errors.Is(err, errErased) }), sp, k
}

func TestTheIndexGetsCiphertextAndSearchGetsText(t *testing.T) {
	ix, sp, k := setup(t)
	ctx := context.Background()
	acme := tenant.MustParse("acme")
	const marker = "zq-marker-7731"
	err := ix.Upsert(ctx, acme, []search.Chunk{
		{DocID: "a", ChunkID: "a#0", Text: "text " + marker, Title: "title " + marker, Source: "src " + marker, URL: "https://x/" + marker,
			Metadata: map[string]string{"lang": "en"}, Vector: []float32{1, 0, 0}},
		{DocID: "b", ChunkID: "b#0", Text: "other", Vector: []float32{0, 1, 0}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range sp.seen {
		for _, f := range []string{c.Text, c.Title, c.Source, c.URL} {
			if strings.Contains(f, marker) || strings.Contains(f, "other") {
				t.Fatalf("the index was given plaintext: %+v", c)
			}
		}
	}
	if sp.seen[0].Metadata["lang"] != "en" {
		t.Fatalf("metadata must stay filterable: %+v", sp.seen[0].Metadata)
	}
	hits, err := ix.Search(ctx, acme, search.Query{Vector: []float32{1, 0, 0}, K: 5, MinScore: -1, Filter: search.Filter{Metadata: map[string]string{"lang": "en"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 1 || hits[0].Text != "text "+marker || hits[0].Title != "title "+marker || hits[0].Source != "src "+marker || hits[0].URL != "https://x/"+marker {
		t.Fatalf("hits %+v", hits)
	}

	// Once a's key is destroyed its chunk no longer comes back, b's still does.
	k.destroy(acme, "document/a")
	hits, err = ix.Search(ctx, acme, search.Query{Vector: []float32{1, 0, 0}, K: 5, MinScore: -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 1 || hits[0].DocID != "b" || hits[0].Text != "other" {
		t.Fatalf("hits after a's key was destroyed %+v", hits)
	}
	// An upsert under a destroyed key writes nothing (the document was deleted meanwhile).
	sp.seen = nil
	if err := ix.Upsert(ctx, acme, []search.Chunk{{DocID: "a", ChunkID: "a#0", Text: "again", Vector: []float32{1, 0, 0}}}); err != nil {
		t.Fatal(err)
	}
	if len(sp.seen) != 0 {
		t.Fatalf("written under a destroyed key: %+v", sp.seen)
	}
}

func TestAnotherTenantsKeyDoesNotOpen(t *testing.T) {
	ix, sp, _ := setup(t)
	ctx := context.Background()
	acme, beta := tenant.MustParse("acme"), tenant.MustParse("beta")
	if err := ix.Upsert(ctx, acme, []search.Chunk{{DocID: "a", ChunkID: "a#0", Text: "acme secret", Vector: []float32{1, 0, 0}}}); err != nil {
		t.Fatal(err)
	}
	// beta's same document id has its own key: acme's sealed text copied into beta's index (as a
	// confused engine might) does not open under it.
	if err := sp.Upsert(ctx, beta, []search.Chunk{sp.seen[0]}); err != nil {
		t.Fatal(err)
	}
	hits, err := ix.Search(ctx, beta, search.Query{Vector: []float32{1, 0, 0}, K: 5, MinScore: -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 0 {
		t.Fatalf("beta opened acme's chunk: %+v", hits)
	}
}

func TestTextWrittenBeforeSealingPassesThrough(t *testing.T) {
	ix, sp, _ := setup(t)
	ctx := context.Background()
	acme := tenant.MustParse("acme")
	if err := sp.Upsert(ctx, acme, []search.Chunk{
		{DocID: "old", ChunkID: "old#0", Text: "plain old text", Title: "Old", Vector: []float32{1, 0, 0}},
		{DocID: "odd", ChunkID: "odd#0", Text: "crispy-sealed:1:no key id", Vector: []float32{0.9, 0.1, 0}},
	}); err != nil {
		t.Fatal(err)
	}
	hits, err := ix.Search(ctx, acme, search.Query{Vector: []float32{1, 0, 0}, K: 5, MinScore: -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 2 || hits[0].Text != "plain old text" || hits[0].Title != "Old" || hits[1].Text != "crispy-sealed:1:no key id" {
		t.Fatalf("hits %+v", hits)
	}
}
