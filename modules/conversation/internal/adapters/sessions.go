// Package adapters holds the conversation read models: the session list and the token ledger, each
// a checkpointed projection (platform/bus) whose state is a bbolt bucket, so their memory stays flat
// however many sessions there are, and a start resumes from the checkpoint instead of replaying the
// store.
package adapters

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The session list lives in three buckets of the projection's state. Every key starts with the
// tenant and a 0 byte (a tenant id has none), so a tenant's rows are one key range, and a read that
// seeks and stops by that prefix cannot reach another tenant's rows whatever cursor it is given.
//
//	rows:   tenant 0 sessionId                       → updated (int64 ns), revision, messages (uint32), open turns (uint32), life (uint64),
//	                                                   owner length (uint16), owner (the user id it was started with; "" = the tenant's), title
//
// The title is the session's content: with a sealer it is stored sealed under the session life's
// data key (SessionList.Sealer), so neither the row nor a freed bbolt page that once held it keeps
// it readable after the session's erasure.
//
//	recent: tenant 0 updated (8 bytes) sessionId     → (empty)   read backwards: the order of GET /sessions
//	open:   tenant 0 sessionId                       → (empty)   sessions with turns awaiting their outcome
var (
	rowsBucket   = []byte("rows")
	recentBucket = []byte("recent")
	openBucket   = []byte("open")
)

const rowHeader = 34

type row struct {
	updated  int64
	revision uint64
	messages uint32
	open     uint32
	life     uint64 // revision of the SessionStarted: the title's data key is the life's
	owner    string // the user the session belongs to ("": the tenant's, listed to all its users)
	title    string
}

func (r row) encode() []byte {
	owner := r.owner[:min(len(r.owner), 0xffff)]
	v := make([]byte, rowHeader, rowHeader+len(owner)+len(r.title))
	binary.BigEndian.PutUint64(v[0:], uint64(r.updated))
	binary.BigEndian.PutUint64(v[8:], r.revision)
	binary.BigEndian.PutUint32(v[16:], r.messages)
	binary.BigEndian.PutUint32(v[20:], r.open)
	binary.BigEndian.PutUint64(v[24:], r.life)
	binary.BigEndian.PutUint16(v[32:], uint16(len(owner)))
	v = append(v, owner...)
	return append(v, r.title...)
}

func decodeRow(v []byte) (row, bool) {
	if len(v) < rowHeader {
		return row{}, false
	}
	n := rowHeader + int(binary.BigEndian.Uint16(v[32:]))
	if len(v) < n {
		return row{}, false
	}
	return row{updated: int64(binary.BigEndian.Uint64(v[0:])), revision: binary.BigEndian.Uint64(v[8:]),
		messages: binary.BigEndian.Uint32(v[16:]), open: binary.BigEndian.Uint32(v[20:]), life: binary.BigEndian.Uint64(v[24:]),
		owner: string(v[rowHeader:n]), title: string(v[n:])}, true
}

func tenantPrefix(t string) []byte { return append([]byte(t), 0) }

func rowKey(t, id string) []byte { return append(tenantPrefix(t), id...) }

// recentKey orders a tenant's sessions by activity time, then id; GET /sessions reads it backwards
// (newest first). Later activity sorts last, so a batch of live events appends at the end of the
// tree instead of inserting at its front (bbolt moves a node's entries on every insert before it:
// newest-first keys made catching up 300,000 events spend most of its time moving memory).
func recentKey(t string, updated int64, id string) []byte {
	k := binary.BigEndian.AppendUint64(tenantPrefix(t), uint64(max(updated, 0)))
	return append(k, id...)
}

type listBuckets struct{ rows, recent, open *bolt.Bucket }

func writeBuckets(b *bolt.Bucket) (listBuckets, error) {
	var lb listBuckets
	var err error
	if lb.rows, err = b.CreateBucketIfNotExists(rowsBucket); err != nil {
		return lb, err
	}
	if lb.recent, err = b.CreateBucketIfNotExists(recentBucket); err != nil {
		return lb, err
	}
	lb.open, err = b.CreateBucketIfNotExists(openBucket)
	return lb, err
}

// readBuckets returns the buckets, nil before the first session.
func readBuckets(b *bolt.Bucket) (listBuckets, bool) {
	lb := listBuckets{rows: b.Bucket(rowsBucket), recent: b.Bucket(recentBucket), open: b.Bucket(openBucket)}
	return lb, lb.rows != nil && lb.recent != nil && lb.open != nil
}

