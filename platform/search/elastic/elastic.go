// Package elastic is the Elasticsearch adapter of the search port (go-elasticsearch v8): one index per
// vector dimension ({prefix}-{dims}) shared by every tenant, a `tenant` keyword on every chunk that
// every query filters on server-side (knn.filter, delete-by-query, count), a dense_vector field with
// cosine similarity, and bulk indexing. Tenants' checkpoints (search.Index) are documents of their
// own index, {prefix}_checkpoints, whose name the chunk indexes' pattern {prefix}-* does not match.
package elastic

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/lexical"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Config configures the adapter.
type Config struct {
	// Addresses of the cluster (e.g. http://localhost:9200).
	Addresses []string
	Username  string
	Password  string
	APIKey    string
	// IndexPrefix names the indexes: {IndexPrefix}-{dims} (default crispy-chunks).
	IndexPrefix string
	// Refresh is the refresh policy of writes (default "wait_for": a search after an ingest sees it).
	Refresh string
	// NumCandidates per shard for knn (default max(100, 4k)).
	NumCandidates int
	// BulkSize is the most chunks per bulk request (default 500).
	BulkSize int
	// Transport replaces the HTTP transport (tests).
	Transport http.RoundTripper
	// MaxRetries on 502/503/504 (default 3; -1 disables retries).
	MaxRetries int
}

// Index is the Elasticsearch-backed search.Index.
type Index struct {
	cfg     Config
	es      *elasticsearch.Client
	mu      sync.Mutex
	created map[string]bool
	noRRF   atomic.Bool // the cluster refused the rrf retriever: hybrid fuses client-side
}

// New builds the adapter; it does not contact the cluster (the first call does).
func New(cfg Config) (*Index, error) {
	if len(cfg.Addresses) == 0 {
		return nil, errors.New("elastic: at least one address is required")
	}
	if cfg.IndexPrefix == "" {
		cfg.IndexPrefix = "crispy-chunks"
	}
	if cfg.Refresh == "" {
		cfg.Refresh = "wait_for"
	}
	if cfg.BulkSize <= 0 {
		cfg.BulkSize = 500
	}
	ec := elasticsearch.Config{Addresses: cfg.Addresses, Username: cfg.Username, Password: cfg.Password, APIKey: cfg.APIKey,
		Transport: cfg.Transport, MaxRetries: cfg.MaxRetries}
	if cfg.MaxRetries < 0 {
		ec.DisableRetry, ec.MaxRetries = true, 0
	}
	es, err := elasticsearch.NewClient(ec)
	if err != nil {
		return nil, fmt.Errorf("elastic: %w", err)
	}
	return &Index{cfg: cfg, es: es, created: map[string]bool{}}, nil
}

func (ix *Index) indexName(dims int) string { return ix.cfg.IndexPrefix + "-" + strconv.Itoa(dims) }
func (ix *Index) allIndexes() string        { return ix.cfg.IndexPrefix + "-*" }
func (ix *Index) checkpointIndex() string   { return ix.cfg.IndexPrefix + "_checkpoints" }

// checkpointMapping is the mapping of the checkpoints index: one document per tenant (its _id).
var checkpointMapping = map[string]any{"mappings": map[string]any{"dynamic": "false",
	"properties": map[string]any{"position": map[string]any{"type": "long", "index": false}}}}

// docID is the Elasticsearch _id of a chunk: a hash of tenant and chunk id, so two tenants' chunks
// with the same id never overwrite each other and any chunk id fits _id's 512 bytes.
func docID(t tenant.ID, chunkID string) string {
	h := sha256.Sum256([]byte(t.String() + "\x00" + chunkID))
	return hex.EncodeToString(h[:])
}

