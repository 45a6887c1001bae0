package aitest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai"
)

// Ending is how an Upstream answer ends.
type Ending int

const (
	// EndComplete ends properly: a finish_reason "stop" chunk, a usage chunk, then "data: [DONE]"
	// (Workers AI: a usage chunk, then "data: [DONE]").
	EndComplete Ending = iota
	// EndFinishOnly sends the finish_reason but no "[DONE]" (some OpenAI-compatible servers do).
	EndFinishOnly
	// EndEOF ends the body cleanly after the tokens, with neither a finish_reason nor "[DONE]": a
	// proxy or an upstream that gave up mid-answer.
	EndEOF
	// EndReset cuts the connection after the tokens (no chunked terminator): a reset mid-stream.
	EndReset
	// EndHang sends the tokens, then waits until the request ends: a slow model.
	EndHang
	// EndMidEvent ends the body cleanly in the middle of an event after the tokens (half a chunk,
	// no blank line): a proxy or an upstream that stopped mid-write.
	EndMidEvent
)

// Upstream is a fake model server speaking the OpenAI chat completions wire format on
// POST …/chat/completions (Workers AI's OpenAI-compatible …/ai/v1/chat/completions too) and the
// Workers AI one on POST …/ai/run/{model} (…/workers-ai/{model} through AI Gateway), streamed or not, for
// provider and end-to-end tests. Every answer streams Tokens and then ends as End says; a
// non-streamed answer that does not end properly is cut off in the middle of its JSON.
type Upstream struct {
	Tokens []string // default "Hel", "lo"
	End    Ending
	// Chunks, when set, are the data of a streamed OpenAI answer, sent as they are and followed by
	// "data: [DONE]"; Completion the body of a non-streamed one.
	Chunks     []string
	Completion string
	// Fail answers the first calls with these statuses in order (an OpenAI error body), with
	// RetryAfter as their retry-after header when set.
	Fail       []int
	RetryAfter string
	// HangFirst waits until the request ends before answering anything (a model that never starts).
	HangFirst bool
	calls     atomic.Int64
	hung      atomic.Int64
	mu        sync.Mutex
	bodies    [][]byte
	paths     []string
}

// Bodies are the request bodies received, in order.
func (u *Upstream) Bodies() [][]byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([][]byte(nil), u.bodies...)
}

// Paths are the request paths received, in order.
func (u *Upstream) Paths() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.paths...)
}

// Calls is how many model calls arrived.
func (u *Upstream) Calls() int { return int(u.calls.Load()) }

// Hanging is how many calls are waiting in EndHang now.
func (u *Upstream) Hanging() int { return int(u.hung.Load()) }

