// Package openai is the provider for OpenAI-compatible HTTP APIs (OpenAI, Ollama, vLLM, llama.cpp
// server): POST {base}/chat/completions streamed (SSE "data:" chunks ending with "[DONE]", usage via
// stream_options.include_usage) or not, and speech through POST {base}/audio/speech.
package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/jsonwalk"
	"github.com/crispy-enigma/crispy/platform/tracing"
)

// Name is the provider name in model ids ("openai:gpt-4o-mini").
const Name = "openai"

// Config configures the provider.
type Config struct {
	// BaseURL is the API root including /v1 (default https://api.openai.com/v1). For Ollama:
	// http://localhost:11434/v1. A root without /v1 gets it appended.
	BaseURL string
	APIKey  string // sent as a Bearer token when set
	// SpeechModel and SpeechVoice are the defaults of Speak (tts-1, alloy).
	SpeechModel string
	SpeechVoice string
	// Client defaults to an http.Client without an overall timeout (the router bounds calls).
	Client *http.Client
	// Provider names the provider in the model ids of errors ("provider:model"; default Name): a
	// provider that speaks OpenAI's format through this adapter (Workers AI) keeps its own name.
	Provider string
}

// Provider calls an OpenAI-compatible API.
type Provider struct {
	base   string
	cfg    Config
	client *http.Client
	// chat is {base}/chat/completions, parsed once. rt is the provider's own transport when it
	// built its client (no Config.Client): a chat call is one POST that is never redirected, so it
	// goes to the transport directly rather than through http.Client.Do, which copies the headers
	// and the URL for redirects it will not follow (a tenth of a proxied call's allocations).
	chat *url.URL
	rt   http.RoundTripper
	auth []string // the Authorization header's value, built once
}

// New builds the provider.
func New(cfg Config) (*Provider, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://api.openai.com/v1"
	}
	base := strings.TrimRight(cfg.BaseURL, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("openai: base URL %q must start with http:// or https://", cfg.BaseURL)
	}
	if !strings.HasSuffix(base, "/v1") {
		base += "/v1"
	}
	if cfg.SpeechModel == "" {
		cfg.SpeechModel = "tts-1"
	}
	if cfg.Provider == "" {
		cfg.Provider = Name
	}
	if cfg.SpeechVoice == "" {
		cfg.SpeechVoice = "alloy"
	}
	chat, err := url.Parse(base + "/chat/completions")
	if err != nil {
		return nil, fmt.Errorf("openai: base URL %q: %w", cfg.BaseURL, err)
	}
	p := &Provider{base: base, cfg: cfg, client: cfg.Client, chat: chat}
	if p.client == nil {
		// A base URL with user:password@ keeps going through http.Client, which turns it into
		// basic auth (a transport alone would not).
		t := &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 64,
			IdleConnTimeout: 90 * time.Second, ResponseHeaderTimeout: 0}
		p.client = &http.Client{Transport: t}
		if chat.User == nil {
			p.rt = t
		}
	}
	if cfg.APIKey != "" {
		p.auth = []string{"Bearer " + cfg.APIKey}
	}
	return p, nil
}

type chatRequest struct {
	Model         string         `json:"model"`
	Messages      []ai.Message   `json:"messages"`
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options,omitempty"`
	MaxTokens     int            `json:"max_tokens,omitempty"`
	Temperature   float64        `json:"temperature,omitempty"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type usage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails *struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"completion_tokens_details"`
}

func (u *usage) toAI() ai.Usage {
	if u == nil {
		return ai.Usage{}
	}
	out := ai.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens, Reported: true}
	if out.TotalTokens == 0 {
		out.TotalTokens = out.PromptTokens + out.CompletionTokens
	}
	if u.PromptTokensDetails != nil {
		out.CachedTokens = u.PromptTokensDetails.CachedTokens
	}
	if u.CompletionTokensDetails != nil {
		out.ReasoningTokens = u.CompletionTokensDetails.ReasoningTokens
	}
	return out
}

