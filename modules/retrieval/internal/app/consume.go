package app

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The search index is a consumer of the document events, fed by the bus; the request path only
// records events and waits (bounded) for its own replica to have applied them.
//
// Embedded index (one per replica): a bus projection. Its bbolt state holds, per document, the
// revision and position of the last event applied and whether it deleted the document; the
// index itself keeps, per tenant, a checkpoint C_t in its own snapshot: every document event of t
// at or below C_t is in that snapshot. The handler of an event at position X:
//   - skips it when the state holds the document at this or a newer revision (a redelivery, or an
//     older revision after a delete: nothing is resurrected);
//   - records it without touching the index when X <= C_t (the snapshot has it: a read model rebuilt
//     from zero over a kept index costs no embedding);
//   - else embeds and writes the document (an unavailable index or embedder is an Unavailable
//     error: the bus retries until it heals, never passes the event), then sets C_t = X.
//
// The bus commits the state and its position every few thousand events (catching up) or batch
// (live), the index writes its snapshot every FlushInterval: after a crash the state may be ahead
// of the snapshot. So before it applies anything, and before the first search, the module repairs:
// every document the state records above its tenant's C_t is reapplied from its stream's latest
// events (a bbolt scan, ∝ documents, and one stream read per document changed since the last
// snapshot), and C_t moves to the highest such position. The repaired revision is remembered so the
// handler never applies an older one over it.
//
// Elasticsearch (shared by the replicas): a bus processor (once per deployment) writes it; an
// event whose document has a newer revision in the store is skipped, so a redelivered or older
// revision never overwrites a newer one and a delete wins over older ingests. Once the index shows
// an event, the writer records DocumentIndexed; each replica's projection drops its search cache and
// answers its waiting ingests on that (not on the document event, which the index may take later).

// DocState is what the index projection records of one document.
type DocState struct {
	Revision uint64
	Position eventstore.Position
	Deleted  bool
}

const docStateLen = 17

func docKey(t tenant.ID, docID string) []byte {
	k := make([]byte, 0, len(t.String())+1+len(docID))
	k = append(k, t.String()...)
	k = append(k, 0)
	return append(k, docID...)
}

func splitDocKey(k []byte) (tenant.ID, string, bool) {
	for i, c := range k {
		if c == 0 {
			t, err := tenant.Parse(string(k[:i]))
			return t, string(k[i+1:]), err == nil
		}
	}
	return tenant.ID{}, "", false
}

func encodeDocState(s DocState) []byte {
	v := make([]byte, docStateLen)
	binary.BigEndian.PutUint64(v[0:], s.Revision)
	binary.BigEndian.PutUint64(v[8:], uint64(s.Position))
	if s.Deleted {
		v[16] = 1
	}
	return v
}

func decodeDocState(v []byte) (DocState, bool) {
	if len(v) != docStateLen {
		return DocState{}, false
	}
	return DocState{Revision: binary.BigEndian.Uint64(v[0:]), Position: eventstore.Position(binary.BigEndian.Uint64(v[8:])), Deleted: v[16] == 1}, true
}

// DocEvent is one document event as the consumers get it.
type DocEvent struct {
	Tenant   tenant.ID
	DocID    string
	Revision uint64
	Position eventstore.Position
	Ingested *events.DocumentIngested // nil: deleted
}

// watermark is the highest document event position this replica has applied; ingests wait on it.
type watermark struct {
	mu  sync.Mutex
	pos eventstore.Position
	ch  chan struct{}
}

func (w *watermark) advance(p eventstore.Position) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p <= w.pos {
		return
	}
	w.pos = p
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}

