package embeddings

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/crispy-enigma/crispy/platform/ai/jsoncall"
	"github.com/crispy-enigma/crispy/platform/tracing"
)

// WorkersAIConfig configures Cloudflare Workers AI embedding models (@cf/baai/bge-small-en-v1.5,
// bge-base, bge-large, bge-m3 …).
type WorkersAIConfig struct {
	AccountID string
	APIToken  string
	// GatewayID, when set, routes through AI Gateway:
	// {GatewayURL}/{account}/{gateway}/workers-ai/{model}.
	GatewayID string
	// BaseURL overrides https://api.cloudflare.com/client/v4 (requests go to
	// {BaseURL}/accounts/{account}/ai/run/{model}).
	BaseURL string
	// GatewayURL overrides https://gateway.ai.cloudflare.com/v1.
	GatewayURL string
	Model      string
	// BatchSize is the most texts per request (default 100, the bge models' limit).
	BatchSize int
	Timeout   time.Duration
	Client    *http.Client
}

// WorkersAI embeds through Workers AI's REST API.
type WorkersAI struct {
	cfg WorkersAIConfig
	url string
	dim atomic.Int64
}

// NewWorkersAI checks cfg and builds the client.
func NewWorkersAI(c WorkersAIConfig) (*WorkersAI, error) {
	if c.AccountID == "" || c.Model == "" {
		return nil, fmt.Errorf("workers-ai embeddings: account id and model are required")
	}
	if c.BaseURL == "" {
		c.BaseURL = "https://api.cloudflare.com/client/v4"
	}
	if c.GatewayURL == "" {
		c.GatewayURL = "https://gateway.ai.cloudflare.com/v1"
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Client == nil {
		c.Client = &http.Client{}
	}
	u := strings.TrimRight(c.BaseURL, "/") + "/accounts/" + c.AccountID + "/ai/run/" + c.Model
	if c.GatewayID != "" {
		u = strings.TrimRight(c.GatewayURL, "/") + "/" + c.AccountID + "/" + c.GatewayID + "/workers-ai/" + c.Model
	}
	w := &WorkersAI{cfg: c, url: u}
	w.dim.Store(int64(knownDims[c.Model]))
	return w, nil
}

var knownDims = map[string]int{
	"@cf/baai/bge-small-en-v1.5": 384,
	"@cf/baai/bge-base-en-v1.5":  768,
	"@cf/baai/bge-large-en-v1.5": 1024,
	"@cf/baai/bge-m3":            1024,
}

func (w *WorkersAI) Model() string  { return "workers-ai:" + w.cfg.Model }
func (w *WorkersAI) Dimension() int { return int(w.dim.Load()) }

type workersAIResponse struct {
	Result struct {
		Shape []int       `json:"shape"`
		Data  [][]float32 `json:"data"`
	} `json:"result"`
	Success bool `json:"success"`
	Errors  []struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

// Embed sends {"text": [...]} in batches of BatchSize.
func (w *WorkersAI) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, 0, len(texts))
	for _, b := range batches(len(texts), w.cfg.BatchSize) {
		vecs, err := w.batch(ctx, texts[b[0]:b[1]])
		if err != nil {
			return nil, err
		}
		out = append(out, vecs...)
	}
	if len(out) > 0 {
		w.dim.Store(int64(len(out[0])))
	}
	return out, nil
}

func (w *WorkersAI) batch(ctx context.Context, texts []string) ([][]float32, error) {
	body, _ := json.Marshal(map[string]any{"text": texts})
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("workers-ai embeddings: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	tracing.InjectHTTP(ctx, req.Header) // W3C traceparent: the provider or gateway joins the request's trace
	if w.cfg.APIToken != "" {
		req.Header.Set("Authorization", "Bearer "+w.cfg.APIToken)
	}
	var r workersAIResponse
	if err := jsoncall.Do(w.cfg.Client, req, &r, maxAnswer, ErrUnavailable); err != nil {
		return nil, fmt.Errorf("workers-ai embeddings %s: %w", w.cfg.Model, err)
	}
	if !r.Success && len(r.Errors) > 0 {
		return nil, fmt.Errorf("workers-ai embeddings %s: %s", w.cfg.Model, r.Errors[0].Message)
	}
	if len(r.Result.Data) != len(texts) {
		return nil, fmt.Errorf("workers-ai embeddings %s: %d vectors for %d texts", w.cfg.Model, len(r.Result.Data), len(texts))
	}
	return r.Result.Data, nil
}
