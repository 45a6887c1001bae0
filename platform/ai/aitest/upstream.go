package aitest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
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
)

// Upstream is a fake model server speaking the OpenAI chat completions wire format on
// POST …/chat/completions and the Workers AI one on POST …/ai/run/{model}, streamed or not, for
// provider and end-to-end tests. Every answer streams Tokens and then ends as End says; a
// non-streamed answer that does not end properly is cut off in the middle of its JSON.
type Upstream struct {
	Tokens []string // default "Hel", "lo"
	End    Ending
	calls  atomic.Int64
	hung   atomic.Int64
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
	_ = json.NewDecoder(r.Body).Decode(&body)
	workers := strings.Contains(r.URL.Path, "/ai/run/") || strings.Contains(r.URL.Path, "/workers-ai/")
	if r.Method != http.MethodPost || (!workers && !strings.HasSuffix(r.URL.Path, "/chat/completions")) {
		http.NotFound(w, r)
		return
	}
	u.calls.Add(1)
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
	case EndEOF:
		_, _ = w.Write([]byte(full[:len(full)/2]))
	case EndReset:
		_, _ = w.Write([]byte(full[:len(full)/2]))
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	case EndHang:
		w.WriteHeader(http.StatusOK)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		u.hung.Add(1)
		defer u.hung.Add(-1)
		<-r.Context().Done()
	}
}