type apiError struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    any    `json:"code"`
}

type chunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage    `json:"usage"`
	Error *apiError `json:"error"`
}

type completion struct {
	Choices []struct {
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
}

func (p *Provider) post(ctx context.Context, path string, body any, accept string) (*http.Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return p.postRaw(ctx, path, b, accept)
}

func (p *Provider) postRaw(ctx context.Context, path string, b []byte, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	tracing.InjectHTTP(ctx, req.Header) // W3C traceparent: the provider or gateway joins the request's trace
	req.Header.Set("Accept", accept)
	if p.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+p.cfg.APIKey)
	}
	return p.client.Do(req)
}

// Header values of a chat call, shared by every request (a transport only reads them).
var (
	jsonType  = []string{"application/json"}
	acceptSSE = []string{"text/event-stream"}
)

// postChat POSTs body to {base}/chat/completions: the request is built from the URL parsed once
// and a header map made at its final size, and sent with the provider's transport when it has one
// (see Provider.rt). GetBody lets the transport resend the body on a kept-alive connection that
// the server had closed before reading it, as http.NewRequest's would.
func (p *Provider) postChat(ctx context.Context, body []byte, stream bool) (*http.Response, error) {
	h := make(http.Header, 4)
	h["Content-Type"] = jsonType
	h["Accept"] = jsonType
	if stream {
		h["Accept"] = acceptSSE
	}
	if p.auth != nil {
		h["Authorization"] = p.auth
	}
	tracing.InjectHTTP(ctx, h) // W3C traceparent: the provider or gateway joins the request's trace
	req := (&http.Request{Method: http.MethodPost, URL: p.chat, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h, Host: p.chat.Host,
		Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		GetBody: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }}).WithContext(ctx)
	if p.rt == nil {
		return p.client.Do(req)
	}
	return p.rt.RoundTrip(req)
}

func (p *Provider) check(ctx context.Context, model string, resp *http.Response, err error) error {
	if err != nil {
		return ai.Classify(ctx, p.cfg.Provider+":"+model, err)
	}
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		msg := string(b)
		var env struct {
			Error apiError `json:"error"`
		}
		if json.Unmarshal(b, &env) == nil && env.Error.Message != "" {
			msg = env.Error.Message
		}
		e := ai.HTTPError(p.cfg.Provider+":"+model, resp.StatusCode, msg)
		e.RetryAfter = ai.RetryAfter(resp.Header, time.Now())
		return e
	}
	return nil
}

// Stream implements ai.Provider.
func (p *Provider) Stream(ctx context.Context, req ai.Request, emit ai.Emit) (ai.Result, error) {
	body := chatRequest{Model: req.Model, Messages: req.Messages, Stream: true, StreamOptions: &streamOptions{IncludeUsage: true},
		MaxTokens: req.MaxTokens, Temperature: req.Temperature}
	resp, err := p.post(ctx, "/chat/completions", body, "text/event-stream")
	if err := p.check(ctx, req.Model, resp, err); err != nil {
		return ai.Result{}, err
	}
	defer resp.Body.Close()
	var res ai.Result
	var b strings.Builder
	done, err := ai.ReadSSE(resp.Body, func(data []byte) error {
		var c chunk
		if err := json.Unmarshal(data, &c); err != nil {
			return &ai.Error{Model: p.cfg.Provider + ":" + req.Model, Reason: "error", Message: "undecodable stream chunk", Cause: err}
		}
		if c.Error != nil {
			return &ai.Error{Model: p.cfg.Provider + ":" + req.Model, Reason: "error", Message: c.Error.Message}
		}
		if c.Usage != nil {
			res.Usage = c.Usage.toAI()
		}
		for _, ch := range c.Choices {
			if ch.FinishReason != nil && *ch.FinishReason != "" {
				res.FinishReason = *ch.FinishReason
			}
			if ch.Delta.Content != "" {
				b.WriteString(ch.Delta.Content)
				if err := emit(ch.Delta.Content); err != nil {
					return err
				}
			}
		}
		return nil
	})
	res.Content = b.String()
	model := p.cfg.Provider + ":" + req.Model
	if errors.Is(err, ai.ErrStreamRead) {
		return res, ai.BodyEnded(ctx, model, err)
	}
	if err != nil {
		return res, ai.Classify(ctx, model, err)
	}
	// OpenAI ends a stream with "data: [DONE]" after the chunk carrying finish_reason; some
	// compatible servers send only one of the two. With neither, the stream was cut short (a proxy
	// timing out, the upstream giving up) and what arrived is not the whole answer.
	if !done && res.FinishReason == "" {
		return res, ai.Truncated(model, "the stream ended without data: [DONE] or a finish_reason", nil)
	}
	if done {
		drainEnd(resp.Body)
	}
	if res.FinishReason == "" {
		res.FinishReason = "stop"
	}
	return res, nil
}

