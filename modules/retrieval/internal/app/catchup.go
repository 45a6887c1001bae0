package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/health"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The search index is a projection of each tenant's document events, and it keeps, per tenant, a
// checkpoint (search.Index) with this invariant:
//
//	every document whose last event is at or below the checkpoint shows that event's state in the index.
//
// Catching a tenant up from its checkpoint therefore means: read the tenant's events after it, and
// reapply every document they touch from the document's LATEST events, holding that document's lock
// (the lock every ingest and delete of it holds from its append to its index update). A live write of
// the document either finished before (its event is in what the reapply reads, so the reapply shows
// it) or waits and runs after (and then shows its own, newer, state): live writes win, and nothing is
// resurrected or lost, whether they land before, during or after the rebuild. Once every touched
// document is reapplied, the invariant holds for the highest position read.
//
// Live writes move the checkpoint forward without a replay: before its append, a write registers its
// document as unapplied with a lower bound (every position known at that moment, which its event
// will exceed); the registration is removed once the index shows the document. The checkpoint may
// advance to the lowest bound still registered (or to the highest position applied). A write whose
// index update failed stays registered, so the checkpoint stays below its event and the next start
// replays it: the retry of a failed update survives a restart. The index stores the checkpoint with
// the content it describes (the embedded index: in the same snapshot), so a crash between an
// acknowledged ingest and the next snapshot is replayed from the log at the next start.
//
// While a tenant catches up, reads of its index are refused as catching_up (503 with retry-after):
// a partial index never answers. Writes are taken.

// phase is where a tenant's index stands in this process.
type phase uint8

const (
	// phaseUnknown: no catch-up ran for the tenant in this process (the CLI's ingest, tests without a
	// tenants list). Reads are served unless the module waits for its start-up catch-up; the
	// checkpoint is left as the index had it.
	phaseUnknown phase = iota
	// phaseCatchingUp: reads refused until the catch-up completes.
	phaseCatchingUp
	// phaseCaughtUp: reads served; the checkpoint follows live writes.
	phaseCaughtUp
)

// pendingWrite is a document with an event that may not be in the index yet.
type pendingWrite struct {
	low    eventstore.Position // every such event of the document is above this position
	failed bool                // its write returned with the index update failed (the retry loop's)
}

// tenantIndex is what the service knows of one tenant's index.
type tenantIndex struct {
	cpMu sync.Mutex // serialises a checkpoint's SetCheckpoint with a rebuild's reset and DeleteTenant

	mu       sync.Mutex
	phase    phase
	running  bool                // a catch-up or rebuild of the tenant is in progress: one at a time
	safe     eventstore.Position // the checkpoint the index has (loaded, or last set)
	seen     eventstore.Position // highest position known to be applied (a catch-up's end, an applied write)
	pending  map[string]*pendingWrite
	done     int // catch-up progress, in documents
	total    int
	lastErr  error
	attempts int
}

// checkpointLocked is the highest checkpoint the invariant allows now. Caller holds mu.
func (ti *tenantIndex) checkpointLocked() eventstore.Position {
	if ti.phase != phaseCaughtUp {
		return ti.safe
	}
	p := ti.seen
	for _, w := range ti.pending {
		p = min(p, w.low)
	}
	return max(p, ti.safe)
}

// tenantIndex returns t's state, creating it.
func (s *Service) tenantIndex(t tenant.ID) *tenantIndex {
	s.indexesMu.Lock()
	defer s.indexesMu.Unlock()
	if s.indexes == nil {
		s.indexes = map[tenant.ID]*tenantIndex{}
	}
	ti := s.indexes[t]
	if ti == nil {
		ti = &tenantIndex{pending: map[string]*pendingWrite{}}
		s.indexes[t] = ti
	}
	return ti
}

func (s *Service) tenantIndexes() map[tenant.ID]*tenantIndex {
	s.indexesMu.Lock()
	defer s.indexesMu.Unlock()
	out := make(map[tenant.ID]*tenantIndex, len(s.indexes))
	for t, ti := range s.indexes {
		out[t] = ti
	}
	return out
}

