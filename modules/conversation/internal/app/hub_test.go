package app

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/tenant"
)

var acme = tenant.MustParse("acme")

// ranTurn is a turn of session that streamed tokens tokens of size bytes and is still running.
func ranTurn(tn tenant.ID, session string, tokens, size int) *Turn {
	_, cancel := context.WithCancelCause(context.Background())
	t := newTurn("turn-"+session, session, tn, time.Second, cancel)
	for i := 0; i < tokens; i++ {
		t.push("token", TokenData{Token: strings.Repeat("x", size)})
	}
	return t
}

func finish(t *Turn) {
	t.finish("done", DoneData{Model: "fake:m", RequestID: "r"}, Outcome{Content: "answer", Model: "fake:m"})
	t.Detach()
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// hubOf returns a hub with a budget of finished turns and a clock that only moves when told.
func hubOf(budget int64) (*Hub, *fakeClock) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	h := NewHub(budget, time.Minute)
	h.now = clk.now
	return h, clk
}

func TestHubDropsTheOldestFinishedTurnFirstToStayWithinItsBytes(t *testing.T) {
	t.Parallel()
	probe := ranTurn(acme, "sx", 20, 50) // the same sizes as s0…s4
	finish(probe)
	one := probe.compact()
	h, clk := hubOf(3 * one) // three finished turns fit, not four
	evicted := 0
	h.onEvict = func() { evicted++ }
	running := ranTurn(acme, "running", 2000, 50) // far larger than the budget, and never dropped
	h.put(running)
	var turns []*Turn
	for i := 0; i < 5; i++ {
		tr := ranTurn(acme, fmt.Sprint("s", i), 20, 50)
		h.put(tr)
		finish(tr)
		h.finished(tr)
		turns = append(turns, tr)
		clk.add(time.Second)
		if bytes, _ := h.Stats(); bytes > 3*one {
			t.Fatalf("after turn %d: %d bytes held over a budget of %d", i, bytes, 3*one)
		}
	}
	for i, tr := range turns {
		_, ok := h.Get(acme, tr.SessionID)
		if want := i >= 2; ok != want {
			t.Fatalf("turn %d held: %v, want %v (the two oldest dropped)", i, ok, want)
		}
	}
	if _, ok := h.Get(acme, "running"); !ok {
		t.Fatal("a running turn was dropped")
	}
	bytes, n := h.Stats()
	if bytes != 3*one || n != 3 || evicted != 2 {
		t.Fatalf("held %d bytes in %d turns after %d evictions, want %d in 3 after 2", bytes, n, evicted, 3*one)
	}
	// Another tenant's session of the same id is not found.
	if _, ok := h.Get(tenant.MustParse("globex"), "s4"); ok {
		t.Fatal("globex found acme's turn")
	}
	// The running turn, once finished, is larger than the whole budget: it is not kept, and the
	// smaller ones stay.
	finish(running)
	h.finished(running)
	if _, ok := h.Get(acme, "running"); ok {
		t.Fatal("a finished turn over the whole budget is held")
	}
	if _, n := h.Stats(); n != 3 {
		t.Fatalf("%d finished turns held, want 3", n)
	}
}

func TestHubForgetsFinishedTurnsAfterTheWindow(t *testing.T) {
	t.Parallel()
	h, clk := hubOf(1 << 20)
	old := ranTurn(acme, "old", 3, 5)
	h.put(old)
	finish(old)
	h.finished(old)
	clk.add(30 * time.Second)
	young := ranTurn(acme, "young", 3, 5)
	h.put(young)
	finish(young)
	h.finished(young)
	clk.add(31 * time.Second) // old's minute has passed, young's has not
	if _, ok := h.Get(acme, "old"); ok {
		t.Fatal("a turn past its window is resumable")
	}
	h.expire()
	if _, n := h.Stats(); n != 1 || h.Len() != 1 {
		t.Fatalf("%d finished turns (%d in all) held after old expired, want 1", n, h.Len())
	}
	if _, ok := h.Get(acme, "young"); !ok {
		t.Fatal("a turn inside its window was forgotten")
	}
	// The session's next turn replaces its finished one, whose bytes are given back.
	next := ranTurn(acme, "young", 1, 1)
	h.put(next)
	if bytes, n := h.Stats(); bytes != 0 || n != 0 {
		t.Fatalf("%d bytes in %d finished turns held after the session's next turn started", bytes, n)
	}
	if got, _ := h.Get(acme, "young"); got != next {
		t.Fatal("the session's latest turn is not the one found")
	}
}

// A reader that found a turn before it was dropped still reads all of it: dropping only stops new
// resumptions from finding it.
func TestADroppedTurnStillReplaysWholeToTheReaderThatHasIt(t *testing.T) {
	t.Parallel()
	h, _ := hubOf(1) // no finished turn fits
	tr := ranTurn(acme, "s", 4, 3)
	h.put(tr)
	got, ok := h.Get(acme, "s")
	if !ok {
		t.Fatal("running turn not found")
	}
	got.Attach()
	finish(tr)
	h.finished(tr)
	if _, ok := h.Get(acme, "s"); ok {
		t.Fatal("a finished turn over the budget is still found")
	}
	evs, done, err := got.Next(context.Background(), 0)
	got.Detach()
	if err != nil || !done || len(evs) != 5 || evs[4].Name != "done" {
		t.Fatalf("replay: %d events, done %v, %v; want the 4 tokens and done", len(evs), done, err)
	}
}

// BenchmarkHubAccounting holds finished turns as a chat turn leaves them and reports the heap they
// take per turn next to what the budget counts for them (heap/accounted: above 1, the budget is
// optimistic).
func BenchmarkHubAccounting(b *testing.B) {
	const n = 20000
	for i := 0; i < b.N; i++ {
		h := NewHub(1<<40, time.Hour)
		before := heapNow()
		for j := 0; j < n; j++ {
			ctx, cancel := context.WithCancelCause(context.WithoutCancel(context.Background()))
			_ = ctx
			tr := newTurn(fmt.Sprintf("0190b6a8-7a2e-7c3d-9e4f-%012d", j), fmt.Sprintf("0b0f6a52-6f7e-4c55-9a8e-%012d", j), acme, time.Second, cancel)
			tr.Model = "fake:zero"
			for _, tok := range []string{"I", " am", " fine", ",", " thank", " you", "."} {
				tr.push("token", TokenData{Token: strings.Clone(tok)})
			}
			h.put(tr)
			tr.finish("done", DoneData{Usage: UsageData{PromptTokens: 20, CompletionTokens: 7, TotalTokens: 27}, Model: "fake:zero", RequestID: "01J0000000000000000000000"},
				Outcome{Content: "I am fine, thank you.", Model: "fake:zero"})
			tr.Detach()
			h.finished(tr)
		}
		after := heapNow()
		bytes, held := h.Stats()
		b.ReportMetric(float64(after-before)/float64(held), "heap-B/turn")
		b.ReportMetric(float64(bytes)/float64(held), "accounted-B/turn")
		h.timer.Stop()
	}
}
