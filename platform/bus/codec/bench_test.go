package codec_test

import (
	"encoding/json"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/bus/codec"
)

// answered has the shape of the events that are most of a chat history (an answer: a kilobyte of
// text with line breaks and non-ASCII, the usage, a fallback), so the benchmark decodes what a
// read model's catch-up decodes.
type answered struct {
	SessionID string  `json:"sessionId"`
	TurnID    string  `json:"turnId"`
	Content   string  `json:"content"`
	Model     string  `json:"model"`
	Usage     usage   `json:"usage"`
	LatencyMs float64 `json:"latencyMs"`
	TTFTMs    float64 `json:"ttftMs"`
	Fallbacks []struct {
		Model  string `json:"model"`
		Reason string `json:"reason"`
	} `json:"fallbacks,omitempty"`
	UserID string    `json:"userId,omitempty"`
	At     time.Time `json:"at"`
}

type usage struct {
	PromptTokens     int  `json:"promptTokens"`
	CompletionTokens int  `json:"completionTokens"`
	TotalTokens      int  `json:"totalTokens"`
	Estimated        bool `json:"estimated,omitempty"`
}

// BenchmarkDecode decodes a 1.1 KB answer event through the codec (ns/op and MB/s, and cpu-ns/op:
// the CPU time of the benchmark's thread per decode, which a machine busy with other work changes
// far less than the wall-clock ns/op).
func BenchmarkDecode(b *testing.B) {
	benchDecode(b, reflect.TypeFor[answered]())
}

// answeredCost is a view of answered (codec.CheckView) for a read model that counts an answer's
// tokens: the content is skipped, not copied out.
type answeredCost struct {
	Model string `json:"model"`
	Usage usage  `json:"usage"`
}

// BenchmarkDecodeView decodes the same event into answeredCost (DecodeAs), as the token ledger and
// the usage read model take answers.
func BenchmarkDecodeView(b *testing.B) {
	benchDecode(b, reflect.TypeFor[answeredCost]())
}

func benchDecode(b *testing.B, into reflect.Type) {
	r := codec.New()
	r.Add("test.Answered", answered{})
	ev := answered{SessionID: "4f1c2a3e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", TurnID: "17",
		Content: strings.Repeat("Le café est prêt: the \"answer\" spans lines,\nwith a tab\tand an émoji ☕. ", 14),
		Model:   "openai:gpt-4o-mini", Usage: usage{PromptTokens: 1234, CompletionTokens: 280, TotalTokens: 1514},
		LatencyMs: 812.5, TTFTMs: 95.25, UserID: "user-42", At: time.Date(2026, 11, 29, 17, 0, 0, 123456789, time.UTC)}
	ev.Fallbacks = append(ev.Fallbacks, struct {
		Model  string `json:"model"`
		Reason string `json:"reason"`
	}{"anthropic:claude-3-haiku", "rate_limited"})
	data, err := json.Marshal(ev)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadCPU()
	for b.Loop() {
		v, err := r.DecodeAs("test.Answered", into, data)
		if err != nil {
			b.Fatal(err)
		}
		if reflect.ValueOf(v).FieldByName("Usage").Interface().(usage).TotalTokens != 1514 {
			b.Fatal("decoded wrong")
		}
	}
	b.ReportMetric(float64((threadCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// threadCPU is the calling thread's user + system CPU time (Linux).
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
