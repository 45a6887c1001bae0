package ai

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crispy-enigma/crispy/platform/jsonwalk"
)

// PassRequest is an OpenAI chat completions request as the client wrote it, split into its
// top-level fields, each kept as the client's bytes: an OpenAI-compatible provider sends them on
// unchanged but for "model" (the model tried) and, on a streamed call, stream_options.include_usage
// (on, so that the call is metered; the usage chunk is kept from a client that did not ask for it).
type PassRequest struct {
	// Fields are the body's top-level fields except "model" and "stream".
	Fields map[string]json.RawMessage
	Stream bool
	// IncludeUsage: the client asked for the usage chunk of a streamed answer.
	IncludeUsage bool
	// MaxTokens is max_completion_tokens or max_tokens, if the client set one (for spans and estimates).
	MaxTokens int
	// ID and Created name the answer of a provider that does not speak OpenAI's format, whose
	// chunks the router writes ("chatcmpl-…", unix seconds).
	ID      string
	Created int64
	// Flush, when set, sends on what the chunks written so far hold. A provider calls it when it
	// is about to wait for its upstream, so that chunks that arrived together leave together (one
	// write instead of one per chunk) and none waits while the upstream is quiet.
	Flush func()
}

// flush calls Flush when set.
func (p *PassRequest) flush() {
	if p.Flush != nil {
		p.Flush()
	}
}

// FlushingReader reads r, calling flush before each read of r: a buffered reader over it reads
// only once what it holds is used up, that is, just before it may wait.
type FlushingReader struct {
	R     io.Reader
	Flush func()
}

func (f *FlushingReader) Read(b []byte) (int, error) {
	if f.Flush != nil {
		f.Flush()
	}
	return f.R.Read(b)
}

// Chunks receives an OpenAI answer as it goes out: the data of each chunk of a streamed answer
// (without "data: " and the blank line), or the whole body of a non-streamed one.
type Chunks func(data []byte) error

// Passer is a provider that speaks OpenAI's chat completions format: it sends req.Pass's fields to
// req.Model and hands back what the upstream answered, chunk by chunk, reading only what metering
// needs (usage, finish_reason, an error). The Result's Content is empty.
type Passer interface {
	Pass(ctx context.Context, req Request, out Chunks) (Result, error)
}

// Body is the upstream request body of a pass-through call to model: the client's fields, model
// first, then the others in name order, each as the client sent it.
func (p *PassRequest) Body(model string) []byte {
	keys := make([]string, 0, len(p.Fields))
	size := 64 + len(model)
	for k, v := range p.Fields {
		keys = append(keys, k)
		size += len(k) + len(v) + 4
	}
	slices.Sort(keys)
	b := make([]byte, 0, size)
	b = append(b, `{"model":`...)
	b = strconv.AppendQuote(b, model)
	if p.Stream {
		b = append(b, `,"stream":true`...)
	}
	for _, k := range keys {
		v := p.Fields[k]
		if k == "stream_options" && p.Stream {
			v = withUsage(v)
		}
		b = append(b, ',')
		b = strconv.AppendQuote(b, k)
		b = append(b, ':')
		b = append(b, v...)
	}
	if _, ok := p.Fields["stream_options"]; !ok && p.Stream {
		b = append(b, `,"stream_options":{"include_usage":true}`...)
	}
	return append(b, '}')
}

// withUsage is the client's stream_options with include_usage on, its other options kept.
func withUsage(raw json.RawMessage) json.RawMessage {
	if usageOnly(raw) {
		return raw // what the SDKs send when asked for usage: nothing to change
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return json.RawMessage(`{"include_usage":true}`)
	}
	m["include_usage"] = json.RawMessage("true")
	out, err := json.Marshal(m)
	if err != nil {
		return json.RawMessage(`{"include_usage":true}`)
	}
	return out
}

// usageOnly reports whether stream_options is {"include_usage":true} and nothing else (spaces
// allowed), without decoding it.
func usageOnly(raw []byte) bool {
	n := 0
	end := jsonwalk.Object(raw, jsonwalk.Space(raw, 0), func(key []byte, vs, ve int) bool {
		n++
		return string(key) == "include_usage" && string(raw[vs:ve]) == "true"
	})
	return end >= 0 && jsonwalk.Space(raw, end) == len(raw) && n == 1
}