// Mapping is the index mapping for vectors of dims dimensions.
func Mapping(dims int) map[string]any {
	return map[string]any{
		"mappings": map[string]any{
			"dynamic": "false",
			"properties": map[string]any{
				"tenant":  map[string]any{"type": "keyword"},
				"docId":   map[string]any{"type": "keyword"},
				"chunkId": map[string]any{"type": "keyword"},
				// Kept in _source, never searched (the query is knn on the vector): not indexed,
				// so Elasticsearch builds no inverted index of them (with sealing on, they are
				// ciphertext: its terms would be noise).
				"text":     map[string]any{"type": "text", "index": false},
				"title":    map[string]any{"type": "text", "index": false},
				"source":   map[string]any{"type": "keyword"},
				"url":      map[string]any{"type": "keyword", "index": false},
				"metadata": map[string]any{"type": "flattened"},
				// The lexical half: the chunk's words as the English analyzer (platform/search/
				// lexical: stopwords, Porter 2 stemmer) left them before the text was sealed, each
				// as its 64-bit hash in hex, so the index holds no word of a sealed document; split
				// on spaces and scored by Elasticsearch's BM25 (k1 1.2, b 0.75, its defaults).
				"terms":  map[string]any{"type": "text", "analyzer": "whitespace", "norms": true},
				"vector": map[string]any{"type": "dense_vector", "dims": dims, "index": true, "similarity": "cosine"},
			},
		},
	}
}

type doc struct {
	Tenant   string            `json:"tenant"`
	DocID    string            `json:"docId"`
	ChunkID  string            `json:"chunkId"`
	Text     string            `json:"text"`
	Title    string            `json:"title,omitempty"`
	Source   string            `json:"source,omitempty"`
	URL      string            `json:"url,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Vector   []float32         `json:"vector,omitempty"`
	Terms    string            `json:"terms,omitempty"`
}

// hashedTerms is the terms field of analysed words: their hashes, space-separated, in order.
func hashedTerms(words []string) string {
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatUint(lexical.Hash(w), 16))
	}
	return b.String()
}

// call runs an esapi request and classifies failures: transport errors and 5xx are
// search.ErrUnavailable, other error statuses carry Elasticsearch's reason.
func call(ctx context.Context, what string, do func(context.Context) (*esapi.Response, error), ok ...int) ([]byte, int, error) {
	res, err := do(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, fmt.Errorf("elastic %s: %w", what, ctx.Err())
		}
		return nil, 0, fmt.Errorf("elastic %s: %w: %v", what, search.ErrUnavailable, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, res.StatusCode, fmt.Errorf("elastic %s: %w: read: %v", what, search.ErrUnavailable, err)
	}
	for _, s := range ok {
		if res.StatusCode == s {
			return b, res.StatusCode, nil
		}
	}
	if res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests {
		return b, res.StatusCode, fmt.Errorf("elastic %s: %w: HTTP %d: %s", what, search.ErrUnavailable, res.StatusCode, reason(b))
	}
	if res.IsError() {
		return b, res.StatusCode, fmt.Errorf("elastic %s: HTTP %d: %s", what, res.StatusCode, reason(b))
	}
	return b, res.StatusCode, nil
}

func reason(b []byte) string {
	var e struct {
		Error struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error.Type != "" {
		return e.Error.Type + ": " + e.Error.Reason
	}
	s := string(b)
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

// ensureIndex creates {prefix}-{dims} with the mapping unless it exists.
func (ix *Index) ensureIndex(ctx context.Context, dims int) error {
	return ix.ensure(ctx, ix.indexName(dims), Mapping(dims))
}

// ensure creates the index name with mapping unless it exists.
func (ix *Index) ensure(ctx context.Context, name string, mapping map[string]any) error {
	ix.mu.Lock()
	done := ix.created[name]
	ix.mu.Unlock()
	if done {
		return nil
	}
	_, status, err := call(ctx, "check index "+name, func(ctx context.Context) (*esapi.Response, error) {
		return esapi.IndicesExistsRequest{Index: []string{name}}.Do(ctx, ix.es)
	}, 200, 404)
	if err != nil {
		return err
	}
	if status == 404 {
		body, _ := json.Marshal(mapping)
		b, status, err := call(ctx, "create index "+name, func(ctx context.Context) (*esapi.Response, error) {
			return esapi.IndicesCreateRequest{Index: name, Body: bytes.NewReader(body)}.Do(ctx, ix.es)
		}, 200, 400)
		if err != nil {
			return err
		}
		if status == 400 && !strings.Contains(string(b), "resource_already_exists_exception") {
			return fmt.Errorf("elastic create index %s: %s", name, reason(b))
		}
	}
	ix.mu.Lock()
	ix.created[name] = true
	ix.mu.Unlock()
	return nil
}

// Upsert implements search.Index with bulk index requests.
func (ix *Index) Upsert(ctx context.Context, t tenant.ID, chunks []search.Chunk) error {
	if t.IsZero() {
		return errors.New("elastic: missing tenant")
	}
	if len(chunks) == 0 {
		return nil
	}
	dims := len(chunks[0].Vector)
	for _, c := range chunks {
		if len(c.Vector) != dims || dims == 0 {
			return fmt.Errorf("elastic upsert %s: %w: vectors of %d and %d dimensions in one call", c.ChunkID, search.ErrDimension, dims, len(c.Vector))
		}
	}
	if err := ix.ensureIndex(ctx, dims); err != nil {
		return err
	}
	name := ix.indexName(dims)
	for s := 0; s < len(chunks); s += ix.cfg.BulkSize {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		for _, c := range chunks[s:min(s+ix.cfg.BulkSize, len(chunks))] {
			_ = enc.Encode(map[string]any{"index": map[string]string{"_index": name, "_id": docID(t, c.ChunkID)}})
			_ = enc.Encode(doc{Tenant: t.String(), DocID: c.DocID, ChunkID: c.ChunkID, Text: c.Text, Title: c.Title, Source: c.Source,
				URL: c.URL, Metadata: c.Metadata, Vector: c.Vector, Terms: hashedTerms(c.Terms)})
		}
		b, _, err := call(ctx, "bulk", func(ctx context.Context) (*esapi.Response, error) {
			return esapi.BulkRequest{Body: bytes.NewReader(buf.Bytes()), Refresh: ix.cfg.Refresh}.Do(ctx, ix.es)
		})
		if err != nil {
			return err
		}
		var r struct {
			Errors bool `json:"errors"`
			Items  []map[string]struct {
				Status int `json:"status"`
				Error  struct {
					Type   string `json:"type"`
					Reason string `json:"reason"`
				} `json:"error"`
			} `json:"items"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("elastic bulk: decode answer: %w", err)
		}
		if r.Errors {
			for _, it := range r.Items {
				for _, res := range it {
					if res.Status >= 300 {
						return fmt.Errorf("elastic bulk: item failed with %d: %s: %s", res.Status, res.Error.Type, res.Error.Reason)
					}
				}
			}
		}
	}
	return nil
}

