package domain_test

import (
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
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if l.Reserve("acme", string(rune('a'+i%26))+string(rune('0'+i/26)), 30, 1000, 0, now) == nil {
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
	if r := l.Reserve("globex", "x", 30, 1000, 0, now); r != nil {
		t.Fatal("another tenant's budget was used")
	}
	// Settle then Count, and Count then Settle, both count a turn once.
	l2 := domain.NewLedger()
	l2.Reserve("t", "one", 100, 0, 0, now)
	l2.Settle("t", "one", 10, now)
	l2.Count("t", "one", 10, now, now)
	l2.Reserve("t", "two", 100, 0, 0, now)
	l2.Count("t", "two", 20, now, now)
	l2.Settle("t", "two", 20, now)
	if d, m := l2.Used("t", now); d != 30 || m != 30 {
		t.Fatalf("used %d %d, want 30", d, m)
	}
	// A new day starts from zero; the month keeps counting.
	if d, m := l2.Used("t", now.Add(24*time.Hour)); d != 0 || m != 30 {
		t.Fatalf("next day %d %d", d, m)
	}
	r := l2.Reserve("t", "three", 50, 0, 60, now)
	if r == nil || r.Period != "monthly" || r.RetryAfter <= 0 {
		t.Fatalf("%+v", r)
	}
}