// change applies fn to a session's row. create: a session without a row gets one (else nothing
// happens). fn returns false to remove the row. The row is changed in the transaction's pending rows
// (sessionRows), which keep the other buckets in step when the transaction commits.
func change(tx *readmodel.Tx, t tenant.ID, id string, create bool, fn func(r *row) bool) error {
	rows := tx.Deferred(sessionRowsKey{}, func() readmodel.Deferred { return &sessionRows{rows: map[string]*pendingRow{}} }).(*sessionRows)
	key := rowKey(t.String(), id)
	p, ok := rows.rows[string(key)]
	if !ok {
		var old row
		var exists bool
		if b := tx.Bucket().Bucket(rowsBucket); b != nil {
			old, exists = decodeRow(b.Get(key))
		}
		p = &pendingRow{t: t, id: id, old: old, exists: exists, cur: old, keep: exists}
		rows.rows[string(key)] = p
	}
	if !p.keep && !create {
		return nil
	}
	next := p.cur
	if !p.keep {
		next = row{}
	}
	p.keep = fn(&next)
	p.cur = next
	return nil
}

// sessionRowsKey is the key of a transaction's sessionRows (readmodel.Tx.Deferred).
type sessionRowsKey struct{}

// sessionRows are the session rows a write transaction changed, each written once when it commits:
// while the list catches up, a batch holds most of a session's messages, and each of them changed
// the row, its place in recent and maybe open (four B-tree operations a message, the list's whole
// cost in a first start).
type sessionRows struct {
	rows map[string]*pendingRow // by row key
}

// pendingRow is a session's row as stored when the transaction first changed it (old, exists) and
// as it is now (cur; keep false: removed).
type pendingRow struct {
	t        tenant.ID
	id       string
	old, cur row
	exists   bool
	keep     bool
}

// Flush implements readmodel.Deferred: each changed row is written, and recent and open are moved
// from what was stored to what it is now, in key order.
func (s *sessionRows) Flush(tx *readmodel.Tx) error {
	if len(s.rows) == 0 {
		return nil
	}
	lb, err := writeBuckets(tx.Bucket())
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(s.rows))
	for k := range s.rows {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := s.rows[k].write(lb, []byte(k)); err != nil {
			return err
		}
	}
	clear(s.rows)
	return nil
}

func (p *pendingRow) write(lb listBuckets, key []byte) error {
	t, old, next, exists := p.t.String(), p.old, p.cur, p.exists
	if exists && (!p.keep || next.updated != old.updated) {
		if err := lb.recent.Delete(recentKey(t, old.updated, p.id)); err != nil {
			return err
		}
	}
	if !p.keep {
		if !exists {
			return nil
		}
		if err := lb.open.Delete(key); err != nil {
			return err
		}
		return lb.rows.Delete(key)
	}
	if !exists || next != old {
		if err := lb.rows.Put(key, next.encode()); err != nil {
			return err
		}
	}
	if !exists || next.updated != old.updated {
		if err := lb.recent.Put(recentKey(t, next.updated, p.id), nil); err != nil {
			return err
		}
	}
	switch {
	case next.open > 0 && (!exists || old.open == 0):
		return lb.open.Put(key, nil)
	case next.open == 0 && exists && old.open > 0:
		return lb.open.Delete(key)
	}
	return nil
}

// SessionStarted records a session (re)started at revision rev by owner ("": the tenant's): a
// fresh row. title is as stored (sealed when the list has a sealer).
func SessionStarted(tx *readmodel.Tx, t tenant.ID, id, owner, title string, at time.Time, rev uint64) error {
	return change(tx, t, id, true, func(r *row) bool {
		*r = row{updated: at.UnixNano(), revision: rev, life: rev, owner: owner, title: title}
		return true
	})
}

// MessageAdded records a message: a user's opens a turn, an answer closes one.
func MessageAdded(tx *readmodel.Tx, t tenant.ID, id string, at time.Time, rev uint64, user bool) error {
	return change(tx, t, id, true, func(r *row) bool {
		r.messages++
		r.updated, r.revision = at.UnixNano(), rev
		if user {
			r.open++
		} else if r.open > 0 {
			r.open--
		}
		return true
	})
}

// TurnFailed records a failed turn: activity without a message. It never adds a session: a failure
// recorded after a deletion (session_gone) must not bring the deleted session back into the list.
func TurnFailed(tx *readmodel.Tx, t tenant.ID, id string, at time.Time, rev uint64) error {
	return change(tx, t, id, false, func(r *row) bool {
		r.updated, r.revision = at.UnixNano(), rev
		if r.open > 0 {
			r.open--
		}
		return true
	})
}

