package ai_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
)

func TestParseModelID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"openai:gpt-4o-mini", true}, {"workers-ai:@cf/meta/llama-3.1-8b-instruct", true}, {"builtin:offline", true},
		{"ollama:llama3:8b", true}, {"gpt-4o", false}, {":gpt", false}, {"OpenAI:gpt", false}, {"openai:", false},
		{"openai:has space", false}, {"openai:" + strings.Repeat("x", 201), false},
	} {
		id, err := ai.ParseModelID(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseModelID(%q) err=%v, want ok=%v", tc.in, err, tc.ok)
		}
		if err == nil && id.String() != tc.in {
			t.Errorf("round trip %q → %q", tc.in, id.String())
		}
	}
}

func collect(t *testing.T, r *ai.Router, models []ai.ModelID) (ai.Answer, string, error) {
	t.Helper()
	var b strings.Builder
	ans, err := r.Stream(context.Background(), models, ai.Request{Messages: []ai.Message{{Role: "user", Content: "hi"}}},
		func(d string) error { b.WriteString(d); return nil })
	return ans, b.String(), err
}

func TestRouterFallsBackInOrderBeforeFirstToken(t *testing.T) {
	t.Parallel()
	down := aitest.New(aitest.Script{FailBefore: aitest.Unavailable("a:down")})
	bad := aitest.New(aitest.Script{FailBefore: &ai.Error{Reason: "bad_request", Status: 400}})
	up := aitest.New(aitest.Script{Tokens: []string{"o", "k"}})
	r, err := ai.NewRouter(ai.RouterConfig{}, map[string]ai.Provider{"down": down, "up": up, "bad": bad})
	if err != nil {
		t.Fatal(err)
	}
	models := []ai.ModelID{ai.MustParseModelID("down:m"), ai.MustParseModelID("missing:m"), ai.MustParseModelID("up:m")}
	ans, text, err := collect(t, r, models)
	if err != nil {
		t.Fatal(err)
	}
	if ans.Model.String() != "up:m" || text != "ok" || ans.Content != "ok" {
		t.Fatalf("answered by %s with %q", ans.Model, text)
	}
	if len(ans.Attempts) != 2 || ans.Attempts[0].Reason != "unavailable" || ans.Attempts[1].Reason != "no_provider" {
		t.Fatalf("attempts %+v", ans.Attempts)
	}
	// A non-retryable failure does not fall back.
	_, _, err = collect(t, r, []ai.ModelID{ai.MustParseModelID("bad:m"), ai.MustParseModelID("up:m")})
	var fe *ai.FailedError
	if !errors.As(err, &fe) || fe.Model.String() != "bad:m" || up.Calls() != 1 {
		t.Fatalf("err %v, up calls %d", err, up.Calls())
	}
}

func TestRouterDoesNotFallBackAfterFirstToken(t *testing.T) {
	t.Parallel()
	broken := aitest.New(aitest.Script{Tokens: []string{"a", "b", "c"}, FailAfter: 1})
	up := aitest.New(aitest.Script{})
	r, _ := ai.NewRouter(ai.RouterConfig{}, map[string]ai.Provider{"broken": broken, "up": up})
	_, text, err := collect(t, r, []ai.ModelID{ai.MustParseModelID("broken:m"), ai.MustParseModelID("up:m")})
	var fe *ai.FailedError
	if !errors.As(err, &fe) || !fe.Emitted || text != "a" || up.Calls() != 0 {
		t.Fatalf("err %v text %q up calls %d", err, text, up.Calls())
	}
}

