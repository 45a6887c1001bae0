package workersai_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/workersai"
)

// server speaks the Workers AI REST format: /accounts/{id}/ai/run/{model} (or the AI Gateway path),
// SSE `data: {"response":"…"}` … `data: [DONE]` when streaming, the {result, success, errors}
// envelope otherwise.
func server(t *testing.T, paths *[]string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*paths = append(*paths, r.URL.Path)
		if r.Header.Get("Authorization") != "Bearer cf-token" {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"result":null,"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[]}`)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/@cf/broken/model") {
			w.WriteHeader(500)
			fmt.Fprint(w, `{"result":null,"success":false,"errors":[{"code":3043,"message":"Internal server error"}],"messages":[]}`)
			return
		}
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		if strings.HasSuffix(r.URL.Path, "/@cf/myshell-ai/melotts") {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"result":{"audio":%q},"success":true,"errors":[],"messages":[]}`, base64.StdEncoding.EncodeToString([]byte("ID3"+body["prompt"].(string))))
			return
		}
		if body["stream"] == true {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"response\":\"Hi\",\"p\":\"abc\"}\n\n")
			fmt.Fprint(w, "data: {\"response\":\" there\",\"p\":\"abcd\"}\n\n")
			fmt.Fprint(w, "data: {\"response\":\"\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n")
			fmt.Fprint(w, "data: [DONE]\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"result":{"response":"Hi there","usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}},"success":true,"errors":[],"messages":[]}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestStreamDirectAndThroughGateway(t *testing.T) {
	t.Parallel()
	var paths []string
	srv := server(t, &paths)
	direct, err := workersai.New(workersai.Config{AccountID: "acc1", APIToken: "cf-token", BaseURL: srv.URL + "/client/v4"})
	if err != nil {
		t.Fatal(err)
	}
	gw, _ := workersai.New(workersai.Config{AccountID: "acc1", APIToken: "cf-token", GatewayID: "gw1", GatewayURL: srv.URL + "/v1"})
	for _, p := range []*workersai.Provider{direct, gw} {
		var deltas []string
		res, err := p.Stream(context.Background(), ai.Request{Model: "@cf/meta/llama-3.1-8b-instruct", Messages: []ai.Message{{Role: "user", Content: "hi"}}},
			func(d string) error { deltas = append(deltas, d); return nil })
		if err != nil || strings.Join(deltas, "|") != "Hi| there" || res.Usage.TotalTokens != 7 || !res.Usage.Reported {
			t.Fatalf("%q %+v %v", deltas, res, err)
		}
	}
	want := []string{"/client/v4/accounts/acc1/ai/run/@cf/meta/llama-3.1-8b-instruct", "/v1/acc1/gw1/workers-ai/@cf/meta/llama-3.1-8b-instruct"}
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Fatalf("paths %v", paths)
	}
}

func TestCompleteAndErrors(t *testing.T) {
	t.Parallel()
	var paths []string
	srv := server(t, &paths)
	p, _ := workersai.New(workersai.Config{AccountID: "acc1", APIToken: "cf-token", BaseURL: srv.URL})
	res, err := p.Complete(context.Background(), ai.Request{Model: "@cf/meta/llama-3.1-8b-instruct"})
	if err != nil || res.Content != "Hi there" || res.Usage.PromptTokens != 5 {
		t.Fatalf("%+v %v", res, err)
	}
	_, err = p.Complete(context.Background(), ai.Request{Model: "@cf/broken/model"})
	if !ai.IsRetryable(err) || !strings.Contains(err.Error(), "Internal server error") {
		t.Fatalf("%v", err)
	}
	bad, _ := workersai.New(workersai.Config{AccountID: "acc1", APIToken: "nope", BaseURL: srv.URL})
	if _, err := bad.Complete(context.Background(), ai.Request{Model: "x"}); ai.IsRetryable(err) || err == nil {
		t.Fatalf("401 must fail, not retry: %v", err)
	}
	if _, err := workersai.New(workersai.Config{}); err == nil {
		t.Fatal("missing account accepted")
	}
}

func TestSpeakMeloTTS(t *testing.T) {
	t.Parallel()
	var paths []string
	srv := server(t, &paths)
	p, _ := workersai.New(workersai.Config{AccountID: "acc1", APIToken: "cf-token", BaseURL: srv.URL})
	a, err := p.Speak(context.Background(), ai.SpeechRequest{Text: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(a.Body)
	if string(b) != "ID3hello" || a.ContentType != "audio/mpeg" {
		t.Fatalf("%q %s", b, a.ContentType)
	}
	if _, err := p.Speak(context.Background(), ai.SpeechRequest{Text: "x", Format: "wav"}); err == nil {
		t.Fatal("wav accepted from an mp3-only model")
	}
}

// An OpenAI request goes to Workers AI's OpenAI-compatible endpoint with the token, and a refusal
// there is an error that names this provider's model ("workers-ai:…"), not the OpenAI adapter's.
func TestPassErrorsNameWorkersAI(t *testing.T) {
	t.Parallel()
	var paths []string
	srv := server(t, &paths)
	p, err := workersai.New(workersai.Config{AccountID: "acct", APIToken: "wrong-token", BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	pr := &ai.PassRequest{Fields: map[string]json.RawMessage{"messages": json.RawMessage(`[{"role":"user","content":"hi"}]`)}}
	_, err = p.Pass(context.Background(), ai.Request{Model: "@cf/meta/llama-3.1-8b-instruct", Pass: pr}, func([]byte) error { return nil })
	var e *ai.Error
	if !errors.As(err, &e) || e.Model != "workers-ai:@cf/meta/llama-3.1-8b-instruct" {
		t.Fatalf("error %#v, want an ai.Error naming workers-ai:@cf/meta/llama-3.1-8b-instruct", err)
	}
	if len(paths) != 1 || paths[0] != "/accounts/acct/ai/v1/chat/completions" {
		t.Fatalf("called %v", paths)
	}
}