// wait blocks until the watermark reaches p; false when ctx ended first.
func (w *watermark) wait(ctx context.Context, p eventstore.Position) bool {
	for {
		w.mu.Lock()
		if w.pos >= p {
			w.mu.Unlock()
			return true
		}
		if w.ch == nil {
			w.ch = make(chan struct{})
		}
		ch := w.ch
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// Applied is the highest document event position this replica has applied.
func (s *Service) Applied() eventstore.Position {
	s.applied.mu.Lock()
	defer s.applied.mu.Unlock()
	return s.applied.pos
}

// prepared hands the chunks an ingest embedded to this replica's consumer, so the document is not
// embedded twice. Keyed by tenant, document and content hash; taken once.
type preparedKey struct {
	t           tenant.ID
	docID, hash string
	model       string
}

func (s *Service) putPrepared(t tenant.ID, ev events.DocumentIngested, chunks []search.Chunk) func() {
	k := preparedKey{t, ev.DocID, ev.ContentHash, ev.EmbeddingModel}
	s.prepared.Store(k, chunks)
	return func() { s.prepared.Delete(k) }
}

func (s *Service) takePrepared(t tenant.ID, ev *events.DocumentIngested) ([]search.Chunk, bool) {
	v, ok := s.prepared.LoadAndDelete(preparedKey{t, ev.DocID, ev.ContentHash, ev.EmbeddingModel})
	if !ok {
		return nil, false
	}
	return v.([]search.Chunk), true
}

// writeDoc makes the index show e's state: its chunks, or none.
func (s *Service) writeDoc(ctx context.Context, e DocEvent) error {
	s.ahead.forget(e.Tenant, e.DocID) // whatever was written ahead of it is replaced
	if e.Ingested == nil {
		if err := s.Index.DeleteDoc(ctx, e.Tenant, e.DocID); err != nil {
			return indexErr(err, true)
		}
		return nil
	}
	chunks, err := s.ingestedChunks(ctx, e)
	if err != nil {
		return err
	}
	return s.replaceChunks(ctx, e.Tenant, e.DocID, e.Ingested.Key, chunks)
}

// ingestedChunks are the chunks of e's ingest: those its ingest prepared on this replica, or
// embedded now.
func (s *Service) ingestedChunks(ctx context.Context, e DocEvent) ([]search.Chunk, error) {
	if chunks, ok := s.takePrepared(e.Tenant, e.Ingested); ok {
		return chunks, nil
	}
	return s.indexChunks(ctx, e.Tenant, *e.Ingested)
}

// ApplyToIndex is the embedded index projection's handler (see the top of this file). b is the
// projection's bucket in the handler's write transaction; batch, when not nil, is e's bus batch
// (PrepareBatch), whose later ingests it may write to the index with e's (writeDocs).
func (s *Service) ApplyToIndex(ctx context.Context, b *bolt.Bucket, e DocEvent, batch *BatchSlot) error {
	if err := s.repair(ctx, b); err != nil {
		return err
	}
	if err := s.verifyTenant(ctx, e.Tenant); err != nil {
		return err
	}
	key := docKey(e.Tenant, e.DocID)
	if cur, ok := decodeDocState(b.Get(key)); ok && cur.Revision >= e.Revision {
		s.done(e)
		return nil // a redelivery, or older than what the index shows
	}
	if rev, ok := s.repaired.Load(string(key)); ok && rev.(uint64) >= e.Revision {
		s.done(e)
		return b.Put(key, encodeDocState(DocState{Revision: e.Revision, Position: e.Position, Deleted: e.Ingested == nil}))
	}
	cp, err := s.Index.Checkpoint(ctx, e.Tenant)
	if err != nil {
		return indexErr(err, true)
	}
	if uint64(e.Position) > cp {
		if !s.ahead.take(e) {
			if err := s.writeDocs(ctx, b, e, batch, cp); err != nil {
				return err
			}
		}
		if err := s.Index.SetCheckpoint(ctx, e.Tenant, uint64(e.Position)); err != nil {
			return indexErr(err, true)
		}
	}
	if err := b.Put(key, encodeDocState(DocState{Revision: e.Revision, Position: e.Position, Deleted: e.Ingested == nil})); err != nil {
		return err
	}
	s.done(e)
	return nil
}

// An ingest's document is written to the index in the projection's order, one event after the
// other. Under load or while catching up, the events of a bus batch are many, and the index links
// the chunks of one write on every core (and pays its fixed costs once): so the handler of the
// batch's first ingest that must be written also writes, in the same Upsert, the batch's following
// ingests of the same tenant that the handler would write when their turn comes ("ahead"):
// each a document not met before in the group, at a newer revision than the state records and not
// repaired, above the tenant's checkpoint. The checkpoint still moves one event at a time, in order
// (SetCheckpoint(X) only once every document event of the tenant up to X is in the index), so a
// crash or a snapshot in between leaves written-ahead documents above it, which the start-up
// repair writes again (idempotent). When an event written ahead has its turn, the handler finds it
// in `ahead` and only records it. Any in-order write of the same document in between (a deletion,
// or a write the group did not take) replaces what was written ahead and forgets it, so a
// deletion between an ingest and its turn is applied, then the ingest written again in order.
// Emptying a tenant's index forgets what was written ahead for it.

// BatchSlot is one ingest event's place in its bus batch (PrepareBatch).
type BatchSlot struct {
	batch *[]DocEvent
	i     int
}

// PrepareBatch is the index projection's Prepare handler: it gives each ingest of a bus batch its
// place among the batch's ingests, for writeDocs. It does no work and keeps nothing.
func PrepareBatch(evs []DocEvent) []*BatchSlot {
	out := make([]*BatchSlot, len(evs))
	for i := range evs {
		out[i] = &BatchSlot{batch: &evs, i: i}
	}
	return out
}

// maxAhead bounds the documents one write takes: their vectors are held together, and a write
// holds the tenant's partition.
const maxAhead = 64

// aheadKey names a document written ahead of its turn.
type aheadKey struct {
	t     tenant.ID
	docID string
}

// written is what was written ahead: the event's revision and position.
type written struct {
	rev uint64
	pos eventstore.Position
}

// aheadSet is the documents written ahead of their events' turn.
type aheadSet struct {
	mu sync.Mutex
	m  map[aheadKey]written
}

func (a *aheadSet) put(e DocEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[aheadKey]written{}
	}
	a.m[aheadKey{e.Tenant, e.DocID}] = written{e.Revision, e.Position}
}

func (a *aheadSet) has(t tenant.ID, docID string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.m[aheadKey{t, docID}]
	return ok
}

// take reports whether e itself was written ahead, and forgets it.
func (a *aheadSet) take(e DocEvent) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := aheadKey{e.Tenant, e.DocID}
	w, ok := a.m[k]
	if !ok {
		return false
	}
	delete(a.m, k)
	return w.rev == e.Revision && w.pos == e.Position
}