func TestRouterBreakerOpensAndSkipsModel(t *testing.T) {
	t.Parallel()
	down := aitest.New(aitest.Script{FailBefore: aitest.Unavailable("down:m")})
	up := aitest.New(aitest.Script{})
	var changes []string
	r, _ := ai.NewRouter(ai.RouterConfig{BreakerFailures: 3, BreakerOpenFor: time.Hour,
		OnBreakerChange: func(m, from, to string) { changes = append(changes, m+":"+from+"->"+to) }},
		map[string]ai.Provider{"down": down, "up": up})
	models := []ai.ModelID{ai.MustParseModelID("down:m"), ai.MustParseModelID("up:m")}
	for i := 0; i < 5; i++ {
		ans, _, err := collect(t, r, models)
		if err != nil || ans.Model.String() != "up:m" {
			t.Fatalf("turn %d: %v %v", i, ans.Model, err)
		}
		if i >= 3 && ans.Attempts[0].Reason != "breaker_open" {
			t.Fatalf("turn %d: attempt %+v, want breaker_open", i, ans.Attempts[0])
		}
	}
	if down.Calls() != 3 {
		t.Fatalf("down called %d times, want 3 (breaker open after 3 failures)", down.Calls())
	}
	if r.BreakerStates()["down:m"] != "open" || len(changes) != 1 {
		t.Fatalf("states %v changes %v", r.BreakerStates(), changes)
	}
}

func TestRouterFirstTokenTimeoutMovesOn(t *testing.T) {
	t.Parallel()
	hang := aitest.New(aitest.Script{Block: true})
	up := aitest.New(aitest.Script{})
	r, _ := ai.NewRouter(ai.RouterConfig{FirstTokenTimeout: 20 * time.Millisecond}, map[string]ai.Provider{"hang": hang, "up": up})
	ans, _, err := collect(t, r, []ai.ModelID{ai.MustParseModelID("hang:m"), ai.MustParseModelID("up:m")})
	if err != nil || ans.Model.String() != "up:m" || ans.Attempts[0].Reason != "timeout" {
		t.Fatalf("%+v %v", ans, err)
	}
}

func TestRouterCallerCancelIsNotRetried(t *testing.T) {
	t.Parallel()
	hang := aitest.New(aitest.Script{Block: true})
	up := aitest.New(aitest.Script{})
	r, _ := ai.NewRouter(ai.RouterConfig{}, map[string]ai.Provider{"hang": hang, "up": up})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	_, err := r.Stream(ctx, []ai.ModelID{ai.MustParseModelID("hang:m"), ai.MustParseModelID("up:m")}, ai.Request{}, func(string) error { return nil })
	if err == nil || up.Calls() != 0 || ai.IsRetryable(err) {
		t.Fatalf("err %v, up calls %d", err, up.Calls())
	}
}

func TestReadSSE(t *testing.T) {
	t.Parallel()
	in := ": comment\n\ndata: a\n\nevent: x\ndata: b1\ndata: b2\n\ndata: [DONE]\n\ndata: after\n\n"
	var got []string
	done, err := ai.ReadSSE(strings.NewReader(in), func(d []byte) error { got = append(got, string(d)); return nil })
	if err != nil || !done {
		t.Fatal(done, err)
	}
	if strings.Join(got, "|") != "a|b1\nb2" {
		t.Fatalf("got %q", got)
	}
	// Without its terminator the stream is not done, whether it ends between events or inside one.
	for _, in := range []string{"data: a\n\n", "data: a\n\ndata: b", ""} {
		if done, err := ai.ReadSSE(strings.NewReader(in), func([]byte) error { return nil }); done || err != nil {
			t.Fatalf("%q: done %v err %v", in, done, err)
		}
	}
	if done, err := ai.ReadSSE(strings.NewReader("data: a\n\ndata: [DONE]"), func([]byte) error { return nil }); !done || err != nil {
		t.Fatalf("[DONE] at EOF: done %v err %v", done, err)
	}
	// An event the body ended in the middle of (no blank line after it) is cut off: never passed on.
	got = nil
	if done, err := ai.ReadSSE(strings.NewReader("data: a\n\ndata: {\"cho"), func(d []byte) error { got = append(got, string(d)); return nil }); done || err != nil || strings.Join(got, "|") != "a" {
		t.Fatalf("cut event: done %v err %v events %q", done, err, got)
	}
}

