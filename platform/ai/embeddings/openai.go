package embeddings

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/crispy-enigma/crispy/platform/ai/jsoncall"
	"github.com/crispy-enigma/crispy/platform/tracing"
)

// OpenAIConfig configures an OpenAI-compatible embeddings endpoint (OpenAI, Ollama, vLLM, llama.cpp
// server, LiteLLM …).
type OpenAIConfig struct {
	// BaseURL includes the API version (default https://api.openai.com/v1); requests go to
	// {BaseURL}/embeddings.
	BaseURL string
	APIKey  string
	Model   string // e.g. text-embedding-3-small
	// Dimensions, when set, is sent as "dimensions" (models that can shorten their vectors).
	Dimensions int
	// BatchSize is the most texts per request (default 256; OpenAI accepts up to 2048).
	BatchSize int
	// Timeout per request (default 30 s).
	Timeout time.Duration
	Client  *http.Client
}

// OpenAI embeds through POST {base}/embeddings.
type OpenAI struct {
	cfg OpenAIConfig
	dim atomic.Int64
}

// NewOpenAI checks cfg and builds the client.
func NewOpenAI(c OpenAIConfig) (*OpenAI, error) {
	if c.BaseURL == "" {
		c.BaseURL = "https://api.openai.com/v1"
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.Model == "" {
		return nil, fmt.Errorf("openai embeddings: a model is required")
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 256
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Client == nil {
		c.Client = &http.Client{}
	}
	o := &OpenAI{cfg: c}
	o.dim.Store(int64(c.Dimensions))
	return o, nil
}

func (o *OpenAI) Model() string  { return "openai:" + o.cfg.Model }
func (o *OpenAI) Dimension() int { return int(o.dim.Load()) }

type openAIRequest struct {
	Model          string   `json:"model"`
	Input          []string `json:"input"`
	EncodingFormat string   `json:"encoding_format"`
	Dimensions     int      `json:"dimensions,omitempty"`
}

type openAIResponse struct {
	Data []struct {
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	} `json:"data"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// Embed sends the texts in batches of BatchSize.
func (o *OpenAI) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, 0, len(texts))
	for _, b := range batches(len(texts), o.cfg.BatchSize) {
		vecs, err := o.batch(ctx, texts[b[0]:b[1]])
		if err != nil {
			return nil, err
		}
		out = append(out, vecs...)
	}
	if len(out) > 0 {
		o.dim.Store(int64(len(out[0])))
	}
	return out, nil
}

func (o *OpenAI) batch(ctx context.Context, texts []string) ([][]float32, error) {
	body, _ := json.Marshal(openAIRequest{Model: o.cfg.Model, Input: texts, EncodingFormat: "float", Dimensions: o.cfg.Dimensions})
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.cfg.BaseURL+"/embeddings", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("openai embeddings: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	tracing.InjectHTTP(ctx, req.Header) // W3C traceparent: the provider or gateway joins the request's trace
	if o.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+o.cfg.APIKey)
	}
	var r openAIResponse
	if err := jsoncall.Do(o.cfg.Client, req, &r, maxAnswer, ErrUnavailable); err != nil {
		return nil, fmt.Errorf("openai embeddings %s: %w", o.cfg.Model, err)
	}
	if len(r.Data) != len(texts) {
		return nil, fmt.Errorf("openai embeddings %s: %d vectors for %d texts", o.cfg.Model, len(r.Data), len(texts))
	}
	sort.Slice(r.Data, func(i, j int) bool { return r.Data[i].Index < r.Data[j].Index })
	out := make([][]float32, len(texts))
	for i, d := range r.Data {
		out[i] = d.Embedding
	}
	return out, nil
}
