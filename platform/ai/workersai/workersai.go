// Package workersai is the provider for Cloudflare Workers AI over REST:
// POST {base}/accounts/{account}/ai/run/{model} with a Bearer token, or through AI Gateway at
// {gateway}/{account}/{gatewayId}/workers-ai/{model}. Streaming answers are SSE
// `data: {"response":"…"}` chunks ending with `data: [DONE]`; non-streaming answers are
// {"result":{"response":"…","usage":{…}},"success":true,"errors":[]}. Speech runs a speech model
// (default @cf/myshell-ai/melotts) that answers {"result":{"audio":"<base64 mp3>"}}.
//
// An OpenAI request (the /v1 endpoint, ai.Passer) goes instead to Workers AI's OpenAI-compatible
// endpoint, {base}/accounts/{account}/ai/v1/chat/completions (through AI Gateway:
// {gateway}/{account}/{gatewayId}/workers-ai/v1/chat/completions), as the client wrote it: tools,
// tool messages, response_format, stop and the rest reach the model, and its tool_calls come back;
// what a model cannot honour is Workers AI's own 400, passed on.
package workersai

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/openai"
	"github.com/crispy-enigma/crispy/platform/tracing"
)

// Name is the provider name in model ids ("workers-ai:@cf/meta/llama-3.1-8b-instruct").
const Name = "workers-ai"

// Config configures the provider.
type Config struct {
	AccountID string
	APIToken  string
	// GatewayID, when set, routes calls through AI Gateway.
	GatewayID string
	// BaseURL overrides https://api.cloudflare.com/client/v4 (tests); GatewayURL overrides
	// https://gateway.ai.cloudflare.com/v1.
	BaseURL    string
	GatewayURL string
	// SpeechModel is the model of Speak (default @cf/myshell-ai/melotts); SpeechLang its language (en).
	SpeechModel string
	SpeechLang  string
	Client      *http.Client
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.AccountID == "" || c.APIToken == "" {
		return fmt.Errorf("workersai: account id and API token are required")
	}
	if strings.ContainsAny(c.AccountID, "/?#") || strings.ContainsAny(c.GatewayID, "/?#") {
		return fmt.Errorf("workersai: account and gateway ids must not contain / ? #")
	}
	return nil
}

// Provider calls Workers AI.
type Provider struct {
	cfg    Config
	client *http.Client
	// compat is Workers AI's OpenAI-compatible endpoint, spoken by the OpenAI adapter: its wire
	// format is OpenAI's, so the pass-through, its metering and its errors are that adapter's.
	compat *openai.Provider
}

// New builds the provider.
func New(cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://api.cloudflare.com/client/v4"
	}
	if cfg.GatewayURL == "" {
		cfg.GatewayURL = "https://gateway.ai.cloudflare.com/v1"
	}
	if cfg.SpeechModel == "" {
		cfg.SpeechModel = "@cf/myshell-ai/melotts"
	}
	if cfg.SpeechLang == "" {
		cfg.SpeechLang = "en"
	}
	c := cfg.Client
	if c == nil {
		c = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}}
	}
	p := &Provider{cfg: cfg, client: c}
	compat, err := openai.New(openai.Config{BaseURL: p.compatBase(), APIKey: cfg.APIToken, Client: cfg.Client, Provider: Name})
	if err != nil {
		return nil, fmt.Errorf("workersai: %w", err)
	}
	p.compat = compat
	return p, nil
}

// compatBase is the root of Workers AI's OpenAI-compatible API, directly or through AI Gateway.
func (p *Provider) compatBase() string {
	if p.cfg.GatewayID != "" {
		return strings.TrimRight(p.cfg.GatewayURL, "/") + "/" + p.cfg.AccountID + "/" + p.cfg.GatewayID + "/workers-ai/v1"
	}
	return strings.TrimRight(p.cfg.BaseURL, "/") + "/accounts/" + p.cfg.AccountID + "/ai/v1"
}

// Pass implements ai.Passer through Workers AI's OpenAI-compatible endpoint (req.Model is the
// Workers AI model, "@cf/…", sent as the body's model); its errors name this provider.
func (p *Provider) Pass(ctx context.Context, req ai.Request, out ai.Chunks) (ai.Result, error) {
	return p.compat.Pass(ctx, req, out)
}

// URL is where a model runs: directly, or through AI Gateway when a gateway id is configured.
func (p *Provider) URL(model string) string {
	if p.cfg.GatewayID != "" {
		return strings.TrimRight(p.cfg.GatewayURL, "/") + "/" + p.cfg.AccountID + "/" + p.cfg.GatewayID + "/workers-ai/" + model
	}
	return strings.TrimRight(p.cfg.BaseURL, "/") + "/accounts/" + p.cfg.AccountID + "/ai/run/" + model
}

type runRequest struct {
	Messages    []ai.Message `json:"messages"`
	Stream      bool         `json:"stream,omitempty"`
	MaxTokens   int          `json:"max_tokens,omitempty"`
	Temperature float64      `json:"temperature,omitempty"`
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func (u *usage) toAI() ai.Usage {
	if u == nil {
		return ai.Usage{}
	}
	t := u.TotalTokens
	if t == 0 {
		t = u.PromptTokens + u.CompletionTokens
	}
	return ai.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: t, Reported: true}
}