func TestRouterRecordsAGenAISpanPerAttempt(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	down := aitest.New(aitest.Script{FailBefore: aitest.Unavailable("down:m")})
	up := aitest.New(aitest.Script{Tokens: []string{"o", "k"}, Usage: &ai.Usage{PromptTokens: 7, CompletionTokens: 2, TotalTokens: 9, Reported: true}})
	r, err := ai.NewRouter(ai.RouterConfig{Tracer: tp.Tracer("test")}, map[string]ai.Provider{"down": down, "up": up})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := collect(t, r, []ai.ModelID{ai.MustParseModelID("down:m"), ai.MustParseModelID("up:gpt")}); err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want one per attempt", len(spans))
	}
	attrs := func(s sdktrace.ReadOnlySpan) map[string]string {
		m := map[string]string{}
		for _, a := range s.Attributes() {
			m[string(a.Key)] = a.Value.Emit()
		}
		return m
	}
	failed, ok := attrs(spans[0]), attrs(spans[1])
	if spans[0].Name() != "chat m" || failed["gen_ai.provider.name"] != "down" || failed["error.type"] != "unavailable" || spans[0].Status().Code != codes.Error {
		t.Fatalf("failed attempt span %s %v %v", spans[0].Name(), failed, spans[0].Status())
	}
	if spans[1].Name() != "chat gpt" || ok["gen_ai.request.model"] != "gpt" || ok["gen_ai.usage.input_tokens"] != "7" ||
		ok["gen_ai.usage.output_tokens"] != "2" || ok["gen_ai.operation.name"] != "chat" {
		t.Fatalf("answering span %s %v", spans[1].Name(), ok)
	}
}

func TestRouterTellsEachFallback(t *testing.T) {
	t.Parallel()
	down := aitest.New(aitest.Script{FailBefore: aitest.Unavailable("a:down")})
	up := aitest.New(aitest.Script{Tokens: []string{"o", "k"}})
	type move struct{ from, reason, next string }
	var moves []move
	r, err := ai.NewRouter(ai.RouterConfig{OnFallback: func(_ context.Context, from ai.Attempt, next ai.ModelID) {
		moves = append(moves, move{from.Model.String(), from.Reason, next.String()})
	}}, map[string]ai.Provider{"down": down, "up": up})
	if err != nil {
		t.Fatal(err)
	}
	models := []ai.ModelID{ai.MustParseModelID("down:m"), ai.MustParseModelID("missing:m"), ai.MustParseModelID("up:m")}
	if _, _, err := collect(t, r, models); err != nil {
		t.Fatal(err)
	}
	want := []move{{"down:m", "unavailable", "missing:m"}, {"missing:m", "no_provider", "up:m"}}
	if len(moves) != len(want) || moves[0] != want[0] || moves[1] != want[1] {
		t.Fatalf("fallbacks told %+v, want %+v", moves, want)
	}
	// A call the first model answers moves nowhere.
	moves = nil
	if _, _, err := collect(t, r, []ai.ModelID{ai.MustParseModelID("up:m")}); err != nil || len(moves) != 0 {
		t.Fatalf("err %v, fallbacks %+v", err, moves)
	}
}

// OnAttempt hears of every try, with tracing off (the router skips the span) and on: the model
// that failed with its reason, then the one that answered.
func TestOnAttemptWithAndWithoutTracing(t *testing.T) {
	t.Parallel()
	for _, traced := range []bool{false, true} {
		var got []string
		cfg := ai.RouterConfig{OnAttempt: func(_ context.Context, a ai.AttemptRecord) { got = append(got, a.Model+"/"+a.Reason) }}
		if traced {
			cfg.Tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(tracetest.NewInMemoryExporter()))).Tracer("t")
		}
		r, err := ai.NewRouter(cfg, map[string]ai.Provider{
			"down": aitest.New(aitest.Script{FailBefore: aitest.Unavailable("down:m")}),
			"up":   aitest.New(aitest.Script{Tokens: []string{"hi"}}),
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.Stream(context.Background(), []ai.ModelID{ai.MustParseModelID("down:m"), ai.MustParseModelID("up:m")}, ai.Request{},
			func(string) error { return nil })
		if err != nil || strings.Join(got, " ") != "down:m/unavailable up:m/" {
			t.Fatalf("traced %v: %v, attempts %q", traced, err, got)
		}
	}
}