func (ix *Index) deleteByQuery(ctx context.Context, what string, filter []any) error {
	body, _ := json.Marshal(map[string]any{"query": map[string]any{"bool": map[string]any{"filter": filter}}})
	refresh, allow := true, true
	_, _, err := call(ctx, what, func(ctx context.Context) (*esapi.Response, error) {
		return esapi.DeleteByQueryRequest{Index: []string{ix.allIndexes()}, Body: bytes.NewReader(body), Refresh: &refresh,
			Conflicts: "proceed", AllowNoIndices: &allow}.Do(ctx, ix.es)
	})
	return err
}

// DeleteDoc implements search.Index with a delete-by-query on (tenant, docId).
func (ix *Index) DeleteDoc(ctx context.Context, t tenant.ID, docID string) error {
	if t.IsZero() {
		return errors.New("elastic: missing tenant")
	}
	return ix.deleteByQuery(ctx, "delete document", []any{term("tenant", t.String()), term("docId", docID)})
}

// DeleteTenant implements search.Index with a delete-by-query on the tenant, then the deletion of its
// checkpoint.
func (ix *Index) DeleteTenant(ctx context.Context, t tenant.ID) error {
	if t.IsZero() {
		return errors.New("elastic: missing tenant")
	}
	if err := ix.deleteByQuery(ctx, "delete tenant", []any{term("tenant", t.String())}); err != nil {
		return err
	}
	_, _, err := call(ctx, "delete checkpoint", func(ctx context.Context) (*esapi.Response, error) {
		return esapi.DeleteRequest{Index: ix.checkpointIndex(), DocumentID: t.String(), Refresh: "true"}.Do(ctx, ix.es)
	}, 200, 404)
	return err
}

