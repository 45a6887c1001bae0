// Package httpapi mounts the retrieval endpoints of SPEC §2 on the Huma API.
package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/modules/retrieval/internal/app"
	platformhttp "github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

const tag = "retrieval"

// Chunking configures how a document is split.
type Chunking struct {
	MaxChunkSize int  `json:"maxChunkSize,omitempty" minimum:"100" maximum:"10000" doc:"Largest chunk, in characters (default 1000)" example:"1000"`
	Overlap      *int `json:"overlap,omitempty" minimum:"0" maximum:"9999" doc:"Characters shared by consecutive chunks (default 100; less than maxChunkSize)" example:"100"`
}

// IngestInput is POST /ingest.
type IngestInput struct {
	Body struct {
		DocID    string         `json:"docId" minLength:"1" maxLength:"256" doc:"The document's id within the tenant; re-ingesting it replaces its chunks" example:"handbook/vacation.md"`
		Text     string         `json:"text" minLength:"1" maxLength:"500000" doc:"The document's text (at most 500,000 characters)" example:"Employees get 25 days of paid vacation per year."`
		Title    string         `json:"title,omitempty" maxLength:"1000" doc:"Title shown with citations" example:"Vacation policy"`
		Source   string         `json:"source,omitempty" maxLength:"1000" doc:"Where the document came from" example:"handbook"`
		URL      string         `json:"url,omitempty" maxLength:"2048" doc:"Link shown with citations" example:"https://intranet.example.com/handbook/vacation"`
		Metadata map[string]any `json:"metadata,omitempty" doc:"Key-value pairs that search filters can match"`
		Chunking *Chunking      `json:"chunking,omitempty" doc:"How to split the text"`
	}
}

// Resolve adds the text rules the schema cannot say: the text is not blank, and the id, title,
// source and URL are one line each (the floor has refused invalid UTF-8 and control characters).
func (in *IngestInput) Resolve(huma.Context) []error {
	b := &in.Body
	return platformhttp.FieldErrors(platformhttp.Line("body.docId", b.DocID), platformhttp.Prose("body.text", b.Text),
		platformhttp.Line("body.title", b.Title), platformhttp.Line("body.source", b.Source), platformhttp.Line("body.url", b.URL))
}

// IngestOutput answers POST /ingest.
type IngestOutput struct {
	Body struct {
		Status           string `json:"status" example:"ingested"`
		DocID            string `json:"docId" example:"handbook/vacation.md"`
		Chunks           int    `json:"chunks" doc:"Number of chunks indexed" example:"3"`
		EmbeddingModelID string `json:"embeddingModelId" example:"builtin:hashed-ngram"`
		RequestID        string `json:"requestId"`
	}
}

// DeleteInput is DELETE /documents/{docId}.
type DeleteInput struct {
	DocID string `path:"docId" minLength:"1" maxLength:"256" doc:"The document's id (URL-encoded)" example:"handbook%2Fvacation.md"`
}

// Resolve refuses a blank document id: no document can have one.
func (in *DeleteInput) Resolve(huma.Context) []error {
	return platformhttp.FieldErrors(platformhttp.Line("path.docId", in.DocID))
}

// DeleteOutput answers DELETE /documents/{docId}.
type DeleteOutput struct {
	Body struct {
		Status    string `json:"status" example:"deleted"`
		DocID     string `json:"docId"`
		RequestID string `json:"requestId"`
	}
}

// DocumentOut is one document of GET /documents.
type DocumentOut struct {
	ID             string    `json:"id" example:"handbook/vacation.md"`
	Title          string    `json:"title" example:"Vacation policy"`
	Source         string    `json:"source" example:"handbook"`
	Status         string    `json:"status" enum:"indexed,pending,failed" doc:"indexed: searchable on this replica; pending: recorded, not yet in this replica's index; failed: its last ingest was accepted but could not be embedded or indexed (see reason; the version before it, if any, is still searchable and described by the other fields). An ingest or upload of it that succeeds makes it indexed again; DELETE drops it" example:"indexed"`
	Reason         string    `json:"reason,omitempty" doc:"Why its last ingest failed (status failed): the problem's code and message" example:"retrieval.embeddingsUnavailable: the embeddings provider is unavailable; try again later"`
	Chunks         int       `json:"chunks" example:"3"`
	ContentHash    string    `json:"contentHash" example:"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"`
	EmbeddingModel string    `json:"embeddingModel" example:"builtin:hashed-ngram"`
	Updated        time.Time `json:"updated" doc:"When its last ingest was recorded (status failed: when it failed)"`
}