func (a *aheadSet) forget(t tenant.ID, docID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.m, aheadKey{t, docID})
}

// forgetTenant forgets t's documents (its index was emptied).
func (a *aheadSet) forgetTenant(t tenant.ID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range a.m {
		if k.t == t {
			delete(a.m, k)
		}
	}
}

// writeDocs writes e's document (writeDoc) and, when e is an ingest with its batch, the batch's
// following ingests the handler would write in their turn (see above), in one Upsert. b is the
// projection's bucket, cp e's tenant's checkpoint.
func (s *Service) writeDocs(ctx context.Context, b *bolt.Bucket, e DocEvent, batch *BatchSlot, cp uint64) error {
	if e.Ingested == nil || batch == nil {
		return s.writeDoc(ctx, e)
	}
	group := []DocEvent{e}
	seen := map[string]bool{e.DocID: true}
	evs := *batch.batch
	for j := batch.i + 1; j < len(evs) && len(group) < maxAhead; j++ {
		n := evs[j]
		if n.Tenant != e.Tenant || n.Ingested == nil || seen[n.DocID] || uint64(n.Position) <= cp || s.ahead.has(n.Tenant, n.DocID) {
			continue
		}
		seen[n.DocID] = true // later ingests of this document wait for their turn
		key := docKey(n.Tenant, n.DocID)
		if cur, ok := decodeDocState(b.Get(key)); ok && cur.Revision >= n.Revision {
			continue
		}
		if rev, ok := s.repaired.Load(string(key)); ok && rev.(uint64) >= n.Revision {
			continue
		}
		group = append(group, n)
	}
	if len(group) == 1 {
		return s.writeDoc(ctx, e)
	}
	var all []search.Chunk
	for _, g := range group {
		chunks, err := s.ingestedChunks(ctx, g)
		if err == nil {
			chunks, err = s.clearForChunks(ctx, g.Tenant, g.DocID, g.Ingested.Key, chunks)
		}
		if err != nil {
			return err
		}
		all = append(all, chunks...)
	}
	// A failure leaves some of the documents written: each is written again in its turn.
	if len(all) > 0 {
		if err := s.Index.Upsert(ctx, e.Tenant, all); err != nil {
			return indexErr(err, true)
		}
	}
	for _, g := range group[1:] {
		s.ahead.put(g)
	}
	return nil
}

