// Package sealedindex keeps document text out of the search index at rest (issue 12 §4): what the
// index stores of a chunk (its text, title, source and URL) is one AES-GCM ciphertext under the data
// key of the document event it came from, sealed before the index's Upsert and opened after its
// Search. Deleting the document destroys its keys, after which nothing the index kept (embedded
// snapshot files, Elasticsearch documents and their translog) can be read back, whatever the engine
// still holds.
//
// Vectors, ids, tenant and metadata stay as they are: the engine needs them to search and filter.
// A hit whose key is gone is dropped (its document was deleted; the index follows shortly), never
// shown with empty text. The key id is given by the caller per write, not derived from the chunk:
// each ingest of a document has its own key (a destroyed key id is never given a key again).
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

// Codec seals chunks for the index and opens its hits.
type Codec struct {
	s      Sealer
	erased func(error) bool
}

// New returns a codec over s; erased tells the errors of a destroyed (or never created) key apart
// from failures.
func New(s Sealer, erased func(error) bool) *Codec { return &Codec{s: s, erased: erased} }

// payload is what is sealed of a chunk.
type payload struct {
	Text   string `json:"x"`
	Title  string `json:"t,omitempty"`
	Source string `json:"s,omitempty"`
	URL    string `json:"u,omitempty"`
}

// Seal returns chunks with their text, title, source and URL sealed under keyID as one text. When
// the key is already destroyed it returns no chunks and no error: the document was deleted after
// the chunks were embedded, and its deletion is (or will be) applied to the index anyway.
func (x *Codec) Seal(ctx context.Context, t tenant.ID, keyID string, chunks []search.Chunk) ([]search.Chunk, error) {
	out := make([]search.Chunk, 0, len(chunks))
	for _, c := range chunks {
		b, err := json.Marshal(payload{Text: c.Text, Title: c.Title, Source: c.Source, URL: c.URL})
		if err != nil {
			return nil, fmt.Errorf("seal chunk %s: %w", c.ChunkID, err)
		}
		ct, err := x.s.Seal(ctx, t, keyID, b)
		if err != nil {
			if x.erased(err) {
				return nil, nil
			}
			return nil, fmt.Errorf("seal chunk %s: %w", c.ChunkID, err)
		}
		c.Text = prefix + keyID + ":" + base64.RawURLEncoding.EncodeToString(ct)
		c.Title, c.Source, c.URL = "", "", ""
		out = append(out, c)
	}
	return out, nil
}

// Open returns hits with their sealed texts opened, without the hits whose key is gone. Texts that
// were never sealed (an index written before sealing) pass through.
func (x *Codec) Open(ctx context.Context, t tenant.ID, hits []search.Hit) ([]search.Hit, error) {
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
func (x *Codec) open(ctx context.Context, t tenant.ID, c *search.Chunk) (bool, error) {
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