// passChunk is what metering reads of a streamed chunk; the rest is passed on unread.
type passChunk struct {
	Choices []struct {
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage    `json:"usage"`
	Error *apiError `json:"error"`
}

// Pass implements ai.Passer: the client's request goes upstream as it was written (model set to
// req.Model) and the answer comes back as the upstream sent it, chunk by chunk, but for the usage
// chunk of a client that did not ask for it (the call asks for usage to meter it).
func (p *Provider) Pass(ctx context.Context, req ai.Request, out ai.Chunks) (ai.Result, error) {
	pr := req.Pass
	resp, err := p.postChat(ctx, pr.Body(req.Model), pr.Stream)
	if err := p.check(ctx, req.Model, resp, err); err != nil {
		return ai.Result{}, err
	}
	defer resp.Body.Close()
	model := p.cfg.Provider + ":" + req.Model
	if !pr.Stream {
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
		if err != nil {
			return ai.Result{}, ai.BodyEnded(ctx, model, fmt.Errorf("read completion: %w", err))
		}
		if len(body) > maxAnswer {
			return ai.Result{}, &ai.Error{Model: model, Reason: "error", Message: "completion larger than 64 MiB"}
		}
		c, err := meterChunk(body)
		if err != nil {
			return ai.Result{}, ai.BodyEnded(ctx, model, fmt.Errorf("decode completion: %w", err))
		}
		if c.err != nil {
			return ai.Result{}, &ai.Error{Model: model, Reason: "error", Message: c.err.Message}
		}
		res := ai.Result{Usage: c.usage.toAI(), FinishReason: "stop"}
		if c.finish != "" {
			res.FinishReason = c.finish
		}
		return res, out(body)
	}
	var res ai.Result
	done, err := ai.ReadSSE(&ai.FlushingReader{R: resp.Body, Flush: pr.Flush}, func(data []byte) error {
		if !needsReading(data) {
			return out(data) // a delta: nothing to meter in it
		}
		c, err := meterChunk(data)
		if err != nil {
			return &ai.Error{Model: model, Reason: "error", Message: "undecodable stream chunk", Cause: err}
		}
		if c.err != nil {
			return &ai.Error{Model: model, Reason: "error", Message: c.err.Message}
		}
		if c.usage != nil {
			res.Usage = c.usage.toAI()
			if c.choices == 0 && !pr.IncludeUsage {
				return nil
			}
		}
		if c.finish != "" {
			res.FinishReason = c.finish
		}
		return out(data)
	})
	if errors.Is(err, ai.ErrStreamRead) {
		return res, ai.BodyEnded(ctx, model, err)
	}
	if err != nil {
		return res, ai.Classify(ctx, model, err)
	}
	if !done && res.FinishReason == "" {
		return res, ai.Truncated(model, "the stream ended without data: [DONE] or a finish_reason", nil)
	}
	if done {
		drainEnd(resp.Body)
	}
	return res, nil
}

// drainWait bounds how long a call waits, after [DONE], for the end of the upstream's body.
const drainWait = 250 * time.Millisecond

// drainEnd reads what follows [DONE] (the chunked body's end, "0\r\n\r\n", which an upstream
// writes a moment after it, often in a packet of its own) so that the connection goes back to the
// pool: a response body closed before its end closes the connection, and the next call dials
// again (over a network, a handshake on its way to its first chunk). At most 4 KiB are read,
// within drainWait: an upstream that keeps the body open after [DONE] costs that wait, and its
// connection is dropped as before. Usually the end is there already and this is one Read.
func drainEnd(body io.ReadCloser) {
	t := time.AfterFunc(drainWait, func() { _ = body.Close() })
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 4<<10))
	t.Stop()
}