// WaitForStartUp makes reads of every tenant wait (catching_up) until CatchUpAll has run: the module
// sets it when Run will catch its tenants up.
func (s *Service) WaitForStartUp() {
	s.starting.Store(true)
	s.scanned = make(chan struct{})
}

// WaitScanned returns once CatchUpAll knows what each tenant has to catch up (a tenant with nothing
// to reapply is served from then on), or when ctx ends. It returns at once without WaitForStartUp.
func (s *Service) WaitScanned(ctx context.Context) error {
	if s.scanned == nil {
		return nil
	}
	select {
	case <-s.scanned:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ready reports whether t's index may answer reads.
func (s *Service) ready(t tenant.ID) bool {
	ti := s.tenantIndex(t)
	ti.mu.Lock()
	defer ti.mu.Unlock()
	switch ti.phase {
	case phaseCaughtUp:
		return true
	case phaseCatchingUp:
		return false
	default:
		return !s.starting.Load()
	}
}

// catchingUpRetryAfter is the retry-after of a refusal while catching up: long enough not to hammer,
// short enough that a client gets its answer soon after the index is complete.
const catchingUpRetryAfter = 2

// requireReady refuses a read of t's index while it catches up.
func (s *Service) requireReady(t tenant.ID) error {
	if s.ready(t) {
		return nil
	}
	return apperr.CatchingUp("this tenant's search index", catchingUpRetryAfter)
}

// beginWrite registers a write of docID before its append (see the invariant above). Caller holds
// the document's lock.
func (s *Service) beginWrite(t tenant.ID, docID string) {
	ti := s.tenantIndex(t)
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if _, ok := ti.pending[docID]; !ok {
		ti.pending[docID] = &pendingWrite{low: max(ti.seen, ti.safe)}
	}
}

// endWrite records how a write of docID ended: not recorded (the append was refused; any older
// pending state stays), recorded, or maybe recorded (appendMayHaveRecorded), but not applied (the
// retry loop and the next start take it), or applied at
// pos (the index shows the document's latest state). Caller holds the document's lock.
func (s *Service) endWrite(t tenant.ID, docID string, pos eventstore.Position, recorded, applied bool) {
	ti := s.tenantIndex(t)
	ti.mu.Lock()
	defer ti.mu.Unlock()
	w := ti.pending[docID]
	switch {
	case applied:
		delete(ti.pending, docID)
		ti.seen = max(ti.seen, pos)
	case recorded:
		if w != nil {
			w.failed = true
		}
	default:
		if w != nil && !w.failed {
			delete(ti.pending, docID)
		}
	}
}

// appendMayHaveRecorded reports whether a failed append may still be in the log. A refusal the store
// names (a conflict, a storage fault, a closed, read-only or deleted target, an invalid append)
// recorded nothing; any other failure (a deadline, a lost connection) can end the call after the
// engine took the event, so the write stays pending: the checkpoint stays below it and the retry
// loop reapplies the document from whatever the log holds.
func appendMayHaveRecorded(err error) bool {
	for _, refused := range []error{eventstore.ErrConflict, eventstore.ErrStorageUnavailable, eventstore.ErrClosed,
		eventstore.ErrReadOnly, eventstore.ErrStreamDeleted, eventstore.ErrInvalid} {
		if errors.Is(err, refused) {
			return false
		}
	}
	return true
}

// docRef is a document a catch-up reapplies: its id and the last revision of its stream it read.
type docRef struct {
	id  string
	rev uint64
}

// catchUpPlan is what a catch-up of one tenant reapplies.
type catchUpPlan struct {
	t    tenant.ID
	ti   *tenantIndex
	hi   eventstore.Position // the highest position read
	docs []docRef
}

// scan reads t's events after from and lists the documents they touch.
func (s *Service) scan(ctx context.Context, t tenant.ID, ti *tenantIndex, from eventstore.Position) (catchUpPlan, error) {
	p := catchUpPlan{t: t, ti: ti, hi: from}
	prefix := t.StreamPrefix() + events.DocCategory + "-"
	byStream := map[string]*docRef{}
	err := s.eachEvent(ctx, t, from, func(e eventstore.Event) error {
		p.hi = max(p.hi, e.Position)
		if !strings.HasPrefix(e.Stream, prefix) || (e.Type != events.TypeDocumentIngested && e.Type != events.TypeDocumentDeleted) {
			return nil
		}
		r := byStream[e.Stream]
		if r == nil {
			var id struct {
				DocID string `json:"docId"`
			}
			if err := json.Unmarshal(e.Data, &id); err != nil || id.DocID == "" {
				return fmt.Errorf("read %s: %s@%d has no docId: %v", t, e.Stream, e.Revision, err)
			}
			r = &docRef{id: id.DocID}
			byStream[e.Stream] = r
		}
		r.rev = e.Revision
		return nil
	})
	if err != nil {
		return p, err
	}
	for _, r := range byStream {
		p.docs = append(p.docs, *r)
	}
	slices.SortFunc(p.docs, func(a, b docRef) int { return strings.Compare(a.id, b.id) })
	return p, nil
}

// reapply makes the index show every document of the plan as its latest events say, each under its
// document's lock (see the invariant above).
func (s *Service) reapply(ctx context.Context, p catchUpPlan, progress func(done, total int, docID string)) (ReindexResult, error) {
	var res ReindexResult
	p.ti.mu.Lock()
	p.ti.done, p.ti.total = 0, len(p.docs)
	p.ti.mu.Unlock()
	for i, r := range p.docs {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		// A document's state is its last event's: nothing before the last one the scan read matters.
		exists, chunks, err := s.reapplyDoc(ctx, p.t, r.id, r.rev)
		if err != nil {
			return res, fmt.Errorf("reindex %q: %w", r.id, err)
		}
		if exists {
			res.Documents++
			res.Chunks += chunks
		}
		p.ti.mu.Lock()
		p.ti.done = i + 1
		p.ti.mu.Unlock()
		if progress != nil {
			progress(i+1, len(p.docs), r.id)
		}
	}
	return res, nil
}

// finish marks the plan's tenant caught up to the plan's end, and sets its checkpoint.
func (s *Service) finish(ctx context.Context, p catchUpPlan) {
	p.ti.mu.Lock()
	p.ti.seen = max(p.ti.seen, p.hi)
	p.ti.phase, p.ti.lastErr, p.ti.attempts = phaseCaughtUp, nil, 0
	p.ti.mu.Unlock()
	s.Cache.Invalidate(p.t)
	s.pushCheckpoint(ctx, p.t, p.ti)
}

// fail records a failed catch-up of the plan's tenant: it stays catching up, and Retry tries again.
func (s *Service) fail(p catchUpPlan, err error) {
	p.ti.mu.Lock()
	p.ti.lastErr = err
	p.ti.attempts++
	p.ti.mu.Unlock()
	s.Log.Error("retrieval: catching the index up with the event log failed; retrying later", "tenant", p.t.String(), "error", err)
}

// plan starts a catch-up of t from its index's checkpoint: it marks the tenant catching up and scans
// its events. It returns false when another catch-up of t is running.
func (s *Service) plan(ctx context.Context, t tenant.ID) (catchUpPlan, bool, error) {
	ti := s.tenantIndex(t)
	ti.mu.Lock()
	if ti.running {
		ti.mu.Unlock()
		return catchUpPlan{}, false, nil
	}
	ti.running = true
	if ti.phase != phaseCaughtUp {
		ti.phase = phaseCatchingUp
	}
	ti.mu.Unlock()
	cp, err := s.Index.Checkpoint(ctx, t)
	if err != nil {
		return catchUpPlan{t: t, ti: ti}, true, indexErr(err, false)
	}
	last, err := s.Store.LastPosition(ctx)
	if err != nil {
		return catchUpPlan{t: t, ti: ti}, true, fmt.Errorf("read the log's last position: %w", err)
	}
	if cp > uint64(last) {
		// The index claims positions the log does not have: it was built from another log (or the
		// log was restored from an older backup). Nothing in it can be trusted: rebuild from the start.
		s.Log.Warn("retrieval: the index's checkpoint is beyond the end of the event log; rebuilding the tenant from the beginning",
			"tenant", t.String(), "checkpoint", cp, "lastPosition", uint64(last))
		if err := s.reset(ctx, t, ti); err != nil {
			return catchUpPlan{t: t, ti: ti}, true, err
		}
		cp = 0
	}
	ti.mu.Lock()
	ti.safe = max(ti.safe, eventstore.Position(cp))
	ti.mu.Unlock()
	p, err := s.scan(ctx, t, ti, eventstore.Position(cp))
	return p, true, err
}

func (p catchUpPlan) release() {
	p.ti.mu.Lock()
	p.ti.running = false
	p.ti.mu.Unlock()
}

// CatchUpAll catches every tenant of ts up with the event log (the module's start). Every tenant is
// refused reads until its own catch-up completes; tenants with the least to reapply go first, so a
// tenant whose index is complete is served at once. A tenant that fails stays refused, and Retry
// tries it again. When it returns, tenants outside ts are served too.
func (s *Service) CatchUpAll(ctx context.Context, ts []tenant.ID) {
	defer s.starting.Store(false)
	scanned := func() {
		if s.scanned != nil {
			s.scanOnce.Do(func() { close(s.scanned) })
		}
	}
	defer scanned()
	for _, t := range ts {
		ti := s.tenantIndex(t)
		ti.mu.Lock()
		if ti.phase != phaseCaughtUp {
			ti.phase = phaseCatchingUp
		}
		ti.mu.Unlock()
	}
	var plans []catchUpPlan
	for _, t := range ts {
		p, ok, err := s.plan(ctx, t)
		if !ok {
			continue
		}
		if err != nil {
			s.fail(p, err)
			p.release()
			continue
		}
		if len(p.docs) == 0 { // nothing changed since the checkpoint: serve the tenant now
			_, _ = s.runPlan(ctx, p, nil)
			continue
		}
		plans = append(plans, p)
	}
	scanned()
	slices.SortStableFunc(plans, func(a, b catchUpPlan) int { return len(a.docs) - len(b.docs) })
	for _, p := range plans {
		s.runPlan(ctx, p, nil)
	}
}

// catchUp catches t up from its index's checkpoint now, unless it is caught up or another catch-up
// of it runs. A failure leaves t catching up, for Retry.
func (s *Service) catchUp(ctx context.Context, t tenant.ID) error {
	ti := s.tenantIndex(t)
	ti.mu.Lock()
	caughtUp := ti.phase == phaseCaughtUp
	ti.mu.Unlock()
	if caughtUp {
		return nil
	}
	p, ok, err := s.plan(ctx, t)
	if !ok {
		return nil
	}
	if err != nil {
		s.fail(p, err)
		p.release()
		return err
	}
	_, err = s.runPlan(ctx, p, nil)
	return err
}

// runPlan reapplies a scanned plan and finishes it.
func (s *Service) runPlan(ctx context.Context, p catchUpPlan, progress func(done, total int, docID string)) (ReindexResult, error) {
	defer p.release()
	res, err := s.reapply(ctx, p, progress)
	if err != nil {
		if ctx.Err() == nil {
			s.fail(p, err)
		}
		return res, err
	}
	s.finish(ctx, p)
	if len(p.docs) > 0 {
		s.Log.Info("retrieval: index rebuilt from events", "tenant", p.t.String(), "documents", res.Documents, "chunks", res.Chunks,
			"changedSinceCheckpoint", len(p.docs))
	}
	return res, nil
}

// pushCheckpoint gives the index t's checkpoint when it moved.
func (s *Service) pushCheckpoint(ctx context.Context, t tenant.ID, ti *tenantIndex) {
	ti.cpMu.Lock()
	defer ti.cpMu.Unlock()
	ti.mu.Lock()
	cp, ok := ti.checkpointLocked(), ti.phase == phaseCaughtUp
	if !ok || cp <= ti.safe {
		ti.mu.Unlock()
		return
	}
	ti.mu.Unlock()
	if err := s.Index.SetCheckpoint(ctx, t, uint64(cp)); err != nil {
		s.Log.Warn("retrieval: could not record the index checkpoint", "tenant", t.String(), "error", err)
		return
	}
	ti.mu.Lock()
	ti.safe = max(ti.safe, cp)
	ti.mu.Unlock()
}

// PushCheckpoints gives the index every caught-up tenant's checkpoint (before each snapshot).
func (s *Service) PushCheckpoints(ctx context.Context) {
	for t, ti := range s.tenantIndexes() {
		s.pushCheckpoint(ctx, t, ti)
	}
}

// Retry catches up tenants whose catch-up failed, and reapplies documents whose index update failed
// (the index was down); Run calls it periodically.
func (s *Service) Retry(ctx context.Context) {
	for t, ti := range s.tenantIndexes() {
		ti.mu.Lock()
		again := ti.phase == phaseCatchingUp && !ti.running && ti.lastErr != nil
		var failed []string
		for id, w := range ti.pending {
			if w.failed {
				failed = append(failed, id)
			}
		}
		ti.mu.Unlock()
		if again {
			_ = s.catchUp(ctx, t) // a failure is logged and retried on the next tick
		}
		reapplied := 0
		for _, id := range failed {
			if _, _, err := s.reapplyDoc(ctx, t, id, 0); err != nil {
				s.Log.Warn("retrieval: index still behind", "tenant", t.String(), "docId", id, "error", err)
				break // the index is probably still down; try again next tick
			}
			reapplied++
		}
		if reapplied > 0 {
			s.Cache.Invalidate(t) // answers cached while these documents were missing are stale now
		}
	}
}

// reapplyDoc makes the index show docID's latest state, folded from its stream's revision from on,
// under the document's lock (see the invariant above). It reports whether the document exists and
// how many chunks it indexed.
func (s *Service) reapplyDoc(ctx context.Context, t tenant.ID, docID string, from uint64) (exists bool, chunks int, err error) {
	unlock := s.docLock(t, docID)
	defer unlock()
	d, err := s.loadDoc(ctx, t, docID, from)
	if err != nil {
		return false, 0, err
	}
	if chunks, err = s.applyToIndex(ctx, t, d, docID); err != nil {
		return false, 0, err
	}
	s.endWrite(t, docID, eventstore.Position(d.Position), true, true)
	return d.Exists, chunks, nil
}

// Health reports the catch-up of the tenant in ctx (of every tenant when ctx has none) for GET
// /health: nil when its index is complete, a health.CatchingUpState with its progress (documents
// reapplied of those to reapply) while it catches up. It never names another tenant.
func (s *Service) Health(ctx context.Context) error {
	if t, ok := tenant.FromContext(ctx); ok {
		ti := s.tenantIndex(t)
		ti.mu.Lock()
		defer ti.mu.Unlock()
		switch {
		case ti.phase == phaseCatchingUp:
			return health.CatchingUpState("this tenant's search index is being rebuilt from the event log"+retrying(ti), uint64(ti.done), uint64(ti.total))
		case ti.phase == phaseUnknown && s.starting.Load():
			return health.CatchingUpState("the search index is starting: waiting to catch up with the event log", 0, 0)
		}
		return nil
	}
	var behind, all int
	for _, ti := range s.tenantIndexes() {
		ti.mu.Lock()
		if ti.phase == phaseCatchingUp {
			behind++
		}
		if ti.phase != phaseUnknown {
			all++
		}
		ti.mu.Unlock()
	}
	if behind > 0 || s.starting.Load() {
		return health.CatchingUpState("the search index is being rebuilt from the event log (tenants caught up, of all)", uint64(all-behind), uint64(all))
	}
	return nil
}

func retrying(ti *tenantIndex) string {
	if ti.lastErr == nil {
		return ""
	}
	if e, ok := apperr.As(ti.lastErr); ok {
		return fmt.Sprintf(" (attempt %d failed: %s; retrying)", ti.attempts, e.Message)
	}
	if errors.Is(ti.lastErr, context.DeadlineExceeded) {
		return fmt.Sprintf(" (attempt %d timed out; retrying)", ti.attempts)
	}
	return fmt.Sprintf(" (attempt %d failed; retrying)", ti.attempts)
}
