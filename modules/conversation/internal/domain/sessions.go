package domain

import (
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Summary is one row of GET /sessions.
type Summary struct {
	SessionID    string
	Title        string
	MessageCount int
	UpdatedAt    time.Time
	Revision     uint64
	// OpenTurns counts user messages without an outcome yet: a turn in progress, or one a crash
	// left behind (start-up closes those as interrupted, finding them here rather than by reading
	// every session).
	OpenTurns int
}

// Index is the session list read model, per tenant, fed by the projection.
type Index struct {
	mu      sync.RWMutex
	tenants map[string]map[string]*Summary
}

// NewIndex returns an empty index.
func NewIndex() *Index { return &Index{tenants: map[string]map[string]*Summary{}} }

func (x *Index) row(tenant, id string) *Summary {
	ss, ok := x.tenants[tenant]
	if !ok {
		ss = map[string]*Summary{}
		x.tenants[tenant] = ss
	}
	s, ok := ss[id]
	if !ok {
		s = &Summary{SessionID: id}
		ss[id] = s
	}
	return s
}

// Started records a SessionStarted.
func (x *Index) Started(tenant, id, title string, at time.Time, rev uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.row(tenant, id)
	s.Title, s.MessageCount, s.UpdatedAt, s.Revision, s.OpenTurns = title, 0, at, rev, 0
}

// TurnOpened records a user message (a turn awaiting its outcome).
func (x *Index) TurnOpened(tenant, id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.row(tenant, id).OpenTurns++
}

// TurnClosed records a turn's outcome.
func (x *Index) TurnClosed(tenant, id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if s, ok := x.tenants[tenant][id]; ok && s.OpenTurns > 0 {
		s.OpenTurns--
	}
}

// SessionRef names a tenant's session.
type SessionRef struct{ Tenant, SessionID string }

// WithOpenTurns lists the sessions that have turns without an outcome, by tenant and id.
func (x *Index) WithOpenTurns() []SessionRef {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []SessionRef
	for t, ss := range x.tenants {
		for id, s := range ss {
			if s.OpenTurns > 0 {
				out = append(out, SessionRef{Tenant: t, SessionID: id})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		return out[i].SessionID < out[j].SessionID
	})
	return out
}

// Message records a message (user or assistant) added at at.
func (x *Index) Message(tenant, id string, at time.Time, rev uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.row(tenant, id)
	s.MessageCount++
	s.UpdatedAt, s.Revision = at, rev
}

// Touched records activity without a message (a failed turn). It never adds a session: a failure
// recorded after a deletion (session_gone) must not bring the deleted session back into the list.
func (x *Index) Touched(tenant, id string, at time.Time, rev uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if s, ok := x.tenants[tenant][id]; ok {
		s.UpdatedAt, s.Revision = at, rev
	}
}

// Removed records a deletion or expiry.
func (x *Index) Removed(tenant, id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if ss, ok := x.tenants[tenant]; ok {
		delete(ss, id)
	}
}

// Tenants lists the tenants that have sessions.
func (x *Index) Tenants() []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]string, 0, len(x.tenants))
	for t, ss := range x.tenants {
		if len(ss) > 0 {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// IdleSince lists a tenant's sessions last active before cutoff.
func (x *Index) IdleSince(tenant string, cutoff time.Time) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []string
	for id, s := range x.tenants[tenant] {
		if s.UpdatedAt.Before(cutoff) {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// Cursor encodes a position in the newest-first order.
func Cursor(s Summary) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%d|%s", s.UpdatedAt.UnixNano(), s.SessionID)))
}

// ErrBadCursor is returned for a cursor List did not make.
var ErrBadCursor = fmt.Errorf("invalid cursor")

func parseCursor(c string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, "", ErrBadCursor
	}
	ns, id, ok := strings.Cut(string(b), "|")
	if !ok {
		return 0, "", ErrBadCursor
	}
	var n int64
	if _, err := fmt.Sscan(ns, &n); err != nil {
		return 0, "", ErrBadCursor
	}
	return n, id, nil
}

// List returns up to limit of a tenant's sessions, newest first (ties by id), after cursor, and the
// cursor of the next page ("" at the end).
func (x *Index) List(tenant string, limit int, cursor string) ([]Summary, string, error) {
	var afterNs int64
	var afterID string
	if cursor != "" {
		var err error
		if afterNs, afterID, err = parseCursor(cursor); err != nil {
			return nil, "", err
		}
	}
	x.mu.RLock()
	rows := make([]Summary, 0, len(x.tenants[tenant]))
	for _, s := range x.tenants[tenant] {
		rows = append(rows, *s)
	}
	x.mu.RUnlock()
	less := func(a Summary, ns int64, id string) bool { // a comes before (ns, id) in newest-first order
		an := a.UpdatedAt.UnixNano()
		return an > ns || (an == ns && a.SessionID < id)
	}
	sort.Slice(rows, func(i, j int) bool { return less(rows[i], rows[j].UpdatedAt.UnixNano(), rows[j].SessionID) })
	if cursor != "" {
		i := sort.Search(len(rows), func(i int) bool {
			return !less(rows[i], afterNs, afterID) && !(rows[i].UpdatedAt.UnixNano() == afterNs && rows[i].SessionID == afterID)
		})
		rows = rows[i:]
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = Cursor(rows[limit-1])
	}
	return rows, next, nil
}
