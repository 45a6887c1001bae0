// Package rerank is the port to reranking models (cross-encoders that score a query against each of a
// list of passages) and its implementations: the `/rerank` endpoint that Cohere defined and that
// OpenAI-compatible servers (vLLM, Jina, Infinity, LiteLLM, text-embeddings-inference's Cohere route)
// copy — POST {base}/rerank {model, query, documents, top_n} answering {results: [{index,
// relevance_score}]} — and Cloudflare Workers AI's @cf/baai/bge-reranker-base (POST
// …/ai/run/{model} {query, contexts: [{text}], top_k} answering {result: {response: [{id, score}]}}).
//
// Scores are returned on one scale, [0, 1], higher meaning more relevant: Cohere's relevance_score
// already is; a cross-encoder's raw logit (what some servers and bge models return, any real number)
// is mapped through the logistic function, which is how the bge models' authors read their scores
// as a probability of relevance (FlagEmbedding's compute_score(normalize=True)).
package rerank

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/crispy-enigma/crispy/platform/ai/jsoncall"
	"github.com/crispy-enigma/crispy/platform/tracing"
)

// Reranker scores passages against a query.
type Reranker interface {
	// Rerank returns up to topN of docs, best first, each with its index in docs and its score in
	// [0, 1].
	Rerank(ctx context.Context, query string, docs []string, topN int) (Result, error)
	// Model is the "provider:model" id recorded with the call.
	Model() string
}

// Scored is one passage's place in a rerank.
type Scored struct {
	Index int     // in the docs given
	Score float64 // [0, 1]
}

// Result is a rerank's answer.
type Result struct {
	Ranked []Scored
	// Tokens is what the provider reports it counted (0: it reports none; the caller estimates).
	Tokens int
}

// ErrUnavailable marks a provider that could not be reached or answered 429 or a server error.
var ErrUnavailable = errors.New("rerank provider unavailable")

// maxAnswer bounds what is read of a provider's answer (a rerank answer is a score per candidate: a few KB; 16 MiB bounds a broken server).
const maxAnswer = 16 << 20

// ErrUnknownModel is returned by Resolve for a spec no configured provider serves.
var ErrUnknownModel = errors.New("unknown rerank model")

// None is the spec that turns reranking off (a tenant's models.rerank over a server default).
const None = "none"

// Config selects and configures the providers. Nothing here reads the environment.
type Config struct {
	// Default is the model of a tenant that names none ("": no reranking by default).
	Default string
	// OpenAI is the OpenAI-compatible server (openai:<model>): BaseURL includes the version
	// (default https://api.openai.com/v1, which has no /rerank: set the server's URL).
	OpenAI HTTPConfig
	// Cohere is Cohere's API (cohere:<model>, e.g. cohere:rerank-v3.5; default base
	// https://api.cohere.com/v2).
	Cohere    HTTPConfig
	WorkersAI WorkersAIConfig
}

// HTTPConfig configures a /rerank endpoint.
type HTTPConfig struct {
	BaseURL string
	APIKey  string
	Timeout time.Duration // per request, default 30 s (the caller's deadline is usually shorter)
	Client  *http.Client
}

// WorkersAIConfig configures Workers AI (workers-ai:@cf/baai/bge-reranker-base).
type WorkersAIConfig struct {
	AccountID string
	APIToken  string
	GatewayID string // when set: {GatewayURL}/{account}/{gateway}/workers-ai/{model}
	// BaseURL overrides https://api.cloudflare.com/client/v4; GatewayURL
	// https://gateway.ai.cloudflare.com/v1.
	BaseURL    string
	GatewayURL string
	Timeout    time.Duration
	Client     *http.Client
}

// Resolver builds rerankers from "provider:model" specs and caches them.
type Resolver struct {
	cfg   Config
	mu    sync.Mutex
	cache map[string]Reranker
}

// NewResolver checks cfg's default and returns a resolver.
func NewResolver(cfg Config) (*Resolver, error) {
	r := &Resolver{cfg: cfg, cache: map[string]Reranker{}}
	if cfg.Default != "" && cfg.Default != None {
		if _, err := r.Resolve(cfg.Default); err != nil {
			return nil, fmt.Errorf("default rerank model: %w", err)
		}
	}
	return r, nil
}

