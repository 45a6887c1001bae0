// Package sealedindex keeps document text out of the search index at rest (issue 12 §4): it wraps a
// search.Index so that what the index stores of a chunk (its text, title, source and URL) is one
// AES-GCM ciphertext under the document's data key, sealed on Upsert and opened on Search. Deleting
// the document destroys its key, after which nothing the index kept (embedded snapshot files,
// Elasticsearch documents and their translog) can be read back, whatever the engine still holds.
//
// Vectors, ids, tenant and metadata stay as they are: the engine needs them to search and filter.
// A hit whose key is gone is dropped (its document was deleted; the index follows shortly), never
// shown with empty text.
package sealedindex

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Sealer encrypts and decrypts under a tenant's named data key (platform/sealing implements it).
type Sealer interface {
	Seal(ctx context.Context, t tenant.ID, keyID string, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, t tenant.ID, keyID string, ciphertext []byte) ([]byte, error)
}

// prefix marks a sealed chunk text: prefix, the key id, ':', then the ciphertext in unpadded
// base64url. The key id travels with the value so that Search opens it with the key it was sealed
// with, whatever the document's current key is. Text without the prefix was written before sealing
// and is passed through (a reindex seals it).
const prefix = "crispy-sealed:1:"

// Index is the sealing search.Index.
type Index struct {
	next   search.Index
	s      Sealer
	keyOf  func(t tenant.ID, docID string) string
	erased func(error) bool
}

// New wraps next. keyOf names a document's data key; erased tells the errors of a destroyed (or
// never created) key apart from failures.
func New(next search.Index, s Sealer, keyOf func(t tenant.ID, docID string) string, erased func(error) bool) *Index {
	return &Index{next: next, s: s, keyOf: keyOf, erased: erased}
}

// payload is what is sealed of a chunk.
type payload struct {
	Text   string `json:"x"`
	Title  string `json:"t,omitempty"`
	Source string `json:"s,omitempty"`
	URL    string `json:"u,omitempty"`
}

// Upsert implements search.Index: every chunk's text, title, source and URL go in as one sealed
// text. Chunks whose key is already destroyed are left out: their document was deleted after they
// were embedded, and its deletion is (or will be) applied anyway.
func (x *Index) Upsert(ctx context.Context, t tenant.ID, chunks []search.Chunk) error {
	out := make([]search.Chunk, 0, len(chunks))
	for _, c := range chunks {
		b, err := json.Marshal(payload{Text: c.Text, Title: c.Title, Source: c.Source, URL: c.URL})
		if err != nil {
			return fmt.Errorf("seal chunk %s: %w", c.ChunkID, err)
		}
		kid := x.keyOf(t, c.DocID)
		ct, err := x.s.Seal(ctx, t, kid, b)
		if err != nil {
			if x.erased(err) {
				continue
			}
			return fmt.Errorf("seal chunk %s: %w", c.ChunkID, err)
		}
		c.Text = prefix + kid + ":" + base64.RawURLEncoding.EncodeToString(ct)
		c.Title, c.Source, c.URL = "", "", ""
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil
	}
	return x.next.Upsert(ctx, t, out)
}

// Search implements search.Index: hits come back opened; hits of an erased document are dropped.
func (x *Index) Search(ctx context.Context, t tenant.ID, q search.Query) ([]search.Hit, error) {
	hits, err := x.next.Search(ctx, t, q)
	if err != nil {
		return nil, err
	}
	out := hits[:0]
	for _, h := range hits {
		ok, err := x.open(ctx, t, &h.Chunk)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, h)
		}
	}
	return out, nil
}

// open replaces c's sealed text by its fields; false when c's key is gone.
func (x *Index) open(ctx context.Context, t tenant.ID, c *search.Chunk) (bool, error) {
	rest, sealed := strings.CutPrefix(c.Text, prefix)
	if !sealed {
		return true, nil
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return true, nil // not of our making: a text written before sealing that looks like it
	}
	kid := rest[:i]
	ct, err := base64.RawURLEncoding.DecodeString(rest[i+1:])
	if err != nil {
		return true, nil // as above
	}
	b, err := x.s.Open(ctx, t, kid, ct)
	if err != nil {
		if x.erased(err) {
			return false, nil
		}
		return false, fmt.Errorf("open chunk %s: %w", c.ChunkID, err)
	}
	var p payload
	if err := json.Unmarshal(b, &p); err != nil {
		return false, fmt.Errorf("open chunk %s: %w", c.ChunkID, err)
	}
	c.Text, c.Title, c.Source, c.URL = p.Text, p.Title, p.Source, p.URL
	return true, nil
}

// DeleteDoc implements search.Index.
func (x *Index) DeleteDoc(ctx context.Context, t tenant.ID, docID string) error {
	return x.next.DeleteDoc(ctx, t, docID)
}

// DeleteTenant implements search.Index.
func (x *Index) DeleteTenant(ctx context.Context, t tenant.ID) error {
	return x.next.DeleteTenant(ctx, t)
}

// Count implements search.Index.
func (x *Index) Count(ctx context.Context, t tenant.ID) (int, error) { return x.next.Count(ctx, t) }

// CheckWrite implements search.Index.
func (x *Index) CheckWrite(ctx context.Context, t tenant.ID, dim int) error {
	return x.next.CheckWrite(ctx, t, dim)
}

// Checkpoint implements search.Index.
func (x *Index) Checkpoint(ctx context.Context, t tenant.ID) (uint64, error) {
	return x.next.Checkpoint(ctx, t)
}

// SetCheckpoint implements search.Index.
func (x *Index) SetCheckpoint(ctx context.Context, t tenant.ID, pos uint64) error {
	return x.next.SetCheckpoint(ctx, t, pos)
}

// Close implements search.Index.
func (x *Index) Close() error { return x.next.Close() }

var _ search.Index = (*Index)(nil)
