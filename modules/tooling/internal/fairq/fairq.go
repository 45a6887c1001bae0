// Package fairq bounds the calls in flight of one tool and shares its slots fairly between tenants.
// Each tenant waits in its own FIFO queue and a freed slot goes to the next tenant in round-robin
// order, so however many calls one tenant queues, another tenant's call waits for about one slot per
// tenant ahead of it in the round, not for the whole flood.
package fairq

import (
	"context"
	"slices"
	"sync"
)

// Queue is a counting semaphore with per-tenant queues served round-robin.
type Queue struct {
	mu      sync.Mutex
	limit   int
	active  int                  // slots held
	queues  map[string][]*waiter // tenants with waiters; FIFO each
	ring    []string             // those tenants, in turn order
	next    int                  // index in ring of the tenant served next
	waiting int
}

type waiter struct {
	ready   chan struct{} // closed when the slot is handed over
	granted bool
}

// New returns a Queue of limit slots (at least 1).
func New(limit int) *Queue {
	if limit < 1 {
		limit = 1
	}
	return &Queue{limit: limit, queues: map[string][]*waiter{}}
}

// Acquire waits for a slot for tenant, in the tenant's turn. It returns the function that gives the
// slot back (call it once), or ctx's error if ctx ends first.
func (q *Queue) Acquire(ctx context.Context, tenant string) (release func(), err error) {
	q.mu.Lock()
	// A freed slot is handed to a waiter directly, so a free slot means nobody waits.
	if q.active < q.limit {
		q.active++
		q.mu.Unlock()
		return q.releaser(), nil
	}
	w := &waiter{ready: make(chan struct{})}
	if len(q.queues[tenant]) == 0 {
		q.ring = append(q.ring, tenant)
	}
	q.queues[tenant] = append(q.queues[tenant], w)
	q.waiting++
	q.mu.Unlock()

	select {
	case <-w.ready:
		return q.releaser(), nil
	case <-ctx.Done():
	}
	q.mu.Lock()
	if w.granted {
		// The slot arrived as ctx ended: pass it on.
		q.mu.Unlock()
		q.release()
		return nil, ctx.Err()
	}
	q.remove(tenant, w)
	q.mu.Unlock()
	return nil, ctx.Err()
}

func (q *Queue) releaser() func() {
	var once sync.Once
	return func() { once.Do(q.release) }
}

// release hands the slot to the head waiter of the tenant whose turn it is, or frees it.
func (q *Queue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.ring) == 0 {
		q.active--
		return
	}
	if q.next >= len(q.ring) {
		q.next = 0
	}
	tenant := q.ring[q.next]
	ws := q.queues[tenant]
	w := ws[0]
	ws[0] = nil
	if len(ws) == 1 {
		delete(q.queues, tenant)
		q.ring = slices.Delete(q.ring, q.next, q.next+1) // the next tenant moves up to q.next
	} else {
		q.queues[tenant] = ws[1:]
		q.next++
	}
	q.waiting--
	w.granted = true
	close(w.ready)
}

// remove takes a waiter that gave up out of its tenant's queue. Called with q.mu held.
func (q *Queue) remove(tenant string, w *waiter) {
	ws := q.queues[tenant]
	i := slices.Index(ws, w)
	if i < 0 {
		return
	}
	q.waiting--
	if len(ws) > 1 {
		q.queues[tenant] = slices.Delete(ws, i, i+1)
		return
	}
	delete(q.queues, tenant)
	r := slices.Index(q.ring, tenant)
	q.ring = slices.Delete(q.ring, r, r+1)
	if r < q.next {
		q.next--
	}
}

// Waiting is the number of calls waiting for a slot.
func (q *Queue) Waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiting
}

// Active is the number of slots held.
func (q *Queue) Active() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.active
}