func documentOut(d app.DocumentInfo) DocumentOut {
	return DocumentOut{ID: d.DocID, Title: d.Title, Source: d.Source, Status: d.Status, Reason: d.Reason, Chunks: d.Chunks, ContentHash: d.ContentHash,
		EmbeddingModel: d.EmbeddingModel, Updated: d.Updated}
}

// ListDocumentsInput is GET /documents.
type ListDocumentsInput struct {
	Limit  int    `query:"limit" minimum:"1" maximum:"200" doc:"Documents per page (default 50)" example:"50"`
	Cursor string `query:"cursor" maxLength:"256" doc:"The nextCursor of the previous page"`
}

// ListDocumentsOutput answers GET /documents.
type ListDocumentsOutput struct {
	Body struct {
		Documents  []DocumentOut `json:"documents" doc:"The tenant's documents, by id"`
		NextCursor string        `json:"nextCursor,omitempty" doc:"Pass as cursor for the next page; absent on the last"`
		RequestID  string        `json:"requestId"`
	}
}

// GetDocumentInput is GET /documents/{docId}.
type GetDocumentInput struct {
	DocID string `path:"docId" minLength:"1" maxLength:"256" doc:"The document's id (URL-encoded)" example:"handbook%2Fvacation.md"`
}

// GetDocumentOutput answers GET /documents/{docId}.
type GetDocumentOutput struct {
	Body struct {
		DocumentOut
		RequestID string `json:"requestId"`
	}
}

// SearchInput is POST /search.
type SearchInput struct {
	Body struct {
		Query    string         `json:"query" minLength:"1" maxLength:"2000" doc:"The question" example:"How many vacation days do I get?"`
		TopK     int            `json:"topK,omitempty" minimum:"1" maximum:"50" default:"5" doc:"Number of sources" example:"5"`
		Filter   map[string]any `json:"filter,omitempty" doc:"Only chunks whose metadata has these values; the key docId (a string or a list) selects documents"`
		MinScore *float64       `json:"minScore,omitempty" minimum:"-1" maximum:"1" doc:"Drop sources whose score (see sources[].score: it depends on the mode) is below this" example:"0.2"`
		Answer   *bool          `json:"answer,omitempty" doc:"Write an answer citing the sources that pass the mode's relevance threshold (default true); false returns sources only and calls no model unless rewrite is true"`
		Mode     string         `json:"mode,omitempty" enum:"hybrid,vector,lexical" doc:"hybrid: BM25 over the words and nearest neighbours of the embedding, fused by reciprocal rank; vector or lexical: one of them. Default: the tenant's search.mode, else hybrid" example:"hybrid"`
		Rewrite  *bool          `json:"rewrite,omitempty" doc:"Ask the tenant's chat model for a rewrite of the query, searched beside the query as typed (both rankings fused). Default: true when an answer is asked for, false otherwise"`
		Rerank   *bool          `json:"rerank,omitempty" doc:"false skips the tenant's reranker (models.rerank) for this request. Default: rerank when the tenant (or the server) has a reranker"`
	}
}

// Resolve refuses a query of only spaces with 422 naming the field.
func (in *SearchInput) Resolve(huma.Context) []error {
	return platformhttp.FieldErrors(platformhttp.Prose("body.query", in.Body.Query))
}

// SourceOut is one cited passage.
type SourceOut struct {
	ID      string  `json:"id" doc:"The chunk's id" example:"handbook/vacation.md#0"`
	DocID   string  `json:"docId" example:"handbook/vacation.md"`
	ChunkID string  `json:"chunkId" example:"handbook/vacation.md#0"`
	Title   string  `json:"title" example:"Vacation policy"`
	Source  string  `json:"source" example:"handbook"`
	URL     string  `json:"url"`
	Text    string  `json:"text"`
	Score   float64 `json:"score" doc:"What the mode ranked by: vector, cosine similarity; lexical, BM25 over the most the query's words can score (0 to 1); hybrid, the fused reciprocal-rank score over the best possible (0 to 1); reranked (see reranked), the reranker's relevance score (0 to 1)" example:"0.62"`
}

// SearchOutput answers POST /search.
type SearchOutput struct {
	Body struct {
		Answer     string      `json:"answer" doc:"The answer citing sources as [n] (empty when answer is false)"`
		Sources    []SourceOut `json:"sources" doc:"Numbered from 1 in this order"`
		Confidence float64     `json:"confidence" doc:"Mean of the top three scores, 0 to 1" example:"0.58"`
		FollowUps  []string    `json:"followUps" doc:"Up to 5 follow-up questions"`
		Cached     bool        `json:"cached" doc:"Served from the tenant's search cache"`
		Reranked   bool        `json:"reranked" doc:"The sources are in the reranker's order with its scores (false: no reranker, rerank false, or the reranker failed or timed out and the fused order was kept)"`
		RequestID  string      `json:"requestId"`
	}
}