// SplitFields splits a JSON object into its top-level fields, each value a slice of body, not a
// copy (body must outlive the map). It is for a body already decoded once (validated): the walk
// does not check the values it skips. ok is false when body is not an object the walk can read (a
// key with an escape, bytes after the object), and the caller decodes it with encoding/json.
func SplitFields(body []byte) (map[string]json.RawMessage, bool) {
	fields := make(map[string]json.RawMessage, 8)
	end := jsonwalk.Object(body, jsonwalk.Space(body, 0), func(key []byte, vs, ve int) bool {
		fields[string(key)] = body[vs:ve:ve] // capped: an append to one value never writes into the next
		return true
	})
	if end < 0 || jsonwalk.Space(body, end) != len(body) {
		return nil, false
	}
	return fields, true
}

// ReasonUnsupported is the reason of a model that cannot honour a field of the request: the call is
// refused (400), or that model is skipped in a fallback chain.
const ReasonUnsupported = "unsupported"

// Unsupported is the refusal of model to honour the request field param.
func Unsupported(model, param, msg string) *Error {
	return &Error{Model: model, Reason: ReasonUnsupported, Param: param, Message: msg}
}

// synthFields are the fields a provider that does not speak OpenAI's format honours through
// Request: any other one is refused rather than dropped.
var synthFields = map[string]bool{"messages": true, "stream_options": true, "max_tokens": true, "max_completion_tokens": true,
	"temperature": true, "user": true, "n": true}

// Translate is the Request a provider without OpenAI's format runs for an OpenAI request to model
// (its "provider:model" name, for errors): text messages, max tokens and temperature. A field it
// cannot honour (tools, response_format, stop, logprobs, n above 1, a message that is
// not text, …) is refused with an unsupported error naming it: dropping it would answer another
// question than the one asked.
func (p *PassRequest) Translate(model string) (Request, error) {
	var req Request
	keys := make([]string, 0, len(p.Fields))
	for k := range p.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := p.Fields[k]
		if string(v) == "null" {
			continue
		}
		if !synthFields[k] {
			return req, Unsupported(model, k, "model "+model+" is called through a text-only adapter that cannot send "+k+
				" (send it to an OpenAI-compatible provider's model)")
		}
		switch k {
		case "n":
			if n, err := strconv.Atoi(string(v)); err != nil || n != 1 {
				return req, Unsupported(model, k, "model "+model+" answers one choice only (n must be 1)")
			}
		case "temperature":
			_ = json.Unmarshal(v, &req.Temperature)
		case "max_tokens", "max_completion_tokens":
			_ = json.Unmarshal(v, &req.MaxTokens)
		}
	}
	var msgs []struct {
		Role       string          `json:"role"`
		Content    json.RawMessage `json:"content"`
		ToolCalls  json.RawMessage `json:"tool_calls"`
		ToolCallID string          `json:"tool_call_id"`
	}
	if err := json.Unmarshal(p.Fields["messages"], &msgs); err != nil {
		return req, &Error{Model: model, Reason: "bad_request", Param: "messages", Message: "messages: " + err.Error()}
	}
	for i, m := range msgs {
		param := "messages[" + strconv.Itoa(i) + "]"
		if m.Role == "tool" || m.ToolCallID != "" || (len(m.ToolCalls) > 0 && string(m.ToolCalls) != "null") {
			return req, Unsupported(model, param, "model "+model+" does not support tool calls")
		}
		text, ok := TextOf(m.Content)
		if !ok {
			return req, Unsupported(model, param+".content", "model "+model+" reads text only (a string or text parts)")
		}
		role := m.Role
		if role == "developer" {
			role = RoleSystem
		}
		req.Messages = append(req.Messages, Message{Role: role, Content: text})
	}
	return req, nil
}

// TextOf is the text of an OpenAI message content: a string, or an array of text parts; ok is
// false for anything else (an image part, an object).
func TextOf(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return "", false
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type != "text" {
			return "", false
		}
		b.WriteString(p.Text)
	}
	return b.String(), true
}

