package conversation_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation/internal/convtest"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/cputime"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// lastEmit wraps the fake provider to note when it emitted its last token.
type lastEmit struct {
	p  *aitest.Provider
	mu sync.Mutex
	at time.Time
}

func (l *lastEmit) Stream(ctx context.Context, req ai.Request, emit ai.Emit) (ai.Result, error) {
	res, err := l.p.Stream(ctx, req, emit)
	l.mu.Lock()
	l.at = time.Now()
	l.mu.Unlock()
	return res, err
}

func (l *lastEmit) Complete(ctx context.Context, req ai.Request) (ai.Result, error) {
	return l.p.Complete(ctx, req)
}

func pct(d []time.Duration, p float64) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(float64(len(d)-1)*p)]
}

// BenchmarkStreamedTurn measures the platform's own overhead per streamed turn over loopback HTTP
// with the embedded (fsync'd) store and a zero-latency provider: request sent → first body byte
// (which includes recording the user's message), and the provider's last token → the done event
// read by the client (which includes recording the answer).
func BenchmarkStreamedTurn(b *testing.B) {
	b.Run("embedded-store", func(b *testing.B) {
		st, err := embedded.Open(b.TempDir(), embedded.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		benchTurns(b, st)
	})
	// The in-memory store shows the overhead without the two fsync'd appends of a turn.
	b.Run("memory-store", func(b *testing.B) { benchTurns(b, eventstoretest.NewMemory()) })
}

func benchTurns(b *testing.B, st eventstore.Store) {
	le := &lastEmit{p: aitest.New(aitest.Script{Tokens: []string{"a", "b", "c", "d"}})}
	e := newEnv(b, opts{store: st, provider: le})
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	firstByte := make([]time.Duration, 0, b.N)
	toDone := make([]time.Duration, 0, b.N)
	cpu0 := cputime.Used()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body := `{"sessionId":"` + sid() + `","message":"hello there"}`
		req, _ := http.NewRequest("POST", srv.URL+"/chat", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-tenant-id", "acme")
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		rd := bufio.NewReader(resp.Body)
		if _, err := rd.Peek(1); err != nil {
			b.Fatal(err)
		}
		firstByte = append(firstByte, time.Since(t0))
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				b.Fatalf("stream ended without done: %v", err)
			}
			if line == "event: done\n" {
				now := time.Now()
				le.mu.Lock()
				toDone = append(toDone, now.Sub(le.at))
				le.mu.Unlock()
				break
			}
		}
		_, _ = io.Copy(io.Discard, rd) // drain, so the connection is reused
		resp.Body.Close()
	}
	b.StopTimer()
	// CPU time of the whole process (server and client) per turn: on a shared machine the wall-clock
	// figures above include waiting for a core; this one does not.
	b.ReportMetric(float64((cputime.Used()-cpu0).Microseconds())/float64(b.N), "cpu-µs/turn")
	b.ReportMetric(float64(pct(firstByte, 0.5).Microseconds()), "p50-first-byte-µs")
	b.ReportMetric(float64(pct(firstByte, 0.99).Microseconds()), "p99-first-byte-µs")
	b.ReportMetric(float64(pct(toDone, 0.5).Microseconds()), "p50-last-token-to-done-µs")
	b.ReportMetric(float64(pct(toDone, 0.99).Microseconds()), "p99-last-token-to-done-µs")
}

// BenchmarkHistoryRebuild1000 folds a 1,000-message session from the embedded store with no cache
// (the audit path, SessionAsOf), and the cached history read that turns and GET history use.
func BenchmarkHistoryRebuild1000(b *testing.B) {
	st, err := embedded.Open(b.TempDir(), embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	t := tenant.MustParse("acme")
	s := sid()
	_, err = convtest.SeedSession(ctx, st, t, s, 500)
	if err != nil {
		b.Fatal(err)
	}
	e := newEnv(b, opts{store: st})
	b.Run("cold-fold", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			v, err := e.mod.SessionAsOf(ctx, t, s, time.Now())
			if err != nil || len(v.Messages) != 1000 {
				b.Fatalf("%d %v", len(v.Messages), err)
			}
		}
	})
	b.Run("cached-history", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if r := e.history("acme", s); r.status != 200 {
				b.Fatal(r.raw)
			}
		}
	})
}