// SessionEnded records a deletion or expiry: the session leaves the list.
func SessionEnded(tx *readmodel.Tx, t tenant.ID, id string) error {
	return change(tx, t, id, false, func(*row) bool { return false })
}

// ListSessions returns up to limit of the tenant's sessions in newest-first order (latest activity
// first, ties by descending id) after cursor ("" from the start), and the cursor of the next page
// ("" at the end). Sessions the viewer may not read (another user's) are left out.
func ListSessions(b *bolt.Bucket, t tenant.ID, viewer domain.Viewer, limit int, cursor string) ([]domain.Summary, string, error) {
	prefix := tenantPrefix(t.String())
	var before []byte // the page starts below this key
	if cursor != "" {
		ns, id, err := domain.ParseCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		before = recentKey(t.String(), ns, id)
	}
	lb, ok := readBuckets(b)
	if !ok {
		return nil, "", nil
	}
	out := make([]domain.Summary, 0, min(limit, 100))
	c := lb.recent.Cursor()
	var k []byte
	if before == nil {
		// The tenant's last key: just below the first key of the next tenant's range (the prefix
		// with its 0 byte raised to 1).
		k, _ = c.Seek(append([]byte(t.String()), 1))
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
	} else {
		k, _ = c.Seek(before) // the first key at or after the cursor's: step back below it
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
		if len(k) < len(prefix)+8 {
			continue
		}
		if len(out) == limit {
			return out, domain.Cursor(out[limit-1]), nil
		}
		id := string(k[len(prefix)+8:])
		r, ok := decodeRow(lb.rows.Get(rowKey(t.String(), id)))
		if !ok || !viewer.Sees(r.owner) {
			continue
		}
		out = append(out, domain.Summary{SessionID: id, Title: r.title, MessageCount: int(r.messages),
			UpdatedAt: time.Unix(0, r.updated), Revision: r.revision, OpenTurns: int(r.open), Life: r.life})
	}
	return out, "", nil
}

// WithOpenTurns lists the sessions that have turns awaiting their outcome, by tenant and id.
func WithOpenTurns(b *bolt.Bucket) []domain.SessionRef {
	lb, ok := readBuckets(b)
	if !ok {
		return nil
	}
	var out []domain.SessionRef
	_ = lb.open.ForEach(func(k, _ []byte) error {
		if t, id, ok := bytes.Cut(k, []byte{0}); ok {
			out = append(out, domain.SessionRef{Tenant: string(t), SessionID: string(id)})
		}
		return nil
	})
	return out
}

// Tenants lists the tenants that have sessions, skipping from one tenant's key range to the next.
func Tenants(b *bolt.Bucket) []tenant.ID {
	lb, ok := readBuckets(b)
	if !ok {
		return nil
	}
	var out []tenant.ID
	c := lb.rows.Cursor()
	for k, _ := c.First(); k != nil; {
		t, _, ok := bytes.Cut(k, []byte{0})
		if !ok {
			k, _ = c.Next()
			continue
		}
		if id, err := tenant.Parse(string(t)); err == nil {
			out = append(out, id)
		}
		k, _ = c.Seek(append(append([]byte(nil), t...), 1)) // past this tenant's range
	}
	return out
}

// IdleSessions returns up to limit of the tenant's sessions last active before cutoff, most idle
// first, after the place next returned by the previous call ("" from the start).
func IdleSessions(b *bolt.Bucket, t tenant.ID, cutoff time.Time, after string, limit int) (ids []string, next string) {
	lb, ok := readBuckets(b)
	if !ok {
		return nil, ""
	}
	prefix := tenantPrefix(t.String())
	end := recentKey(t.String(), cutoff.UnixNano(), "") // active at cutoff or later sorts from here
	c := lb.recent.Cursor()
	var k []byte
	if after == "" {
		k, _ = c.Seek(prefix)
	} else {
		if !bytes.HasPrefix([]byte(after), prefix) {
			return nil, ""
		}
		k, _ = c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, _ = c.Next()
		}
	}
	for ; k != nil && bytes.HasPrefix(k, prefix) && bytes.Compare(k, end) < 0; k, _ = c.Next() {
		if len(k) < len(prefix)+8 {
			continue
		}
		if len(ids) == limit {
			return ids, next
		}
		ids = append(ids, string(k[len(prefix)+8:]))
		next = string(k)
	}
	return ids, ""
}