// needsReading reports whether a streamed chunk may hold what metering reads (a finish_reason, a
// usage, an error); the deltas in between carry "finish_reason":null and "usage":null, or nothing,
// and go out unread.
func needsReading(data []byte) bool {
	return bytes.Contains(data, []byte(`"error"`)) || valueOpens(data, `"finish_reason"`, '"') || valueOpens(data, `"usage"`, '{')
}

// valueOpens reports whether key occurs in data followed by a colon and then open, with any
// whitespace around the colon: one search per key, where matching each spacing separately took
// two (three searches a chunk instead of five).
func valueOpens(data []byte, key string, open byte) bool {
	for {
		i := bytes.Index(data, []byte(key))
		if i < 0 {
			return false
		}
		data = data[i+len(key):]
		j := jsonwalk.Space(data, 0)
		if j < len(data) && data[j] == ':' {
			if j = jsonwalk.Space(data, j+1); j < len(data) && data[j] == open {
				return true
			}
		}
	}
}

// maxAnswer bounds a non-streamed answer held in memory.
const maxAnswer = 64 << 20

// Complete implements ai.Provider.
func (p *Provider) Complete(ctx context.Context, req ai.Request) (ai.Result, error) {
	body := chatRequest{Model: req.Model, Messages: req.Messages, MaxTokens: req.MaxTokens, Temperature: req.Temperature}
	resp, err := p.post(ctx, "/chat/completions", body, "application/json")
	if err := p.check(ctx, req.Model, resp, err); err != nil {
		return ai.Result{}, err
	}
	defer resp.Body.Close()
	var c completion
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return ai.Result{}, ai.BodyEnded(ctx, p.cfg.Provider+":"+req.Model, fmt.Errorf("decode completion: %w", err))
	}
	if len(c.Choices) == 0 {
		return ai.Result{}, &ai.Error{Model: p.cfg.Provider + ":" + req.Model, Reason: "error", Message: "completion without choices"}
	}
	res := ai.Result{Content: c.Choices[0].Message.Content, FinishReason: c.Choices[0].FinishReason, Usage: c.Usage.toAI()}
	if res.FinishReason == "" {
		res.FinishReason = "stop"
	}
	return res, nil
}

type speechRequest struct {
	Model          string  `json:"model"`
	Input          string  `json:"input"`
	Voice          string  `json:"voice"`
	ResponseFormat string  `json:"response_format,omitempty"`
	Speed          float64 `json:"speed,omitempty"`
}

// Speak implements ai.Speaker with POST /audio/speech; the audio streams through as it arrives.
func (p *Provider) Speak(ctx context.Context, req ai.SpeechRequest) (ai.Audio, error) {
	format := req.Format
	if format == "" {
		format = "mp3"
	}
	voice := req.Voice
	if voice == "" {
		voice = p.cfg.SpeechVoice
	}
	body := speechRequest{Model: p.cfg.SpeechModel, Input: req.Text, Voice: voice, ResponseFormat: format, Speed: req.Speed}
	resp, err := p.post(ctx, "/audio/speech", body, "*/*")
	if err := p.check(ctx, p.cfg.SpeechModel, resp, err); err != nil {
		return ai.Audio{}, err
	}
	ct := resp.Header.Get("Content-Type")
	if ct == "" || !strings.HasPrefix(ct, "audio/") {
		ct = ai.ContentTypeOf(format)
	}
	return ai.Audio{Body: resp.Body, ContentType: ct}, nil
}