// Resolve returns the reranker of spec; "" is the server's default. It returns nil (and no error)
// when there is none: spec "none", or "" without a default.
func (r *Resolver) Resolve(spec string) (Reranker, error) {
	if spec == "" {
		spec = r.cfg.Default
	}
	if spec == "" || spec == None {
		return nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if x, ok := r.cache[spec]; ok {
		return x, nil
	}
	provider, model, ok := strings.Cut(spec, ":")
	if !ok || model == "" {
		return nil, fmt.Errorf("%w: %q is not provider:model", ErrUnknownModel, spec)
	}
	var x Reranker
	switch provider {
	case "openai":
		c := r.cfg.OpenAI
		if c.BaseURL == "" {
			c.BaseURL = "https://api.openai.com/v1"
		}
		x = newHTTP("openai", model, c)
	case "cohere":
		c := r.cfg.Cohere
		if c.BaseURL == "" {
			c.BaseURL = "https://api.cohere.com/v2"
		}
		x = newHTTP("cohere", model, c)
	case "workers-ai":
		if r.cfg.WorkersAI.AccountID == "" {
			return nil, fmt.Errorf("%w: %s needs a Workers AI account id", ErrUnknownModel, spec)
		}
		x = newWorkersAI(model, r.cfg.WorkersAI)
	default:
		return nil, fmt.Errorf("%w: provider %q (openai, cohere or workers-ai)", ErrUnknownModel, provider)
	}
	r.cache[spec] = x
	return x, nil
}

// httpReranker calls a Cohere-style /rerank endpoint.
type httpReranker struct {
	provider, model string
	cfg             HTTPConfig
}

func newHTTP(provider, model string, c HTTPConfig) *httpReranker {
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Client == nil {
		c.Client = &http.Client{}
	}
	return &httpReranker{provider: provider, model: model, cfg: c}
}

func (h *httpReranker) Model() string { return h.provider + ":" + h.model }

// httpRequest is the wire format Cohere documents (v1 and v2 alike) and compatible servers accept.
type httpRequest struct {
	Model     string   `json:"model"`
	Query     string   `json:"query"`
	Documents []string `json:"documents"`
	TopN      int      `json:"top_n"`
}

// httpResponse holds what the servers answer: results always; token usage where the server counts
// it (vLLM, Jina, Infinity: usage.total_tokens; Cohere bills search units, meta.billed_units, and
// reports tokens only in meta.tokens for some models).
type httpResponse struct {
	Results []struct {
		Index          int      `json:"index"`
		RelevanceScore *float64 `json:"relevance_score"`
	} `json:"results"`
	Usage *struct {
		TotalTokens int `json:"total_tokens"`
	} `json:"usage"`
	Meta *struct {
		Tokens *struct {
			InputTokens float64 `json:"input_tokens"`
		} `json:"tokens"`
	} `json:"meta"`
}

func (h *httpReranker) Rerank(ctx context.Context, query string, docs []string, topN int) (Result, error) {
	if len(docs) == 0 {
		return Result{}, nil
	}
	topN = clampTop(topN, len(docs))
	body, _ := json.Marshal(httpRequest{Model: h.model, Query: query, Documents: docs, TopN: topN})
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.BaseURL+"/rerank", bytes.NewReader(body))
	if err != nil {
		return Result{}, fmt.Errorf("%s rerank: %w", h.provider, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	tracing.InjectHTTP(ctx, req.Header)
	if h.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+h.cfg.APIKey)
	}
	var r httpResponse
	if err := jsoncall.Do(h.cfg.Client, req, &r, maxAnswer, ErrUnavailable); err != nil {
		return Result{}, fmt.Errorf("%s rerank %s: %w", h.provider, h.model, err)
	}
	out := Result{Ranked: make([]Scored, 0, len(r.Results))}
	for _, x := range r.Results {
		if x.RelevanceScore == nil {
			return Result{}, fmt.Errorf("%s rerank %s: a result without relevance_score", h.provider, h.model)
		}
		out.Ranked = append(out.Ranked, Scored{Index: x.Index, Score: *x.RelevanceScore})
	}
	switch {
	case r.Usage != nil && r.Usage.TotalTokens > 0:
		out.Tokens = r.Usage.TotalTokens
	case r.Meta != nil && r.Meta.Tokens != nil && r.Meta.Tokens.InputTokens > 0:
		out.Tokens = int(r.Meta.Tokens.InputTokens)
	}
	return finish(h.Model(), out, len(docs), topN)
}

// workersAI calls Workers AI's REST API.
type workersAI struct {
	model, url string
	cfg        WorkersAIConfig
}

