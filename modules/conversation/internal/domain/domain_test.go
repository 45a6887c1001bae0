package domain_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
)

func TestSelectModels(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   domain.ModelChoice
		want string
		code string
	}{
		{"request wins", domain.ModelChoice{Requested: "a:1", Override: "b:1", TenantDefault: "c:1", ServerDefault: "d:1"}, "a:1", ""},
		{"override next", domain.ModelChoice{Override: "b:1", TenantDefault: "c:1", ServerDefault: "d:1"}, "b:1", ""},
		{"tenant next", domain.ModelChoice{TenantDefault: "c:1", ServerDefault: "d:1"}, "c:1", ""},
		{"server default", domain.ModelChoice{ServerDefault: "d:1"}, "d:1", ""},
		{"offline last", domain.ModelChoice{}, "builtin:offline", ""},
		{"fallbacks deduped", domain.ModelChoice{TenantDefault: "c:1", Fallbacks: []string{"c:1", "e:1", "bad", "e:1"}}, "c:1,e:1", ""},
		{"allow-list", domain.ModelChoice{Requested: "a:1", Allowed: []string{"b:1"}}, "", "model_not_allowed"},
		{"allowed", domain.ModelChoice{Requested: "b:1", Allowed: []string{"b:1"}}, "b:1", ""},
		{"bad format", domain.ModelChoice{Requested: "gpt-4"}, "", "invalid_model_id"},
	} {
		got, err := domain.SelectModels(tc.in)
		if tc.code != "" {
			if apperr.CodeOf(err) != tc.code {
				t.Errorf("%s: err %v, want %s", tc.name, err, tc.code)
			}
			continue
		}
		var s []string
		for _, m := range got {
			s = append(s, m.String())
		}
		if err != nil || strings.Join(s, ",") != tc.want {
			t.Errorf("%s: got %v %v, want %s", tc.name, s, err, tc.want)
		}
	}
}

func TestAssembleTrimsOldestHistoryAndPutsMessageLast(t *testing.T) {
	t.Parallel()
	var hist []domain.Message
	for i := 0; i < 100; i++ {
		hist = append(hist, domain.Message{Role: "user", Content: strings.Repeat("x", 400)}) // ~104 tokens each
	}
	hist[99].Content = "newest"
	a := domain.Assemble(domain.Prompt{System: "sys", History: hist, Message: "now", ContextTokens: 2048, MaxCompletion: 1024, MaxMessages: 1000,
		Passages: []domain.Passage{{DocID: "d", Title: "T", Text: "fact."}}, ToolName: "summarize", ToolResult: `{"s":1}`})
	if a.PromptTokens > 1024 || a.HistoryUsed == 0 || a.HistoryUsed >= 100 {
		t.Fatalf("prompt %d tokens, %d history", a.PromptTokens, a.HistoryUsed)
	}
	ms := a.Messages
	if ms[0].Role != "system" || !strings.Contains(ms[0].Content, "[1] T: fact.") || !strings.Contains(ms[0].Content, "summarize") {
		t.Fatalf("system %q", ms[0].Content)
	}
	if ms[len(ms)-1].Content != "now" || ms[len(ms)-2].Content != "newest" {
		t.Fatal("newest history must come right before the message")
	}
	if len(a.Documents) != 2 || a.Documents[0].N != 1 || !a.Documents[1].Tool {
		t.Fatalf("%+v", a.Documents)
	}
	capped := domain.Assemble(domain.Prompt{History: hist, Message: "now", ContextTokens: 1 << 20, MaxMessages: 3})
	if capped.HistoryUsed != 3 {
		t.Fatalf("maxMessagesPerSession not applied: %d", capped.HistoryUsed)
	}
}

func TestLedgerNeverOvershootsAndSettles(t *testing.T) {
	t.Parallel()
	l := domain.NewLedger()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	none := func() (domain.Usage, error) { return domain.Usage{}, nil }
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if r, err := l.Reserve("acme", string(rune('a'+i%26))+string(rune('0'+i/26)), 30, 1000, 0, now, none); r == nil && err == nil {
				mu.Lock()
				granted++
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	if granted != 33 {
		t.Fatalf("granted %d reservations of 30 under 1000", granted)
	}
	if r, _ := l.Reserve("globex", "x", 30, 1000, 0, now, none); r != nil {
		t.Fatal("another tenant's budget was used")
	}

	// A settled turn counts until the read model's snapshot reaches its position, then only there:
	// never missed, never twice.
	l2 := domain.NewLedger()
	read := domain.Usage{}
	used := func() (domain.Usage, error) { return read, nil }
	reserve := func(turn string, tokens int64) *domain.Refusal {
		t.Helper()
		r, err := l2.Reserve("t", turn, tokens, 100, 0, now, used)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if reserve("one", 90) != nil {
		t.Fatal("90 of 100 refused")
	}
	if r := reserve("two", 20); r == nil || r.Used != 90 {
		t.Fatalf("the reservation of 90 did not count: %+v", r)
	}
	l2.Settle("t", "one", 30, 7) // recorded at position 7; the read model is at 0
	if r := reserve("two", 80); r == nil || r.Used != 30 {
		t.Fatalf("the recorded 30 did not count before the read model has it: %+v", r)
	}
	read = domain.Usage{Day: 30, Month: 30, At: 7} // the read model applied position 7
	if r := reserve("two", 70); r != nil {
		t.Fatalf("the turn counted twice: %+v", r)
	}
	if n := l2.Bookings("t"); n != 1 {
		t.Fatalf("%d bookings, want only the new reservation (the counted one is dropped)", n)
	}
	l2.Release("t", "two")
	if n := l2.Bookings("t"); n != 0 {
		t.Fatalf("%d bookings after release", n)
	}
	// A new day starts from zero (the read model's day is another key); the month keeps counting.
	if r, _ := l2.Reserve("t", "three", 50, 0, 60, now, used); r == nil || r.Period != "monthly" || r.RetryAfter <= 0 {
		t.Fatalf("%+v", r)
	}
	// A read model that cannot answer books nothing; without a ceiling nothing is read.
	if _, err := l2.Reserve("t", "four", 1, 100, 0, now, func() (domain.Usage, error) { return domain.Usage{}, errors.New("catching up") }); err == nil {
		t.Fatal("no error from a read model that cannot answer")
	}
	if r, err := l2.Reserve("t", "five", 1, 0, 0, now, func() (domain.Usage, error) { panic("read without a ceiling") }); r != nil || err != nil {
		t.Fatal(r, err)
	}
	if n := l2.Bookings("t"); n != 0 {
		t.Fatalf("%d bookings", n)
	}
}
