package conversation_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai/openai"
	"github.com/crispy-enigma/crispy/platform/cputime"
)

// BenchmarkV1Pass measures a stateless POST /v1/chat/completions over loopback against a
// zero-latency OpenAI-compatible upstream, JSON and SSE (include_usage), and the same call made to
// the upstream directly: the "server-allocs/call" metric is the difference, what the server adds
// per proxied call (its middleware, the pass-through, its own client to the upstream, the usage
// event). Allocations do not depend on the machine's load, unlike the CPU figures; compare
// server-allocs/call before and after a change (scripts/v1proxy measures CPU at concurrency).
func BenchmarkV1Pass(b *testing.B) {
	up := httptest.NewServer(benchUpstream{})
	defer up.Close()
	p, err := openai.New(openai.Config{BaseURL: up.URL})
	if err != nil {
		b.Fatal(err)
	}
	e := newEnv(b, opts{provider: p})
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	for _, stream := range []bool{false, true} {
		name := "json"
		body := `{"model":"fake:m","messages":[{"role":"user","content":"How are you today?"}]}`
		if stream {
			name = "sse"
			body = `{"model":"fake:m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"How are you today?"}]}`
		}
		b.Run(name, func(b *testing.B) {
			direct := strings.Replace(body, "fake:m", "m", 1)
			// The direct call's allocations (client and upstream), measured first.
			const directCalls = 200
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			for i := 0; i < directCalls; i++ {
				v1Call(b, client, up.URL+"/v1/chat/completions", direct, stream)
			}
			runtime.ReadMemStats(&m1)
			perDirect := float64(m1.Mallocs-m0.Mallocs) / directCalls
			for i := 0; i < 20; i++ { // warm the server's caches and connections
				v1Call(b, client, srv.URL+"/v1/chat/completions", body, stream)
			}
			b.ReportAllocs()
			runtime.ReadMemStats(&m0)
			cpu0 := cputime.Used()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				v1Call(b, client, srv.URL+"/v1/chat/completions", body, stream)
			}
			b.StopTimer()
			runtime.ReadMemStats(&m1)
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(b.N)-perDirect, "server-allocs/call")
			b.ReportMetric(float64((cputime.Used()-cpu0).Microseconds())/float64(b.N), "cpu-µs/call")
		})
	}
}

// v1Call makes one call and reads it whole, failing the benchmark on anything but a 200 with the
// answer's usage (and, streamed, its [DONE]).
func v1Call(b *testing.B, c *http.Client, url, body string, stream bool) {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-tenant-id", "acme")
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !bytes.Contains(raw, []byte(`"usage":{`)) || stream && !bytes.Contains(raw, []byte("data: [DONE]")) {
		b.Fatalf("%d %v: %.300s", resp.StatusCode, err, raw)
	}
}

// benchUpstream answers as OpenAI does, at once: 7 tokens, the finish_reason, the usage chunk
// when asked, [DONE]; each chunk flushed.
type benchUpstream struct{}

func (benchUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	const head = `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"fp_1",`
	const usage = `{"prompt_tokens":13,"completion_tokens":7,"total_tokens":20,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}`
	if !bytes.Contains(raw, []byte(`"stream":true`)) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"chatcmpl-2","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":" tok0 tok1 tok2 tok3 tok4 tok5 tok6","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":`+usage+`}`)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	f := w.(http.Flusher)
	send := func(data string) {
		_, _ = io.WriteString(w, "data: "+data+"\n\n")
		f.Flush()
	}
	send(head + `"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}`)
	for i := 0; i < 7; i++ {
		send(fmt.Sprintf(`%s"choices":[{"index":0,"delta":{"content":" tok%d"},"logprobs":null,"finish_reason":null}]}`, head, i))
	}
	send(head + `"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`)
	if bytes.Contains(raw, []byte(`"include_usage":true`)) {
		send(head + `"choices":[],"usage":` + usage + `}`)
	}
	send("[DONE]")
}