// CacheMetricsInput is GET /metrics/search-cache.
type CacheMetricsInput struct {
	Period string `query:"period" doc:"1h, 24h (default), 7d or 30d" example:"24h"`
}

// CacheMetricsOutput answers GET /metrics/search-cache.
type CacheMetricsOutput struct {
	Body struct {
		Hits         int64   `json:"hits"`
		Misses       int64   `json:"misses"`
		HitRate      float64 `json:"hitRate" doc:"hits / totalChecks (0 when there were none)" example:"0.25"`
		AvgLatencyMs float64 `json:"avgLatencyMs" doc:"Mean search latency, cache hits included" example:"3.2"`
		TotalChecks  int64   `json:"totalChecks"`
		Period       string  `json:"period" example:"24h"`
		RequestID    string  `json:"requestId"`
	}
}

// problem documents an error answer in the API's one problem shape.
func problem(desc string) *huma.Response { return platformhttp.ProblemResponse(desc) }

// ingest is the answer of POST /ingest and of an upload (POST /documents): the document ingested.
func ingest(ctx context.Context, svc *app.Service, c app.Ingest) (*IngestOutput, error) {
	res, err := svc.Ingest(ctx, c)
	if err != nil {
		return nil, err
	}
	out := &IngestOutput{}
	out.Body.Status, out.Body.DocID, out.Body.Chunks, out.Body.EmbeddingModelID = "ingested", res.DocID, res.Chunks, res.EmbeddingModel
	out.Body.RequestID = request.From(ctx).ID
	return out, nil
}