// Pass runs an OpenAI request (req.Pass) on the first of models that answers, with the retries
// and fallbacks of Stream. A Passer sends it on as the client wrote it; another provider runs its
// translation and its answer is written as OpenAI chunks (or one chat.completion). A model that
// cannot honour a field is skipped; when none can, the first one's refusal is returned.
func (r *Router) Pass(ctx context.Context, models []ModelID, req Request, out Chunks) (Answer, error) {
	usable := make([]ModelID, 0, len(models))
	for i, m := range models {
		if p, ok := r.providers[m.Provider]; ok {
			if _, passes := p.(Passer); !passes {
				if _, err := req.Pass.Translate(m.String()); err != nil {
					if i == 0 {
						// The model asked for cannot honour the request: a fallback that could
						// would still answer another question than the one the client chose.
						return Answer{}, &FailedError{Model: m, Err: err}
					}
					continue // a fallback that cannot honour a field is skipped
				}
			}
		}
		usable = append(usable, m) // an unconfigured provider: route records it as no_provider
	}
	return r.route(ctx, usable, req, func(actx context.Context, p Provider, m ModelID, req Request, progress Progress) (Result, error) {
		if ps, ok := p.(Passer); ok {
			// One send for the whole call, not a closure per chunk.
			var chunk []byte
			send := func() error { return out(chunk) }
			return ps.Pass(actx, req, func(data []byte) error {
				chunk = data
				return progress(send)
			})
		}
		return synthesize(actx, p, m, req, progress, out)
	})
}

// synthesize runs a provider without OpenAI's format and writes its answer as OpenAI chunks.
func synthesize(ctx context.Context, p Provider, m ModelID, req Request, progress Progress, out Chunks) (Result, error) {
	pr := req.Pass
	model := m.String()
	tr, err := pr.Translate(model)
	if err != nil {
		return Result{}, err
	}
	tr.Model = req.Model
	head := func(b []byte, object string) []byte {
		b = append(b, `{"id":`...)
		b = strconv.AppendQuote(b, pr.ID)
		b = append(b, `,"object":"`+object+`","created":`...)
		b = strconv.AppendInt(b, pr.Created, 10)
		b = append(b, `,"model":`...)
		return strconv.AppendQuote(b, model)
	}
	if !pr.Stream {
		res, err := p.Complete(ctx, tr)
		if err != nil {
			return res, err
		}
		res.Usage = estimated(res.Usage, tr.Messages, res.Content)
		b := head(nil, "chat.completion")
		b = append(b, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)
		b = appendJSONString(b, res.Content)
		b = append(b, `},"logprobs":null,"finish_reason":`...)
		b = strconv.AppendQuote(b, finishOr(res.FinishReason))
		b = append(b, `}],"usage":`...)
		b = appendUsage(b, res.Usage)
		b = append(b, '}')
		return res, progress(func() error { return out(b) })
	}
	first := true
	res, err := p.Stream(ctx, tr, func(delta string) error {
		if delta == "" {
			return nil
		}
		b := head(make([]byte, 0, 160+len(delta)), "chat.completion.chunk")
		b = append(b, `,"choices":[{"index":0,"delta":{`...)
		if first {
			b = append(b, `"role":"assistant",`...)
			first = false
		}
		b = append(b, `"content":`...)
		b = appendJSONString(b, delta)
		b = append(b, `},"logprobs":null,"finish_reason":null}]}`...)
		if err := progress(func() error { return out(b) }); err != nil {
			return err
		}
		pr.flush()
		return nil
	})
	if err != nil {
		return res, err
	}
	res.Usage = estimated(res.Usage, tr.Messages, res.Content)
	b := head(nil, "chat.completion.chunk")
	b = append(b, `,"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":`...)
	b = strconv.AppendQuote(b, finishOr(res.FinishReason))
	b = append(b, `}]}`...)
	if err := progress(func() error { return out(b) }); err != nil {
		return res, err
	}
	defer pr.flush()
	if pr.IncludeUsage {
		b = head(nil, "chat.completion.chunk")
		b = append(b, `,"choices":[],"usage":`...)
		b = appendUsage(b, res.Usage)
		b = append(b, '}')
		if err := progress(func() error { return out(b) }); err != nil {
			return res, err
		}
	}
	return res, nil
}

func finishOr(s string) string {
	if s == "" {
		return "stop"
	}
	return s
}

func appendJSONString(b []byte, s string) []byte {
	j, _ := json.Marshal(s) // HTML-escaped as encoding/json does; valid JSON either way
	return append(b, j...)
}

// estimated fills in the usage a provider did not report, at about four bytes a token (Reported
// stays false: the numbers are ours).
func estimated(u Usage, msgs []Message, content string) Usage {
	if u.Reported {
		return u
	}
	prompt := 0
	for _, m := range msgs {
		prompt += len(m.Content)/4 + 4
	}
	u.PromptTokens, u.CompletionTokens = prompt, (len(content)+3)/4
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

func appendUsage(b []byte, u Usage) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(u.PromptTokens), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(u.CompletionTokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(u.TotalTokens), 10)
	return append(b, '}')
}

// RetryAfter reads a retry-after header: seconds, or an HTTP date (0 when absent or unreadable).
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