// CheckWrite implements search.Index: the cluster must answer. Vectors of another dimension go to
// another index ({prefix}-{dims}), so Elasticsearch never refuses them.
func (ix *Index) CheckWrite(ctx context.Context, t tenant.ID, dim int) error {
	if t.IsZero() {
		return errors.New("elastic: missing tenant")
	}
	return ix.Ping(ctx)
}

// Checkpoint implements search.Index: the position stored in t's checkpoint document (0 when there
// is none). Gets by id are real-time in Elasticsearch: no refresh is needed.
func (ix *Index) Checkpoint(ctx context.Context, t tenant.ID) (uint64, error) {
	if t.IsZero() {
		return 0, errors.New("elastic: missing tenant")
	}
	b, status, err := call(ctx, "read checkpoint", func(ctx context.Context) (*esapi.Response, error) {
		return esapi.GetRequest{Index: ix.checkpointIndex(), DocumentID: t.String()}.Do(ctx, ix.es)
	}, 200, 404)
	if err != nil || status == 404 {
		return 0, err
	}
	var r struct {
		Found  bool `json:"found"`
		Source struct {
			Position uint64 `json:"position"`
		} `json:"_source"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("elastic read checkpoint: decode answer: %w", err)
	}
	return r.Source.Position, nil
}

// SetCheckpoint implements search.Index. Chunk writes are durable once acknowledged (with the
// default refresh policy, visible too), so the checkpoint can be written right away.
func (ix *Index) SetCheckpoint(ctx context.Context, t tenant.ID, pos uint64) error {
	if t.IsZero() {
		return errors.New("elastic: missing tenant")
	}
	if err := ix.ensure(ctx, ix.checkpointIndex(), checkpointMapping); err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{"position": pos})
	_, _, err := call(ctx, "write checkpoint", func(ctx context.Context) (*esapi.Response, error) {
		return esapi.IndexRequest{Index: ix.checkpointIndex(), DocumentID: t.String(), Body: bytes.NewReader(body)}.Do(ctx, ix.es)
	})
	return err
}

func term(field string, v any) map[string]any {
	return map[string]any{"term": map[string]any{field: v}}
}

// filters are t's and q's conditions, which every query carries inside it (knn.filter, bool.filter).
func filters(t tenant.ID, q search.Query) []any {
	filter := []any{term("tenant", t.String())}
	if len(q.Filter.DocIDs) > 0 {
		filter = append(filter, map[string]any{"terms": map[string]any{"docId": q.Filter.DocIDs}})
	}
	for _, k := range sortedKeys(q.Filter.Metadata) {
		filter = append(filter, term("metadata."+k, q.Filter.Metadata[k]))
	}
	return filter
}

// KNNBody is the search request for q within t: the tenant (and q's filter) sit in knn.filter, so
// Elasticsearch only ever considers t's vectors.
func (ix *Index) KNNBody(t tenant.ID, q search.Query) map[string]any {
	knn := ix.knn(t, q, q.K)
	if q.MinScore > -1 {
		knn["similarity"] = q.MinScore // raw cosine for the cosine similarity
	}
	return map[string]any{"knn": knn, "size": q.K, "_source": map[string]any{"excludes": []string{"vector"}}}
}

// knn is the knn clause for the k nearest of t's vectors.
func (ix *Index) knn(t tenant.ID, q search.Query, k int) map[string]any {
	nc := ix.cfg.NumCandidates
	if nc <= 0 {
		nc = max(100, 4*k)
	}
	return map[string]any{"field": "vector", "query_vector": q.Vector, "k": k, "num_candidates": max(nc, k), "filter": filters(t, q)}
}

// matchQuery is the lexical half: a match on the hashed terms, the tenant and q's filter in its
// bool.filter.
func matchQuery(t tenant.ID, q search.Query) map[string]any {
	return map[string]any{"bool": map[string]any{"must": map[string]any{"match": map[string]any{"terms": hashedTerms(q.Terms)}},
		"filter": filters(t, q)}}
}

// LexicalBody is the lexical search request for q within t (k hits).
func (ix *Index) LexicalBody(t tenant.ID, q search.Query, k int) map[string]any {
	return map[string]any{"query": matchQuery(t, q), "size": k, "_source": map[string]any{"excludes": []string{"vector"}}}
}

// HybridBody is the hybrid request for q within t: Elasticsearch's rrf retriever over the lexical
// match and the knn (each with the tenant inside it), fused at depth search.Depth(q.K) with q's rank
// constant. The hits' vectors come back so that each hit's cosine is known (a relevance threshold
// reads it; the fused score says nothing of relevance).
func (ix *Index) HybridBody(t tenant.ID, q search.Query) map[string]any {
	f := q.Fusion.WithDefaults()
	d := search.Depth(q.K)
	return map[string]any{
		"retriever": map[string]any{"rrf": map[string]any{
			"retrievers": []any{
				map[string]any{"standard": map[string]any{"query": matchQuery(t, q)}},
				map[string]any{"knn": ix.knn(t, q, d)},
			},
			"rank_window_size": d, "rank_constant": f.K}},
		"size": q.K,
	}
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && ks[j] < ks[j-1]; j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
	return ks
}

// Search implements search.Index: knn (vector), a match on the hashed terms (lexical), or both
// fused by reciprocal rank (hybrid): by the cluster's rrf retriever when the weights are equal and
// the cluster offers it (8.14+, with the license that enables it), else here, from the two
// searches, with search.FuseRRF. Scores: vector, the cosine; lexical, Elasticsearch's raw BM25 (it
// does not say the query's most, so it is not normalised: the lexical relevance threshold, made
// for the embedded engine's normalised score, passes every hit there); hybrid, the fused score
// over its best, with each hit's cosine as VectorScore.
func (ix *Index) Search(ctx context.Context, t tenant.ID, q search.Query) ([]search.Hit, error) {
	if t.IsZero() {
		return nil, errors.New("elastic: missing tenant")
	}
	if q.K <= 0 || len(q.Vector) == 0 && q.Mode != search.ModeLexical {
		return nil, nil
	}
	switch q.Mode {
	case search.ModeLexical:
		hs, err := ix.run(ctx, t, q, "lexical search", ix.LexicalBody(t, q, q.K), false)
		if err != nil {
			return nil, err
		}
		out := hs[:0]
		for _, h := range hs {
			h.LexicalScore = h.Score
			if h.Score >= q.MinScore {
				out = append(out, h)
			}
		}
		return out, nil
	case search.ModeHybrid:
		return ix.hybrid(ctx, t, q)
	}
	hs, err := ix.run(ctx, t, q, "search", ix.KNNBody(t, q), false)
	if err != nil {
		return nil, err
	}
	out := hs[:0]
	for _, h := range hs {
		h.Score = 2*h.Score - 1 // cosine similarity's _score is (1 + cos) / 2
		h.VectorScore = h.Score
		if h.Score >= q.MinScore {
			out = append(out, h)
		}
	}
	return out, nil
}

// hybrid runs q's two halves fused, on the cluster when it can.
func (ix *Index) hybrid(ctx context.Context, t tenant.ID, q search.Query) ([]search.Hit, error) {
	f := q.Fusion.WithDefaults()
	var hs []search.Hit
	if f.VectorWeight == f.LexicalWeight && !ix.noRRF.Load() {
		var err error
		hs, err = ix.run(ctx, t, q, "hybrid search", ix.HybridBody(t, q), true)
		if err == nil {
			best := 2 / float64(f.K+1)
			for i := range hs {
				hs[i].Score /= best
			}
		} else if errors.Is(err, errNoRRF) {
			ix.noRRF.Store(true) // an older cluster, or a license without it: fuse here from now on
			hs = nil
		} else {
			return nil, err
		}
	}
	if hs == nil {
		d := search.Depth(q.K)
		vec, err := ix.run(ctx, t, q, "search", map[string]any{"knn": ix.knn(t, q, d), "size": d, "_source": map[string]any{"excludes": []string{"vector"}}}, false)
		if err != nil {
			return nil, err
		}
		for i := range vec {
			vec[i].Score = 2*vec[i].Score - 1
			vec[i].VectorScore = vec[i].Score
		}
		lex, err := ix.run(ctx, t, q, "lexical search", ix.LexicalBody(t, q, d), false)
		if err != nil {
			return nil, err
		}
		for i := range lex {
			lex[i].LexicalScore = lex[i].Score
		}
		hs = search.FuseRRF(vec, lex, f, q.K)
	}
	out := hs[:0]
	for _, h := range hs {
		if h.Score >= q.MinScore {
			out = append(out, h)
		}
	}
	return out, nil
}

// errNoRRF: the cluster does not run the rrf retriever (unknown to it, or not licensed).
var errNoRRF = errors.New("elastic: the cluster does not offer the rrf retriever")

// run sends a search body to the index of q's dimension and decodes its hits (refusing any of
// another tenant). withVector reads each hit's vector back to set its cosine with q.Vector.
func (ix *Index) run(ctx context.Context, t tenant.ID, q search.Query, what string, body map[string]any, withVector bool) ([]search.Hit, error) {
	if !withVector {
		body["_source"] = map[string]any{"excludes": []string{"vector"}}
	}
	raw, _ := json.Marshal(body)
	index := ix.allIndexes()
	if len(q.Vector) > 0 {
		index = ix.indexName(len(q.Vector))
	}
	ignore := true
	b, status, err := call(ctx, what, func(ctx context.Context) (*esapi.Response, error) {
		return esapi.SearchRequest{Index: []string{index}, Body: bytes.NewReader(raw), IgnoreUnavailable: &ignore}.Do(ctx, ix.es)
	}, 200, 400, 403)
	if err != nil {
		return nil, err
	}
	if status != 200 {
		if _, isRRF := body["retriever"]; isRRF {
			return nil, fmt.Errorf("%w: HTTP %d: %s", errNoRRF, status, reason(b))
		}
		return nil, fmt.Errorf("elastic %s: HTTP %d: %s", what, status, reason(b))
	}
	var r struct {
		Hits struct {
			Hits []struct {
				Score  float64 `json:"_score"`
				Source doc     `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("elastic %s: decode answer: %w", what, err)
	}
	out := make([]search.Hit, 0, len(r.Hits.Hits))
	for _, h := range r.Hits.Hits {
		if h.Source.Tenant != t.String() { // cannot happen with the filters above; refuse rather than leak
			return nil, fmt.Errorf("elastic %s: a hit of another tenant came back; refusing the answer", what)
		}
		s := h.Source
		hit := search.Hit{Chunk: search.Chunk{DocID: s.DocID, ChunkID: s.ChunkID, Text: s.Text, Title: s.Title, Source: s.Source,
			URL: s.URL, Metadata: s.Metadata}, Score: h.Score}
		if withVector && len(s.Vector) == len(q.Vector) {
			hit.VectorScore = cosine(q.Vector, s.Vector)
		}
		out = append(out, hit)
	}
	return out, nil
}

