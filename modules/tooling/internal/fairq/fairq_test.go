package fairq_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/tooling/internal/fairq"
)

// waitFor polls cond (the queue is driven by goroutines).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// enqueue starts one Acquire per name (in this order, each queued before the next) and returns the
// order in which they are granted; each releases at once.
func enqueue(t *testing.T, q *fairq.Queue, names []string) (order chan string, wg *sync.WaitGroup) {
	t.Helper()
	order = make(chan string, len(names))
	wg = &sync.WaitGroup{}
	for _, n := range names {
		before := q.Waiting()
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := q.Acquire(context.Background(), n[:1])
			if err != nil {
				t.Error(err)
				return
			}
			order <- n
			release()
		}()
		waitFor(t, n+" queued", func() bool { return q.Waiting() == before+1 })
	}
	return order, wg
}

func TestTenantsAreServedRoundRobin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		queued []string
		want   string
	}{
		{"one tenant is FIFO", []string{"a1", "a2", "a3"}, "a1 a2 a3"},
		{"a late tenant waits one turn, not for the flood", []string{"a1", "a2", "a3", "a4", "a5", "b1", "c1"}, "a1 b1 c1 a2 a3 a4 a5"},
		{"interleaved arrivals take turns", []string{"a1", "a2", "b1", "b2", "a3", "c1"}, "a1 b1 c1 a2 b2 a3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := fairq.New(1)
			hold, err := q.Acquire(context.Background(), "x")
			if err != nil {
				t.Fatal(err)
			}
			order, wg := enqueue(t, q, tc.queued)
			hold()
			wg.Wait()
			close(order)
			got := ""
			for n := range order {
				got += n + " "
			}
			if got != tc.want+" " {
				t.Fatalf("served %q, want %q", got, tc.want)
			}
			if q.Active() != 0 || q.Waiting() != 0 {
				t.Fatalf("active %d, waiting %d after all released", q.Active(), q.Waiting())
			}
		})
	}
}

func TestAGiveUpLeavesTheQueueConsistent(t *testing.T) {
	t.Parallel()
	q := fairq.New(1)
	hold, _ := q.Acquire(context.Background(), "x")
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := q.Acquire(ctx, "b")
		gaveUp <- err
	}()
	waitFor(t, "b queued", func() bool { return q.Waiting() == 1 })
	order, wg := enqueue(t, q, []string{"a1", "a2", "c1"})
	cancel()
	if err := <-gaveUp; err != context.Canceled {
		t.Fatalf("gave up with %v", err)
	}
	if q.Waiting() != 3 {
		t.Fatalf("waiting %d after one gave up, want 3", q.Waiting())
	}
	hold()
	wg.Wait()
	close(order)
	got := ""
	for n := range order {
		got += n + " "
	}
	if got != "a1 c1 a2 " {
		t.Fatalf("served %q", got)
	}
	if q.Active() != 0 {
		t.Fatalf("a slot leaked: active %d", q.Active())
	}
}

func TestConcurrencyNeverExceedsTheLimit(t *testing.T) {
	t.Parallel()
	const limit = 3
	q := fairq.New(limit)
	var cur, peak atomic.Int64
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			if i%7 == 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Duration(i%5)*time.Millisecond)
				defer cancel()
			}
			release, err := q.Acquire(ctx, fmt.Sprint("t", i%4))
			if err != nil {
				return
			}
			n := cur.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(100 * time.Microsecond)
			cur.Add(-1)
			release()
			release() // a second release is a no-op
		}()
	}
	wg.Wait()
	if peak.Load() > limit {
		t.Fatalf("%d calls ran at once, limit %d", peak.Load(), limit)
	}
	if q.Active() != 0 || q.Waiting() != 0 {
		t.Fatalf("active %d, waiting %d at the end", q.Active(), q.Waiting())
	}
}
