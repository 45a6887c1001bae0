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
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/crispy-enigma/crispy/platform/search"
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
				"vector":   map[string]any{"type": "dense_vector", "dims": dims, "index": true, "similarity": "cosine"},
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
				URL: c.URL, Metadata: c.Metadata, Vector: c.Vector})
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

// KNNBody is the search request for q within t: the tenant (and q's filter) sit in knn.filter, so
// Elasticsearch only ever considers t's vectors.
func (ix *Index) KNNBody(t tenant.ID, q search.Query) map[string]any {
	filter := []any{term("tenant", t.String())}
	if len(q.Filter.DocIDs) > 0 {
		filter = append(filter, map[string]any{"terms": map[string]any{"docId": q.Filter.DocIDs}})
	}
	for _, k := range sortedKeys(q.Filter.Metadata) {
		filter = append(filter, term("metadata."+k, q.Filter.Metadata[k]))
	}
	nc := ix.cfg.NumCandidates
	if nc <= 0 {
		nc = max(100, 4*q.K)
	}
	knn := map[string]any{"field": "vector", "query_vector": q.Vector, "k": q.K, "num_candidates": max(nc, q.K), "filter": filter}
	if q.MinScore > -1 {
		knn["similarity"] = q.MinScore // raw cosine for the cosine similarity
	}
	return map[string]any{"knn": knn, "size": q.K, "_source": map[string]any{"excludes": []string{"vector"}}}
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

// Search implements search.Index with a knn query.
func (ix *Index) Search(ctx context.Context, t tenant.ID, q search.Query) ([]search.Hit, error) {
	if t.IsZero() {
		return nil, errors.New("elastic: missing tenant")
	}
	if q.K <= 0 || len(q.Vector) == 0 {
		return nil, nil
	}
	body, _ := json.Marshal(ix.KNNBody(t, q))
	ignore := true
	b, _, err := call(ctx, "search", func(ctx context.Context) (*esapi.Response, error) {
		return esapi.SearchRequest{Index: []string{ix.indexName(len(q.Vector))}, Body: bytes.NewReader(body), IgnoreUnavailable: &ignore}.Do(ctx, ix.es)
	})
	if err != nil {
		return nil, err
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
		return nil, fmt.Errorf("elastic search: decode answer: %w", err)
	}
	out := make([]search.Hit, 0, len(r.Hits.Hits))
	for _, h := range r.Hits.Hits {
		if h.Source.Tenant != t.String() { // cannot happen with the filter above; refuse rather than leak
			return nil, fmt.Errorf("elastic search: a hit of another tenant came back; refusing the answer")
		}
		cos := 2*h.Score - 1 // cosine similarity's _score is (1 + cos) / 2
		if cos < q.MinScore {
			continue
		}
		s := h.Source
		out = append(out, search.Hit{Chunk: search.Chunk{DocID: s.DocID, ChunkID: s.ChunkID, Text: s.Text, Title: s.Title, Source: s.Source,
			URL: s.URL, Metadata: s.Metadata}, Score: cos})
	}
	return out, nil
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