// Register mounts the endpoints.
func Register(api huma.API, svc *app.Service) {
	registerOpenAI(api, svc)
	registerUpload(api, svc)
	huma.Register(api, huma.Operation{OperationID: "ingest-document", Method: http.MethodPost, Path: "/ingest", Tags: []string{tag},
		Summary: "Ingest a document",
		Description: "Chunks the text on paragraph, sentence and word boundaries, embeds the chunks with the tenant's embeddings model " +
			"and indexes them. Re-ingesting a docId replaces its chunks. Nothing is recorded when the embeddings provider or the " +
			"index refuses the document (409 when the tenant's index holds another embeddings model's vectors, 503 when one is " +
			"unavailable); if the index fails after the ingestion is recorded, the 503 says so and the document reaches the index " +
			"when it is back.",
		Responses: map[string]*huma.Response{
			"409": problem("The tenant's index was built with another embeddings model: run `crispy reindex` for the tenant"),
			"503": problem("The search index or embeddings provider is unavailable")}},
		func(ctx context.Context, in *IngestInput) (*IngestOutput, error) {
			t, _ := tenant.FromContext(ctx)
			c := app.Ingest{Tenant: t, DocID: in.Body.DocID, Text: in.Body.Text, Title: in.Body.Title, Source: in.Body.Source,
				URL: in.Body.URL, Metadata: in.Body.Metadata}
			if ch := in.Body.Chunking; ch != nil {
				c.MaxChunkSize, c.Overlap = ch.MaxChunkSize, ch.Overlap
			}
			return ingest(ctx, svc, c)
		})

	huma.Register(api, huma.Operation{OperationID: "delete-document", Method: http.MethodDelete, Path: "/documents/{docId}", Tags: []string{tag},
		Summary: "Delete a document", Description: "Removes the document's chunks from the tenant's index and erases its text: the data keys " +
			"it was encrypted with at rest are destroyed, so neither the event log, the index nor any copy of the data folder can give it back " +
			"(the deletion itself stays in the audit log). 404 if the tenant has no such document; 503, with nothing recorded, while the index " +
			"is unavailable; 503 saying the deletion was recorded if the key store is unavailable (the keys are destroyed once it answers)."},
		func(ctx context.Context, in *DeleteInput) (*DeleteOutput, error) {
			t, _ := tenant.FromContext(ctx)
			if err := svc.Delete(ctx, t, in.DocID); err != nil {
				return nil, err
			}
			out := &DeleteOutput{}
			out.Body.Status, out.Body.DocID, out.Body.RequestID = "deleted", in.DocID, request.From(ctx).ID
			return out, nil
		})

	huma.Register(api, huma.Operation{OperationID: "list-documents", Method: http.MethodGet, Path: "/documents", Tags: []string{tag},
		Summary: "List documents", Description: "The tenant's documents by id, a page at a time: title, source, whether this replica's index " +
			"has them yet (status), chunks, content hash, embeddings model and when they were last ingested."},
		func(ctx context.Context, in *ListDocumentsInput) (*ListDocumentsOutput, error) {
			t, _ := tenant.FromContext(ctx)
			docs, next, err := svc.ListDocuments(ctx, t, in.Limit, in.Cursor)
			if err != nil {
				return nil, err
			}
			out := &ListDocumentsOutput{}
			out.Body.Documents = make([]DocumentOut, len(docs))
			for i, d := range docs {
				out.Body.Documents[i] = documentOut(d)
			}
			out.Body.NextCursor, out.Body.RequestID = next, request.From(ctx).ID
			return out, nil
		})

	huma.Register(api, huma.Operation{OperationID: "get-document", Method: http.MethodGet, Path: "/documents/{docId}", Tags: []string{tag},
		Summary: "Get a document", Description: "One document of the tenant (as in GET /documents); 404 if the tenant has no such document."},
		func(ctx context.Context, in *GetDocumentInput) (*GetDocumentOutput, error) {
			t, _ := tenant.FromContext(ctx)
			d, err := svc.GetDocument(ctx, t, in.DocID)
			if err != nil {
				return nil, err
			}
			out := &GetDocumentOutput{}
			out.Body.DocumentOut, out.Body.RequestID = documentOut(d), request.From(ctx).ID
			return out, nil
		})

	huma.Register(api, huma.Operation{OperationID: "search-documents", Method: http.MethodPost, Path: "/search", Tags: []string{tag},
		Summary: "Search and answer",
		Description: "Retrieval-augmented answer: cache, optional query rewrite by the model (searched beside the query, never instead of it), " +
			"then hybrid search within the tenant (BM25 over the words and kNN over the embedding, fused by reciprocal rank; mode picks one), " +
			"then, when the tenant has a reranker (models.rerank), its reordering of the best 50 candidates (bounded by a timeout: on timeout or error the fused order is kept), " +
			"then an answer citing the numbered sources that pass the relevance threshold (the mode's, or the reranker's search.minRerankScore), with up to 5 follow-up questions; when none " +
			"passes, the answer says no relevant source was found and cites nothing. With the offline model the answer is extractive. " +
			"Questions about self-harm get a refusal with help resources instead of results. While the tenant's index catches up " +
			"with the event log after a start, the answer is 503 catching_up with retry-after, never a partial result.",
		Responses: map[string]*huma.Response{"503": problem("The tenant's index is catching up after a start (catching_up, with retry-after), " +
			"or the search index or embeddings provider is unavailable")}},
		func(ctx context.Context, in *SearchInput) (*SearchOutput, error) {
			t, _ := tenant.FromContext(ctx)
			answer := in.Body.Answer == nil || *in.Body.Answer
			res, err := svc.Search(ctx, app.Search{Tenant: t, Query: in.Body.Query, TopK: in.Body.TopK, Filter: in.Body.Filter,
				MinScore: in.Body.MinScore, Answer: answer, Mode: in.Body.Mode, Rewrite: in.Body.Rewrite, Rerank: in.Body.Rerank})
			if err != nil {
				return nil, err
			}
			out := &SearchOutput{}
			out.Body.Answer, out.Body.Confidence, out.Body.FollowUps, out.Body.Cached = res.Answer, res.Confidence, res.FollowUps, res.Cached
			out.Body.Reranked = res.Reranked
			out.Body.Sources = make([]SourceOut, len(res.Sources))
			for i, s := range res.Sources {
				out.Body.Sources[i] = SourceOut{ID: s.ID, DocID: s.DocID, ChunkID: s.ChunkID, Title: s.Title, Source: s.Source, URL: s.URL, Text: s.Text, Score: s.Score}
			}
			if out.Body.FollowUps == nil {
				out.Body.FollowUps = []string{}
			}
			out.Body.RequestID = request.From(ctx).ID
			return out, nil
		})

	huma.Register(api, huma.Operation{OperationID: "get-search-cache-metrics", Method: http.MethodGet, Path: "/metrics/search-cache", Tags: []string{tag},
		Summary: "Search cache metrics", Description: "This tenant's search cache hits and misses over the period, summed over every replica and kept across restarts."},
		func(ctx context.Context, in *CacheMetricsInput) (*CacheMetricsOutput, error) {
			t, _ := tenant.FromContext(ctx)
			period := in.Period
			if period == "" {
				period = "24h"
			}
			d, err := app.ParsePeriod(period)
			if err != nil {
				return nil, err
			}
			st, err := svc.Stats.Cache(t, svc.Now(), d)
			if err != nil {
				return nil, err
			}
			out := &CacheMetricsOutput{}
			b := &out.Body
			b.Hits, b.Misses, b.HitRate, b.AvgLatencyMs, b.TotalChecks, b.Period = st.Hits, st.Misses, st.HitRate, st.AvgLatencyMs, st.TotalChecks, period
			b.RequestID = request.From(ctx).ID
			return out, nil
		})
}