// done notes e as applied on this replica: its tenant's cached answers go, ingests waiting on it
// return.
func (s *Service) done(e DocEvent) {
	s.Cache.Invalidate(e.Tenant)
	s.applied.advance(e.Position)
}

// SkipErased notes an erased document event (an ingest whose key was destroyed, seen by a consumer
// catching up after the deletion) as applied without touching the index: its docId went with its
// content, and the deletion that follows it in its stream removes the document.
func (s *Service) SkipErased(t tenant.ID, pos eventstore.Position) {
	s.done(DocEvent{Tenant: t, Position: pos})
}

// SeenIndexed is the handler of the projection that, with a shared index, drops this replica's
// search cache and lets ingests waiting on this replica return once the shared index shows a
// document event (DocumentIndexed, recorded by WriteShared): not on the document event itself,
// which the index may take later, so a search in between would cache the old answer and the
// ingest would be acknowledged before the index had it.
func (s *Service) SeenIndexed(t tenant.ID, ev events.DocumentIndexed) {
	s.done(DocEvent{Tenant: t, DocID: ev.DocID, Revision: ev.Revision, Position: eventstore.Position(ev.Position)})
}

// WriteShared is the shared index processor's handler (see the top of this file): idempotent by
// document revision, checked against the store.
func (s *Service) WriteShared(ctx context.Context, e DocEvent) error {
	st, err := docStream(e.Tenant, e.DocID)
	if err != nil {
		return err
	}
	newer, err := s.Store.ReadStream(ctx, st, e.Revision+1, 1)
	if err != nil {
		if errors.Is(err, eventstore.ErrStreamDeleted) {
			return nil
		}
		return apperr.Wrap(err, apperr.KindUnavailable, "retrieval.storeUnavailable", "the event store is unavailable")
	}
	if len(newer) > 0 {
		return nil // a newer revision of the document exists: it will be (or was) applied instead
	}
	if err := s.writeDoc(ctx, e); err != nil {
		return err
	}
	s.Cache.Invalidate(e.Tenant)
	ist, err := tenant.NewStream(e.Tenant, events.IndexedCategory, events.DocStreamKey(e.DocID))
	if err != nil {
		return err
	}
	data, err := eventstore.NewEventData(events.TypeDocumentIndexed,
		events.DocumentIndexed{DocID: e.DocID, Revision: e.Revision, Position: uint64(e.Position)})
	if err != nil {
		return err
	}
	if _, err := s.Store.Append(ctx, ist, eventstore.Any, data); err != nil {
		// Redelivered: the write is repeated (idempotent) and this recorded again.
		return apperr.Wrap(err, apperr.KindUnavailable, "retrieval.storeUnavailable", "the event store is unavailable")
	}
	return nil
}

