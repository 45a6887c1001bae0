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
}

func (s *spy) Upsert(_ context.Context, t tenant.ID, cs []search.Chunk) error {
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

// sealed is an index behind the codec, as retrieval uses them.
type sealed struct {
	ix    *spy
	codec *sealedindex.Codec
	keys  *keys
}

func setup() *sealed {
	k := &keys{keys: map[string][]byte{}, gone: map[string]bool{}}
	return &sealed{ix: &spy{chunks: map[tenant.ID][]search.Chunk{}}, keys: k,
		codec: sealedindex.New(k, func(err error) bool { return errors.Is(err, errErased) })}
}

func (s *sealed) upsert(t *testing.T, tn tenant.ID, keyID string, cs ...search.Chunk) {
	t.Helper()
	out, err := s.codec.Seal(context.Background(), tn, keyID, cs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ix.Upsert(context.Background(), tn, out); err != nil {
		t.Fatal(err)
	}
}

func (s *sealed) search(t *testing.T, tn tenant.ID, f search.Filter) []search.Hit {
	t.Helper()
	hits, err := s.ix.Search(context.Background(), tn, search.Query{K: 5, MinScore: -1, Filter: f})
	if err != nil {
		t.Fatal(err)
	}
	if hits, err = s.codec.Open(context.Background(), tn, hits); err != nil {
		t.Fatal(err)
	}
	return hits
}

func TestTheIndexGetsCiphertextAndSearchGetsText(t *testing.T) {
	s := setup()
	acme := tenant.MustParse("acme")
	const marker = "zq-marker-7731"
	s.upsert(t, acme, "document/a/1", search.Chunk{DocID: "a", ChunkID: "a#0", Text: "text " + marker, Title: "title " + marker,
		Source: "src " + marker, URL: "https://x/" + marker, Metadata: map[string]string{"lang": "en"}, Vector: []float32{1, 0, 0}})
	s.upsert(t, acme, "document/b/1", search.Chunk{DocID: "b", ChunkID: "b#0", Text: "other", Vector: []float32{0, 1, 0}})
	for _, c := range s.ix.chunks[acme] {
		for _, f := range []string{c.Text, c.Title, c.Source, c.URL} {
			if strings.Contains(f, marker) || strings.Contains(f, "other") {
				t.Fatalf("the index was given plaintext: %+v", c)
			}
		}
	}
	if s.ix.chunks[acme][0].Metadata["lang"] != "en" || len(s.ix.chunks[acme][0].Vector) != 3 {
		t.Fatalf("metadata and vector must stay searchable: %+v", s.ix.chunks[acme][0])
	}
	hits := s.search(t, acme, search.Filter{Metadata: map[string]string{"lang": "en"}})
	if len(hits) != 1 || hits[0].Text != "text "+marker || hits[0].Title != "title "+marker || hits[0].Source != "src "+marker || hits[0].URL != "https://x/"+marker {
		t.Fatalf("hits %+v", hits)
	}

	// Once a's key is destroyed its chunk no longer comes back, b's still does.
	s.keys.destroy(acme, "document/a/1")
	if hits := s.search(t, acme, search.Filter{}); len(hits) != 1 || hits[0].DocID != "b" || hits[0].Text != "other" {
		t.Fatalf("hits after a's key was destroyed %+v", hits)
	}
	// Sealing under a destroyed key gives nothing to write (the document was deleted meanwhile).
	out, err := s.codec.Seal(context.Background(), acme, "document/a/1", []search.Chunk{{DocID: "a", ChunkID: "a#0", Text: "again"}})
	if err != nil || len(out) != 0 {
		t.Fatalf("sealed under a destroyed key: %+v, %v", out, err)
	}
}

func TestAnotherTenantsKeyDoesNotOpen(t *testing.T) {
	s := setup()
	acme, beta := tenant.MustParse("acme"), tenant.MustParse("beta")
	s.upsert(t, acme, "document/a/1", search.Chunk{DocID: "a", ChunkID: "a#0", Text: "acme secret", Vector: []float32{1, 0, 0}})
	s.upsert(t, beta, "document/a/1", search.Chunk{DocID: "a", ChunkID: "a#0", Text: "beta's own", Vector: []float32{1, 0, 0}})
	// acme's sealed text copied into beta's index (as a confused engine might) does not open with
	// beta's key of the same id: the search fails rather than show it (a ciphertext that does not
	// open with its key is an integrity fault, not an erasure).
	s.ix.chunks[beta] = append(s.ix.chunks[beta], s.ix.chunks[acme][0])
	hits, err := s.ix.Search(context.Background(), beta, search.Query{K: 5, MinScore: -1})
	if err != nil {
		t.Fatal(err)
	}
	if hits, err = s.codec.Open(context.Background(), beta, hits); err == nil {
		t.Fatalf("beta opened acme's chunk: %+v", hits)
	}
	if hits := s.search(t, acme, search.Filter{}); len(hits) != 1 || hits[0].Text != "acme secret" {
		t.Fatalf("acme's hits %+v", hits)
	}
}

func TestTextWrittenBeforeSealingPassesThrough(t *testing.T) {
	s := setup()
	acme := tenant.MustParse("acme")
	s.ix.chunks[acme] = []search.Chunk{
		{DocID: "old", ChunkID: "old#0", Text: "plain old text", Title: "Old"},
		{DocID: "odd", ChunkID: "odd#0", Text: "crispy-sealed:1:no key id"},
	}
	hits := s.search(t, acme, search.Filter{})
	if len(hits) != 2 || hits[0].Text != "plain old text" || hits[0].Title != "Old" || hits[1].Text != "crispy-sealed:1:no key id" {
		t.Fatalf("hits %+v", hits)
	}
}