func cosine(a, b []float32) float64 {
	var d, na, nb float64
	for i := range a {
		d += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return d / math.Sqrt(na*nb)
}

// Count implements search.Index.
func (ix *Index) Count(ctx context.Context, t tenant.ID) (int, error) {
	if t.IsZero() {
		return 0, errors.New("elastic: missing tenant")
	}
	body, _ := json.Marshal(map[string]any{"query": term("tenant", t.String())})
	allow := true
	b, _, err := call(ctx, "count", func(ctx context.Context) (*esapi.Response, error) {
		return esapi.CountRequest{Index: []string{ix.allIndexes()}, Body: bytes.NewReader(body), AllowNoIndices: &allow}.Do(ctx, ix.es)
	})
	if err != nil {
		return 0, err
	}
	var r struct {
		Count int `json:"count"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("elastic count: decode answer: %w", err)
	}
	return r.Count, nil
}

// Ping checks the cluster (for GET /health).
func (ix *Index) Ping(ctx context.Context) error {
	_, _, err := call(ctx, "ping", func(ctx context.Context) (*esapi.Response, error) {
		return esapi.InfoRequest{}.Do(ctx, ix.es)
	})
	return err
}

// Close implements search.Index; the client holds no resources worth releasing.
func (ix *Index) Close() error { return nil }

var _ search.Index = (*Index)(nil)