// ServeHTTP implements http.Handler.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Stream bool `json:"stream"`
	}
	raw, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(raw, &body)
	openAI := strings.HasSuffix(r.URL.Path, "/chat/completions")
	workers := !openAI && (strings.Contains(r.URL.Path, "/ai/run/") || strings.Contains(r.URL.Path, "/workers-ai/"))
	if r.Method != http.MethodPost || (!workers && !openAI) {
		http.NotFound(w, r)
		return
	}
	n := u.calls.Add(1)
	u.mu.Lock()
	u.bodies = append(u.bodies, raw)
	u.paths = append(u.paths, r.URL.Path)
	u.mu.Unlock()
	if int(n) <= len(u.Fail) {
		if u.RetryAfter != "" {
			w.Header().Set("Retry-After", u.RetryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(u.Fail[n-1])
		fmt.Fprintf(w, `{"error":{"message":"scripted failure %d","type":"server_error","param":null,"code":null}}`, u.Fail[n-1])
		return
	}
	if u.HangFirst {
		u.hung.Add(1)
		defer u.hung.Add(-1)
		<-r.Context().Done()
		return
	}
	if !workers && !body.Stream && u.Completion != "" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(u.Completion))
		return
	}
	if !workers && body.Stream && u.Chunks != nil {
		w.Header().Set("Content-Type", "text/event-stream")
		f, _ := w.(http.Flusher)
		for _, c := range append(u.Chunks, "[DONE]") {
			fmt.Fprintf(w, "data: %s\n\n", c)
			if f != nil {
				f.Flush()
			}
		}
		return
	}
	toks := u.Tokens
	if toks == nil {
		toks = []string{"Hel", "lo"}
	}
	if !body.Stream {
		u.complete(w, r, workers, strings.Join(toks, ""))
		return
	}
	if u.End == EndHang {
		u.hung.Add(1) // counted before the first token, so a client that has it sees the call hanging
		defer u.hung.Add(-1)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	send := func(data string) {
		fmt.Fprintf(w, "data: %s\n\n", data)
		if f != nil {
			f.Flush()
		}
	}
	for _, t := range toks {
		if workers {
			send(fmt.Sprintf(`{"response":%q,"p":"abc"}`, t))
		} else {
			send(fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":%q},"finish_reason":null}],"usage":null}`, t))
		}
	}
	switch u.End {
	case EndComplete, EndFinishOnly:
		if workers {
			send(`{"response":"","usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}`)
		} else {
			send(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`)
		}
		if u.End == EndComplete || workers {
			// Workers AI has no finish_reason: EndFinishOnly there is a proper end too.
			send("[DONE]")
		}
	case EndEOF:
	case EndMidEvent:
		_, _ = fmt.Fprint(w, `data: {"id":"chatcmpl-1","object":"chat.comp`)
	case EndReset:
		panic(http.ErrAbortHandler) // the server closes the connection without the chunked terminator
	case EndHang:
		<-r.Context().Done()
	}
}

func (u *Upstream) complete(w http.ResponseWriter, r *http.Request, workers bool, text string) {
	var full string
	if workers {
		full = fmt.Sprintf(`{"result":{"response":%q,"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}},"success":true,"errors":[],"messages":[]}`, text)
	} else {
		full = fmt.Sprintf(`{"id":"chatcmpl-2","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}`, text)
	}
	w.Header().Set("Content-Type", "application/json")
	switch u.End {
	case EndComplete, EndFinishOnly:
		_, _ = w.Write([]byte(full))
	case EndEOF, EndMidEvent:
		_, _ = w.Write([]byte(full[:len(full)/2]))
	case EndReset:
		_, _ = w.Write([]byte(full[:len(full)/2]))
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	case EndHang:
		u.hung.Add(1) // counted before the headers, so a client that has them sees the call hanging
		defer u.hung.Add(-1)
		w.WriteHeader(http.StatusOK)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		<-r.Context().Done()
	}
}

// EndingCase is one way an Upstream answer ends, and whether a provider must take it as truncated.
type EndingCase struct {
	Name      string
	End       Ending
	Truncated bool
}

// CheckEndings serves each case from an Upstream (tokens "Hel", "lo") and checks that the provider
// newProvider makes for its URL takes the answer, streamed and not, for what it is: "Hello" finished
// with "stop" when complete, a retryable upstream_truncated error (never a complete answer) when not.
func CheckEndings(t *testing.T, model string, newProvider func(baseURL string) (ai.Provider, error), cases ...EndingCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(&Upstream{Tokens: []string{"Hel", "lo"}, End: tc.End})
			defer srv.Close()
			p, err := newProvider(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			req := ai.Request{Model: model, Messages: []ai.Message{{Role: "user", Content: "hi"}}}
			var deltas []string
			res, err := p.Stream(context.Background(), req, func(d string) error { deltas = append(deltas, d); return nil })
			if strings.Join(deltas, "") != "Hello" {
				t.Fatalf("deltas %q", deltas)
			}
			checkEnding(t, "stream", res, err, tc.Truncated)
			res, err = p.Complete(context.Background(), req)
			checkEnding(t, "complete", res, err, tc.Truncated)
		})
	}
}

func checkEnding(t *testing.T, what string, res ai.Result, err error, truncated bool) {
	t.Helper()
	if !truncated {
		if err != nil || res.Content != "Hello" || res.FinishReason != "stop" {
			t.Fatalf("%s: %+v %v, want a complete answer", what, res, err)
		}
		return
	}
	if err == nil {
		t.Fatalf("%s: a truncated answer was accepted as complete: %+v", what, res)
	}
	if ai.ReasonOf(err) != ai.ReasonTruncated || !ai.IsRetryable(err) {
		t.Fatalf("%s: %v (reason %s, retryable %v), want a retryable %s", what, err, ai.ReasonOf(err), ai.IsRetryable(err), ai.ReasonTruncated)
	}
}