type cfError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type envelope struct {
	Result struct {
		Response string `json:"response"`
		Usage    *usage `json:"usage"`
		Audio    string `json:"audio"`
	} `json:"result"`
	Success bool      `json:"success"`
	Errors  []cfError `json:"errors"`
}

func (p *Provider) post(ctx context.Context, model string, body any) (*http.Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL(model), bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	tracing.InjectHTTP(ctx, req.Header) // W3C traceparent: the provider or gateway joins the request's trace
	req.Header.Set("Authorization", "Bearer "+p.cfg.APIToken)
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, ai.Classify(ctx, Name+":"+model, err)
	}
	if resp.StatusCode/100 != 2 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		msg := string(raw)
		var env envelope
		if json.Unmarshal(raw, &env) == nil && len(env.Errors) > 0 {
			msg = env.Errors[0].Message
		}
		e := ai.HTTPError(Name+":"+model, resp.StatusCode, msg)
		e.RetryAfter = ai.RetryAfter(resp.Header, time.Now())
		return nil, e
	}
	return resp, nil
}

// Stream implements ai.Provider.
func (p *Provider) Stream(ctx context.Context, req ai.Request, emit ai.Emit) (ai.Result, error) {
	resp, err := p.post(ctx, req.Model, runRequest{Messages: req.Messages, Stream: true, MaxTokens: req.MaxTokens, Temperature: req.Temperature})
	if err != nil {
		return ai.Result{}, err
	}
	defer resp.Body.Close()
	var res ai.Result
	var b strings.Builder
	done, err := ai.ReadSSE(resp.Body, func(data []byte) error {
		var c struct {
			Response string `json:"response"`
			Usage    *usage `json:"usage"`
		}
		if err := json.Unmarshal(data, &c); err != nil {
			return &ai.Error{Model: Name + ":" + req.Model, Reason: "error", Message: "undecodable stream chunk", Cause: err}
		}
		if c.Usage != nil {
			res.Usage = c.Usage.toAI()
		}
		if c.Response != "" {
			b.WriteString(c.Response)
			return emit(c.Response)
		}
		return nil
	})
	res.Content = b.String()
	model := Name + ":" + req.Model
	if errors.Is(err, ai.ErrStreamRead) {
		return res, ai.BodyEnded(ctx, model, err)
	}
	if err != nil {
		return res, ai.Classify(ctx, model, err)
	}
	// Workers AI has no finish_reason: "data: [DONE]" is the only sign the answer is whole.
	if !done {
		return res, ai.Truncated(model, "the stream ended without data: [DONE]", nil)
	}
	res.FinishReason = "stop"
	return res, nil
}

// Complete implements ai.Provider.
func (p *Provider) Complete(ctx context.Context, req ai.Request) (ai.Result, error) {
	resp, err := p.post(ctx, req.Model, runRequest{Messages: req.Messages, MaxTokens: req.MaxTokens, Temperature: req.Temperature})
	if err != nil {
		return ai.Result{}, err
	}
	defer resp.Body.Close()
	var env envelope
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return ai.Result{}, ai.BodyEnded(ctx, Name+":"+req.Model, fmt.Errorf("decode answer: %w", err)) // cut off: truncated
	}
	if !env.Success && len(env.Errors) > 0 {
		return ai.Result{}, &ai.Error{Model: Name + ":" + req.Model, Reason: "error", Message: env.Errors[0].Message}
	}
	return ai.Result{Content: env.Result.Response, Usage: env.Result.Usage.toAI(), FinishReason: "stop"}, nil
}

// Speak implements ai.Speaker with the speech model. MeloTTS answers MP3 (base64 in JSON); a model
// that answers raw audio bytes is passed through.
func (p *Provider) Speak(ctx context.Context, req ai.SpeechRequest) (ai.Audio, error) {
	if req.Format != "" && req.Format != "mp3" {
		return ai.Audio{}, &ai.Error{Model: Name + ":" + p.cfg.SpeechModel, Reason: "bad_request",
			Message: fmt.Sprintf("the Workers AI speech model answers mp3 only, not %s", req.Format)}
	}
	resp, err := p.post(ctx, p.cfg.SpeechModel, map[string]string{"prompt": req.Text, "lang": p.cfg.SpeechLang})
	if err != nil {
		return ai.Audio{}, err
	}
	ct := resp.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "audio/") {
		return ai.Audio{Body: resp.Body, ContentType: ct}, nil
	}
	defer resp.Body.Close()
	var env envelope
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return ai.Audio{}, ai.Classify(ctx, Name+":"+p.cfg.SpeechModel, fmt.Errorf("decode speech: %w", err))
	}
	audio, err := base64.StdEncoding.DecodeString(env.Result.Audio)
	if err != nil || len(audio) == 0 {
		return ai.Audio{}, &ai.Error{Model: Name + ":" + p.cfg.SpeechModel, Reason: "error", Message: "speech answer without audio"}
	}
	return ai.Audio{Body: io.NopCloser(bytes.NewReader(audio)), ContentType: "audio/mpeg"}, nil
}
