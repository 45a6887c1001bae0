package openai_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/openai"
)

// server speaks OpenAI's chat completions wire format (as documented in the API reference: SSE
// chat.completion.chunk objects, a final usage chunk with empty choices when include_usage is set,
// then "data: [DONE]").
func server(t *testing.T, status int) (*httptest.Server, *map[string]any) {
	t.Helper()
	got := map[string]any{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer sk-test" {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}`)
			return
		}
		if status != 200 {
			w.WriteHeader(status)
			fmt.Fprint(w, `{"error":{"message":"The server is overloaded","type":"server_error"}}`)
			return
		}
		switch r.URL.Path {
		case "/v1/chat/completions":
			_ = json.NewDecoder(r.Body).Decode(&got)
			if got["stream"] == true {
				w.Header().Set("Content-Type", "text/event-stream")
				for i, tok := range []string{"", "Hel", "lo"} {
					d := fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":%q},"logprobs":null,"finish_reason":null}],"usage":null}`, tok)
					if i == 0 {
						d = `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}`
					}
					fmt.Fprintf(w, "data: %s\n\n", d)
				}
				fmt.Fprint(w, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`+"\n\n")
				fmt.Fprint(w, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":1}}}`+"\n\n")
				fmt.Fprint(w, "data: [DONE]\n\n")
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"id":"chatcmpl-2","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}`)
		case "/v1/audio/speech":
			_ = json.NewDecoder(r.Body).Decode(&got)
			w.Header().Set("Content-Type", "audio/mpeg")
			_, _ = w.Write([]byte("ID3fakeaudio"))
		default:
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

func TestStreamParsesChunksAndUsage(t *testing.T) {
	t.Parallel()
	srv, got := server(t, 200)
	p, err := openai.New(openai.Config{BaseURL: srv.URL, APIKey: "sk-test"})
	if err != nil {
		t.Fatal(err)
	}
	var deltas []string
	res, err := p.Stream(context.Background(), ai.Request{Model: "gpt-4o-mini", Messages: []ai.Message{{Role: "user", Content: "hi"}}},
		func(d string) error { deltas = append(deltas, d); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(deltas, "|") != "Hel|lo" || res.Content != "Hello" || res.FinishReason != "stop" {
		t.Fatalf("deltas %q res %+v", deltas, res)
	}
	want := ai.Usage{PromptTokens: 9, CompletionTokens: 2, TotalTokens: 11, CachedTokens: 4, ReasoningTokens: 1, Reported: true}
	if res.Usage != want {
		t.Fatalf("usage %+v", res.Usage)
	}
	so, _ := (*got)["stream_options"].(map[string]any)
	if (*got)["model"] != "gpt-4o-mini" || so["include_usage"] != true {
		t.Fatalf("request %v", *got)
	}
}

func TestComplete(t *testing.T) {
	t.Parallel()
	srv, _ := server(t, 200)
	p, _ := openai.New(openai.Config{BaseURL: srv.URL + "/v1/", APIKey: "sk-test"})
	res, err := p.Complete(context.Background(), ai.Request{Model: "gpt-4o-mini", Messages: []ai.Message{{Role: "user", Content: "hi"}}})
	if err != nil || res.Content != "Hello there" || res.Usage.TotalTokens != 12 || !res.Usage.Reported {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	t.Parallel()
	srv, _ := server(t, 503)
	p, _ := openai.New(openai.Config{BaseURL: srv.URL, APIKey: "sk-test"})
	_, err := p.Stream(context.Background(), ai.Request{Model: "m"}, func(string) error { return nil })
	var ae *ai.Error
	if !errors.As(err, &ae) || !ae.Retryable || ae.Status != 503 || !strings.Contains(ae.Message, "overloaded") {
		t.Fatalf("%v", err)
	}
	bad, _ := openai.New(openai.Config{BaseURL: srv.URL, APIKey: "wrong"})
	_, err = bad.Complete(context.Background(), ai.Request{Model: "m"})
	if ai.IsRetryable(err) || !strings.Contains(err.Error(), "Incorrect API key") {
		t.Fatalf("401 must not be retryable: %v", err)
	}
	// Connection refused is retryable.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	gone, _ := openai.New(openai.Config{BaseURL: "http://" + addr})
	_, err = gone.Complete(context.Background(), ai.Request{Model: "m"})
	if !ai.IsRetryable(err) || ai.ReasonOf(err) != "unavailable" {
		t.Fatalf("refused: %v (%s)", err, ai.ReasonOf(err))
	}
}

func TestSpeak(t *testing.T) {
	t.Parallel()
	srv, got := server(t, 200)
	p, _ := openai.New(openai.Config{BaseURL: srv.URL, APIKey: "sk-test"})
	a, err := p.Speak(context.Background(), ai.SpeechRequest{Text: "hello", Format: "mp3", Speed: 1.5})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(a.Body)
	a.Body.Close()
	if string(b) != "ID3fakeaudio" || a.ContentType != "audio/mpeg" {
		t.Fatalf("%q %s", b, a.ContentType)
	}
	if (*got)["input"] != "hello" || (*got)["voice"] != "alloy" || (*got)["model"] != "tts-1" || (*got)["speed"] != 1.5 {
		t.Fatalf("request %v", *got)
	}
}

// TestPassSendsTheRequestHeaders checks what a pass-through call sends, now that it is built by
// hand for the transport: method, path, content type, accept per kind, the API key, and a base URL
// with user:password@ as basic auth (that one still goes through http.Client).
func TestPassSendsTheRequestHeaders(t *testing.T) {
	t.Parallel()
	type seen struct{ method, path, ctype, accept, auth, body string }
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Accept"), r.Header.Get("Authorization"), string(b)}
		if r.Header.Get("Accept") == "text/event-stream" {
			fmt.Fprint(w, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
			return
		}
		fmt.Fprint(w, `{"choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":"stop"}]}`)
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		base, key, auth string
		stream          bool
		accept, body    string
	}{
		{srv.URL, "sk-test", "Bearer sk-test", false, "application/json", `{"model":"m","messages":[]}`},
		{srv.URL + "/v1", "", "", true, "text/event-stream", `{"model":"m","stream":true,"messages":[],"stream_options":{"include_usage":true}}`},
		{strings.Replace(srv.URL, "http://", "http://u:pw@", 1), "", "Basic dTpwdw==", false, "application/json", `{"model":"m","messages":[]}`},
	} {
		p, err := openai.New(openai.Config{BaseURL: tc.base, APIKey: tc.key})
		if err != nil {
			t.Fatal(err)
		}
		pr := &ai.PassRequest{Fields: map[string]json.RawMessage{"messages": json.RawMessage(`[]`)}, Stream: tc.stream}
		if _, err := p.Pass(context.Background(), ai.Request{Model: "m", Pass: pr}, func([]byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
		want := seen{"POST", "/v1/chat/completions", "application/json", tc.accept, tc.auth, tc.body}
		if s := <-got; s != want {
			t.Fatalf("%s: got %+v, want %+v", tc.base, s, want)
		}
	}
}

// doneThenEnd is an upstream that streams a short answer and [DONE], then ends its body only once
// end says so (the chunked body's end then goes out in a packet of its own); conns counts the
// connections it accepted.
func doneThenEnd(t *testing.T, end func()) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, `data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}`+"\n\n")
		fmt.Fprint(w, `data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`+"\n\n")
		fmt.Fprint(w, "data: [DONE]\n\n")
		w.(http.Flusher).Flush()
		end()
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func passStream(t *testing.T, p *openai.Provider) {
	t.Helper()
	pr := &ai.PassRequest{Fields: map[string]json.RawMessage{"messages": json.RawMessage(`[{"role":"user","content":"hi"}]`)}, Stream: true, IncludeUsage: true}
	res, err := p.Pass(context.Background(), ai.Request{Model: "m", Pass: pr}, func([]byte) error { return nil })
	if err != nil || res.Usage.TotalTokens != 2 {
		t.Fatalf("%+v %v", res, err)
	}
}

// A streamed call reads its upstream's body to the end after [DONE], so the next call reuses the
// connection: closing a body before its end would close the connection (a dial per call).
func TestPassKeepsTheConnectionAfterDone(t *testing.T) {
	t.Parallel()
	srv, conns := doneThenEnd(t, func() { time.Sleep(5 * time.Millisecond) }) // the end comes after [DONE] is read
	p, err := openai.New(openai.Config{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		passStream(t, p)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 3 calls, want 1", n)
	}
}

// An upstream that keeps its body open after [DONE] does not hold the call: the wait for the end
// is bounded (the connection is then dropped).
func TestPassDoesNotWaitForAnEndThatDoesNotCome(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv, _ := doneThenEnd(t, func() { <-release })
	defer close(release)
	p, err := openai.New(openai.Config{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	passStream(t, p) // returns although the upstream never ends its body before release
}
