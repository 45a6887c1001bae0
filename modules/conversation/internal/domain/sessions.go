package domain

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Viewer is who reads the sessions: a session started with a user id is that user's, and the
// tenant's keys with the audit scope (Auditor) read every user's. A session started without one is
// the tenant's, read by all its users.
type Viewer struct {
	User    string
	Auditor bool
}

// Sees reports whether v may read a session owned by owner ("" for the tenant's).
func (v Viewer) Sees(owner string) bool { return owner == "" || owner == v.User || v.Auditor }

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
	// Life is the revision of the SessionStarted of the session's current life (its data key's).
	Life uint64
}

// SessionRef names a tenant's session.
type SessionRef struct{ Tenant, SessionID string }

// The session list is ordered newest first: by last activity, latest first, then by session id.
// A cursor is the place of the last row of a page in that order: its activity time (Unix
// nanoseconds) and its id.

// Cursor encodes the place of s in the newest-first order.
func Cursor(s Summary) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%d|%s", s.UpdatedAt.UnixNano(), s.SessionID)))
}

// ErrBadCursor is returned for a cursor List did not make.
var ErrBadCursor = fmt.Errorf("invalid cursor")

// ParseCursor decodes a cursor made by Cursor.
func ParseCursor(c string) (updatedNs int64, id string, err error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, "", ErrBadCursor
	}
	ns, id, ok := strings.Cut(string(b), "|")
	if !ok {
		return 0, "", ErrBadCursor
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return 0, "", ErrBadCursor
	}
	return n, id, nil
}
