package app

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Embeddings cost money with a hosted model, so a document's chunks are embedded once per
// (model, text): the index keeps each chunk's vector with an embed key (search.Chunk.EmbedKey), and
// a re-ingest that changed a few chunks, a repair after a crash or a rebuild over kept index files
// embeds, and meters, only the texts whose vectors the index does not hold for the document.

// embedKeys are the embed keys of a document's texts (embedText of each chunk): a hash of the
// model id and the text (a model configured with another dimension gives vectors of another
// length, which are not reused: see embedReusing). None for a sealed document (issue 12): a hash of its plain
// text would stay in the index's files, readable after its key is destroyed.
func embedKeys(e embeddings.Embedder, ev events.DocumentIngested, texts []string) []string {
	if ev.Key != "" {
		return nil
	}
	keys := make([]string, len(texts))
	for i, text := range texts {
		h := sha256.New()
		h.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(e.Model()))))
		h.Write([]byte(e.Model()))
		h.Write([]byte(text))
		keys[i] = hex.EncodeToString(h.Sum(nil)[:16])
	}
	return keys
}

// embedReusing returns the vectors of texts (keys: their embed keys, nil for none): those the index
// holds for docID under the same key as they are, the others embedded with e in one call (metered
// with purpose unless it is ""). An index that cannot say what it holds costs an embedding of
// every text, never a refusal.
func (s *Service) embedReusing(ctx context.Context, t tenant.ID, e embeddings.Embedder, docID string, texts, keys []string, purpose string) ([][]float32, error) {
	var have map[string][]float32
	if vs, ok := s.Index.(search.VectorSource); ok && keys != nil {
		var err error
		if have, err = vs.Vectors(ctx, t, docID); err != nil {
			s.Log.WarnContext(ctx, "retrieval: the index could not hand back a document's vectors; embedding it whole", "tenant", t.String(), "docId", docID, "error", err)
			have = nil
		}
	}
	out := make([][]float32, len(texts))
	var todo []string
	var at []int
	for i, text := range texts {
		if keys != nil {
			if v, ok := have[keys[i]]; ok && (e.Dimension() == 0 || len(v) == e.Dimension()) {
				out[i] = v
				continue
			}
		}
		todo = append(todo, text)
		at = append(at, i)
	}
	if len(todo) == 0 {
		return out, nil
	}
	var vs [][]float32
	var err error
	if purpose == "" {
		vs, err = e.Embed(ctx, todo)
	} else {
		vs, err = s.embedMetered(ctx, t, e, purpose, todo)
	}
	if err != nil {
		return nil, err
	}
	if len(vs) != len(todo) {
		return vs, nil // the caller reports the count mismatch
	}
	if len(todo) < len(texts) && len(vs[0]) != len(out[firstReused(at, len(texts))]) {
		// The model now answers with another dimension than the vectors kept: embed it all.
		return s.embedReusing(ctx, t, e, docID, texts, nil, purpose)
	}
	for j, i := range at {
		out[i] = vs[j]
	}
	return out, nil
}

// firstReused is the first index below n that is not in at (sorted): a reused vector's place.
func firstReused(at []int, n int) int {
	for i := range n {
		if len(at) == 0 || at[0] != i {
			return i
		}
		at = at[1:]
	}
	return 0
}