// repair runs once per process, before the first event is applied or the first search is served
// (see the top of this file). b is the projection's bucket (a write or a read transaction).
func (s *Service) repair(ctx context.Context, b *bolt.Bucket) error {
	s.repairMu.Lock()
	defer s.repairMu.Unlock()
	if s.repairDone.Load() {
		return nil
	}
	type stale struct {
		t     tenant.ID
		docID string
		state DocState
	}
	cps := map[tenant.ID]uint64{}
	highest := map[tenant.ID]eventstore.Position{}
	var todo []stale
	err := b.ForEach(func(k, v []byte) error {
		t, docID, ok := splitDocKey(k)
		st, ok2 := decodeDocState(v)
		if !ok || !ok2 {
			return nil
		}
		cp, seen := cps[t]
		if !seen {
			if err := s.verifyTenant(ctx, t); err != nil {
				return err
			}
			c, err := s.Index.Checkpoint(ctx, t)
			if err != nil {
				return indexErr(err, false)
			}
			cp, cps[t] = c, c
		}
		if uint64(st.Position) > cp {
			todo = append(todo, stale{t, docID, st})
			highest[t] = max(highest[t], st.Position)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range todo {
		rev, err := s.reapplyDoc(ctx, d.t, d.docID)
		if err != nil {
			return fmt.Errorf("repair %s/%q: %w", d.t, d.docID, err)
		}
		s.repaired.Store(string(docKey(d.t, d.docID)), rev)
	}
	for t, p := range highest {
		if err := s.Index.SetCheckpoint(ctx, t, uint64(p)); err != nil {
			return indexErr(err, true)
		}
		s.Cache.Invalidate(t)
	}
	if len(todo) > 0 {
		s.Log.Info("retrieval: index repaired after a stop without its last snapshot", "documents", len(todo), "tenants", len(highest))
	}
	s.repairDone.Store(true)
	return nil
}

// verifyTenant empties t's index, once per process, when its checkpoint lies beyond the end of the
// store: it was built from another log (or the store was restored from an older backup), so
// nothing in it can be trusted; the projection's events rebuild it.
func (s *Service) verifyTenant(ctx context.Context, t tenant.ID) error {
	if _, ok := s.verified.Load(t); ok {
		return nil
	}
	cp, err := s.Index.Checkpoint(ctx, t)
	if err != nil {
		return indexErr(err, false)
	}
	last, err := s.Store.LastPosition(ctx)
	if err != nil {
		return apperr.Wrap(err, apperr.KindUnavailable, "retrieval.storeUnavailable", "the event store is unavailable")
	}
	if cp > uint64(last) {
		s.Log.Warn("retrieval: the index's checkpoint is beyond the end of the event log; rebuilding the tenant from its events",
			"tenant", t.String(), "checkpoint", cp, "lastPosition", uint64(last))
		if err := s.Index.DeleteTenant(ctx, t); err != nil {
			return indexErr(err, false)
		}
		s.ahead.forgetTenant(t)
		s.Cache.Invalidate(t)
	}
	s.verified.Store(t, true)
	return nil
}

// Repaired reports whether the start-up repair has run (searches wait for it).
func (s *Service) Repaired() bool { return s.repairDone.Load() }

// RepairWith runs the start-up repair through view (the projection's read transaction) unless the
// first event did already.
func (s *Service) RepairWith(ctx context.Context, view func(fn func(b *bolt.Bucket) error) error) error {
	if s.repairDone.Load() {
		return nil
	}
	return view(func(b *bolt.Bucket) error { return s.repair(ctx, b) })
}

// reapplyDoc makes the index show docID's latest state as its stream holds it, and returns the
// revision it applied.
func (s *Service) reapplyDoc(ctx context.Context, t tenant.ID, docID string) (uint64, error) {
	d, err := s.loadDoc(ctx, t, docID, 0)
	if err != nil {
		return 0, err
	}
	if _, err := s.applyToIndex(ctx, t, d, docID); err != nil {
		return 0, err
	}
	return d.Revision, nil
}

// catchingUpRetryAfter is the retry-after of a refusal while catching up.
const catchingUpRetryAfter = 2

// requireReady refuses a search while this replica's index consumer catches up with the store
// (503 catching_up), or before the start-up repair has run.
func (s *Service) requireReady(tenant.ID) error {
	if s.Ready != nil {
		if err := s.Ready(); err != nil {
			return err
		}
	}
	if s.Consumed && s.RepairNeeded && !s.repairDone.Load() {
		return apperr.CatchingUp("this replica's search index", catchingUpRetryAfter)
	}
	return nil
}