func newWorkersAI(model string, c WorkersAIConfig) *workersAI {
	if c.BaseURL == "" {
		c.BaseURL = "https://api.cloudflare.com/client/v4"
	}
	if c.GatewayURL == "" {
		c.GatewayURL = "https://gateway.ai.cloudflare.com/v1"
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Client == nil {
		c.Client = &http.Client{}
	}
	u := strings.TrimRight(c.BaseURL, "/") + "/accounts/" + c.AccountID + "/ai/run/" + model
	if c.GatewayID != "" {
		u = strings.TrimRight(c.GatewayURL, "/") + "/" + c.AccountID + "/" + c.GatewayID + "/workers-ai/" + model
	}
	return &workersAI{model: model, url: u, cfg: c}
}

func (w *workersAI) Model() string { return "workers-ai:" + w.model }

type workersContext struct {
	Text string `json:"text"`
}

type workersRequest struct {
	Query    string           `json:"query"`
	Contexts []workersContext `json:"contexts"`
	TopK     int              `json:"top_k"`
}

type workersResponse struct {
	Result struct {
		Response []struct {
			ID    *int     `json:"id"`
			Score *float64 `json:"score"`
		} `json:"response"`
	} `json:"result"`
	Success bool `json:"success"`
	Errors  []struct {
		Message string `json:"message"`
	} `json:"errors"`
}

func (w *workersAI) Rerank(ctx context.Context, query string, docs []string, topN int) (Result, error) {
	if len(docs) == 0 {
		return Result{}, nil
	}
	topN = clampTop(topN, len(docs))
	cs := make([]workersContext, len(docs))
	for i, d := range docs {
		cs[i] = workersContext{d}
	}
	body, _ := json.Marshal(workersRequest{Query: query, Contexts: cs, TopK: topN})
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return Result{}, fmt.Errorf("workers-ai rerank: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	tracing.InjectHTTP(ctx, req.Header)
	if w.cfg.APIToken != "" {
		req.Header.Set("Authorization", "Bearer "+w.cfg.APIToken)
	}
	var r workersResponse
	if err := jsoncall.Do(w.cfg.Client, req, &r, maxAnswer, ErrUnavailable); err != nil {
		return Result{}, fmt.Errorf("workers-ai rerank %s: %w", w.model, err)
	}
	if !r.Success && len(r.Errors) > 0 {
		return Result{}, fmt.Errorf("workers-ai rerank %s: %s", w.model, r.Errors[0].Message)
	}
	out := Result{Ranked: make([]Scored, 0, len(r.Result.Response))}
	for _, x := range r.Result.Response {
		if x.ID == nil || x.Score == nil {
			return Result{}, fmt.Errorf("workers-ai rerank %s: a response without id or score", w.model)
		}
		out.Ranked = append(out.Ranked, Scored{Index: *x.ID, Score: *x.Score})
	}
	return finish(w.Model(), out, len(docs), topN)
}

func clampTop(topN, n int) int {
	if topN <= 0 || topN > n {
		return n
	}
	return topN
}

// finish checks a provider's answer (every index in range and used once), maps its scores onto
// [0, 1], sorts it best first and keeps topN: a server that ignores top_n or returns the input
// order must not reorder the caller's list wrongly.
func finish(model string, r Result, n, topN int) (Result, error) {
	seen := make(map[int]bool, len(r.Ranked))
	logits := false
	for _, x := range r.Ranked {
		if x.Index < 0 || x.Index >= n || seen[x.Index] {
			return Result{}, fmt.Errorf("%s rerank: index %d out of range or repeated (%d documents)", model, x.Index, n)
		}
		if math.IsNaN(x.Score) || math.IsInf(x.Score, 0) {
			return Result{}, fmt.Errorf("%s rerank: score %v of document %d", model, x.Score, x.Index)
		}
		seen[x.Index] = true
		if x.Score < 0 || x.Score > 1 {
			logits = true
		}
	}
	if logits {
		// Raw logits: the logistic function maps them onto [0, 1], order kept. Either all of a
		// call's scores are logits or none: a call mixing scales would not be comparable anyway.
		for i := range r.Ranked {
			r.Ranked[i].Score = 1 / (1 + math.Exp(-r.Ranked[i].Score))
		}
	}
	slices.SortStableFunc(r.Ranked, func(a, b Scored) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return 0
	})
	if len(r.Ranked) > topN {
		r.Ranked = r.Ranked[:topN]
	}
	return r, nil
}
