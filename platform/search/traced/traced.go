// Package traced wraps a search.Index so every index call is a trace span carrying its tenant. The
// optional capabilities of the wrapped index (Flusher, Ping) pass through with the
// meaning an index without them has: nothing to flush, nothing to ping.
package traced

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"
	"github.com/crispy-enigma/crispy/platform/tracing"
)

// Index is a traced search.Index.
type Index struct {
	next search.Index
	tr   trace.Tracer
}

// New wraps idx; spans go to tr.
func New(idx search.Index, tr trace.Tracer) *Index { return &Index{next: idx, tr: tr} }

func (x *Index) span(ctx context.Context, op string, t tenant.ID, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return tracing.StartSpan(ctx, x.tr, "index."+op, t.String(), attrs...)
}

// Upsert implements search.Index.
func (x *Index) Upsert(ctx context.Context, t tenant.ID, chunks []search.Chunk) error {
	ctx, sp := x.span(ctx, "upsert", t, attribute.Int("crispy.index.chunks", len(chunks)))
	err := x.next.Upsert(ctx, t, chunks)
	tracing.End(sp, err, "")
	return err
}

// DeleteDoc implements search.Index.
func (x *Index) DeleteDoc(ctx context.Context, t tenant.ID, docID string) error {
	ctx, sp := x.span(ctx, "delete_doc", t)
	err := x.next.DeleteDoc(ctx, t, docID)
	tracing.End(sp, err, "")
	return err
}

// DeleteTenant implements search.Index.
func (x *Index) DeleteTenant(ctx context.Context, t tenant.ID) error {
	ctx, sp := x.span(ctx, "delete_tenant", t)
	err := x.next.DeleteTenant(ctx, t)
	tracing.End(sp, err, "")
	return err
}

// Search implements search.Index.
func (x *Index) Search(ctx context.Context, t tenant.ID, q search.Query) ([]search.Hit, error) {
	ctx, sp := x.span(ctx, "search", t, attribute.Int("crispy.index.k", q.K))
	hits, err := x.next.Search(ctx, t, q)
	sp.SetAttributes(attribute.Int("crispy.index.hits", len(hits)))
	tracing.End(sp, err, "")
	return hits, err
}

// Count implements search.Index.
func (x *Index) Count(ctx context.Context, t tenant.ID) (int, error) { return x.next.Count(ctx, t) }

// Close implements search.Index.
func (x *Index) Close() error { return x.next.Close() }

// CheckWrite implements search.Index (no span: it is a local check, or the ping it wraps).
func (x *Index) CheckWrite(ctx context.Context, t tenant.ID, dim int) error {
	return x.next.CheckWrite(ctx, t, dim)
}

// Checkpoint implements search.Index.
func (x *Index) Checkpoint(ctx context.Context, t tenant.ID) (uint64, error) {
	return x.next.Checkpoint(ctx, t)
}

// SetCheckpoint implements search.Index.
func (x *Index) SetCheckpoint(ctx context.Context, t tenant.ID, pos uint64) error {
	ctx, sp := x.span(ctx, "set_checkpoint", t)
	err := x.next.SetCheckpoint(ctx, t, pos)
	tracing.End(sp, err, "")
	return err
}

// Flush implements search.Flusher.
func (x *Index) Flush(ctx context.Context) error {
	if fl, ok := x.next.(search.Flusher); ok {
		return fl.Flush(ctx)
	}
	return nil
}

// Vectors implements search.VectorSource when the wrapped index does (none otherwise).
func (x *Index) Vectors(ctx context.Context, t tenant.ID, docID string) (map[string][]float32, error) {
	if vs, ok := x.next.(search.VectorSource); ok {
		return vs.Vectors(ctx, t, docID)
	}
	return nil, nil
}

// Ping reports whether the wrapped index answers (nil when it cannot be pinged).
func (x *Index) Ping(ctx context.Context) error {
	if p, ok := x.next.(interface{ Ping(context.Context) error }); ok {
		return p.Ping(ctx)
	}
	return nil
}