// TitleSealer seals and opens titles under a session life's data key (platform/sealing.Sealer).
type TitleSealer interface {
	Seal(ctx context.Context, t tenant.ID, keyID string, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, t tenant.ID, keyID string, sealed []byte) ([]byte, error)
}

// SessionList answers the session list queries from its projection: 503 catching_up until it has
// caught up with the store, never a partial list. Sealer nil: titles are stored plain.
type SessionList struct {
	Projection *bus.Projection
	Sealer     TitleSealer
}

// StoredTitle is title as the row keeps it: sealed under the key of the session's life that
// began at revision life, or "" when that key is gone (a replay after the erasure: the row is
// about to be removed by the deletion that follows).
func (l SessionList) StoredTitle(ctx context.Context, t tenant.ID, id string, life uint64, title string) (string, error) {
	if l.Sealer == nil || title == "" {
		return title, nil
	}
	b, err := l.Sealer.Seal(ctx, t, domain.KeyID(id, life), []byte(title))
	if errors.Is(err, sealing.ErrErased) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("seal the title of session %s: %w", id, err)
	}
	return string(b), nil
}

// TitleOf is a session start whose title the list stores: the session's tenant, id and life (the
// revision of its SessionStarted), and its title as recorded.
type TitleOf struct {
	Tenant tenant.ID
	ID     string
	Life   uint64
	Title  string
}

// PreparedTitle is a title as the row keeps it, made ahead of the row (StoredTitles).
type PreparedTitle string

// sealAtOnce bounds the titles StoredTitles seals at the same time.
const sealAtOnce = 32

// StoredTitles is StoredTitle for the session starts of a batch at once, for the projection's
// bus.Prepare: sealed concurrently, so that the new data keys they need share the key store's
// fsyncs (with the embedded key store, one per key when sealed one by one: a rebuild of the list
// over a history written before sealing went at the pace of those fsyncs). out[i] is ts[i]'s
// PreparedTitle, or nil when it could not be made (its handler seals it itself and reports why).
func (l SessionList) StoredTitles(ctx context.Context, ts []TitleOf) []any {
	out := make([]any, len(ts))
	sem := make(chan struct{}, sealAtOnce)
	var wg sync.WaitGroup
	for i, t := range ts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if title, err := l.StoredTitle(ctx, t.Tenant, t.ID, t.Life, t.Title); err == nil {
				out[i] = PreparedTitle(title)
			}
		})
	}
	wg.Wait()
	return out
}

// List is a page of GET /sessions as viewer sees it.
func (l SessionList) List(ctx context.Context, t tenant.ID, viewer domain.Viewer, limit int, cursor string) (rows []domain.Summary, next string, err error) {
	err = l.Projection.View(ctx, func(tx *readmodel.Tx) error {
		rows, next, err = ListSessions(tx.Bucket(), t, viewer, limit, cursor)
		return err
	})
	if err != nil || l.Sealer == nil {
		return rows, next, err
	}
	for i := range rows {
		if rows[i].Title == "" {
			continue
		}
		b, err := l.Sealer.Open(ctx, t, domain.KeyID(rows[i].SessionID, rows[i].Life), []byte(rows[i].Title))
		switch {
		case errors.Is(err, sealing.ErrErased):
			rows[i].Title = ""
		case err != nil:
			return nil, "", fmt.Errorf("open the title of session %s: %w", rows[i].SessionID, err)
		default:
			rows[i].Title = string(b)
		}
	}
	return rows, next, nil
}

// WithOpenTurns lists every tenant's sessions with turns awaiting their outcome.
func (l SessionList) WithOpenTurns(ctx context.Context) (refs []domain.SessionRef, err error) {
	err = l.Projection.View(ctx, func(tx *readmodel.Tx) error { refs = WithOpenTurns(tx.Bucket()); return nil })
	return refs, err
}

// Tenants lists the tenants that have sessions.
func (l SessionList) Tenants(ctx context.Context) (ts []tenant.ID, err error) {
	err = l.Projection.View(ctx, func(tx *readmodel.Tx) error { ts = Tenants(tx.Bucket()); return nil })
	return ts, err
}

// Idle is a page of the tenant's sessions last active before cutoff (see IdleSessions).
func (l SessionList) Idle(ctx context.Context, t tenant.ID, cutoff time.Time, after string, limit int) (ids []string, next string, err error) {
	err = l.Projection.View(ctx, func(tx *readmodel.Tx) error {
		ids, next = IdleSessions(tx.Bucket(), t, cutoff, after, limit)
		return nil
	})
	return ids, next, err
}
