// Package domain holds the conversation rules without I/O: the session aggregate and its fold, model
// selection, context assembly, token estimates, the budget ledger and the session list.
package domain

import (
	"regexp"
	"strconv"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// Passage is one retrieved chunk offered to the model.
type Passage struct {
	DocID   string
	ChunkID string
	Title   string
	Source  string
	URL     string
	Text    string
	Score   float64
}

// SessionIDPattern is the one spelling of a session id: a lowercase, hyphenated UUID. The id names
// the session's stream, so other spellings of the same UUID (upper case, braces, urn:uuid:, no
// hyphens, padded) would name other sessions; they are refused rather than quietly rewritten.
const SessionIDPattern = `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`

// SessionIDRule is the refusal message of a session id that is not canonical.
const SessionIDRule = "sessionId must be a UUID in lowercase hyphenated form (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"

var sessionIDRx = regexp.MustCompile(SessionIDPattern)

// ValidSessionID reports whether id is a session id in its canonical spelling.
func ValidSessionID(id string) bool { return len(id) == 36 && sessionIDRx.MatchString(id) }

// Message is one entry of a session's history.
type Message struct {
	Role      string // "user" or "assistant"
	Content   string
	Timestamp time.Time
	TurnID    string
	Model     string // assistant messages: the model that answered
	// Erased: the message's content was sealed under a key since destroyed (the session was
	// deleted or expired): its role and time are known, its content is gone.
	Erased bool
}

// Session is the aggregate: the fold of a session stream. A Session value is never mutated once
// shared; Apply works on a clone (see Clone).
type Session struct {
	ID       string
	Exists   bool   // at least one event was read
	Started  bool   // a SessionStarted not followed by a deletion or expiry
	Deleted  bool   // the last lifecycle event was SessionDeleted
	Expired  bool   // the last lifecycle event was SessionExpired
	Revision uint64 // of the last event folded (meaningful when Exists)
	// EndRevision is the revision of the deletion or expiry that ended the session (when Deleted or
	// Expired): what came before it must be unreadable.
	EndRevision uint64
	// Life is the revision of the SessionStarted that began the session's current (or, once ended,
	// last) life: its content is sealed under KeyID(ID, Life), destroyed when that life ends.
	Life         uint64
	Title        string
	UserID       string
	Messages     []Message
	Turns        int // user messages ever added (including failed turns)
	Failed       int // turns recorded as failed
	CreatedAt    time.Time
	LastActivity time.Time
	// Open are the turns whose user message is recorded and whose outcome is not (yet): a turn in
	// progress, or one a crash left behind. Turns are serialised, so there is at most one but in
	// sessions recorded before they were.
	Open []OpenTurn
	// Sealed is what the session's snapshot stream holds of this fold (snapshot.go).
	Sealed Seal
}

// OpenTurn is a turn with a user message and no outcome.
type OpenTurn struct {
	TurnID string
	Since  time.Time // when its user message was recorded
	// Instance and Run are the replica and process that took it ("" when recorded before turns
	// named theirs).
	Instance, Run string
}

// Live reports whether the session can be read (exists, and was not deleted or expired since it
// last started).
func (s *Session) Live() bool { return s.Exists && s.Started && !s.Deleted && !s.Expired }

// Expected is the revision an append after this fold must expect.
func (s *Session) Expected() eventstore.ExpectedRevision {
	return eventstore.After(s.Revision, s.Exists)
}

// Clone returns a copy whose Messages can be appended to without touching s.
func (s *Session) Clone() *Session {
	c := *s
	c.Messages = make([]Message, len(s.Messages), len(s.Messages)+4)
	copy(c.Messages, s.Messages)
	c.Open = append([]OpenTurn(nil), s.Open...)
	return &c
}

// Apply folds one event. Unknown types are ignored (newer events read by older code).
func (s *Session) Apply(e eventstore.Event) error {
	s.Exists = true
	s.Revision = e.Revision
	switch e.Type {
	case events.TypeSessionStarted:
		var ev events.SessionStarted
		if err := e.Decode(&ev); err != nil {
			return err
		}
		s.ID, s.Title, s.UserID = ev.SessionID, ev.Title, ev.UserID
		s.Started, s.Deleted, s.Expired = true, false, false
		s.Messages = s.Messages[:0]
		s.Open = nil
		s.CreatedAt, s.LastActivity = e.Time, e.Time
		s.Sealed.Messages = 0 // the segments' messages are no longer part of the fold
		s.EndRevision = 0
		s.Life = e.Revision
	case events.TypeUserMessageAdded:
		var ev messageFields
		if err := decodeFields(e, &ev); err != nil {
			return err
		}
		s.Messages = append(s.Messages, Message{Role: "user", Content: ev.Content, Timestamp: e.Time, TurnID: ev.TurnID, Erased: e.Erased})
		s.Turns++
		s.LastActivity = e.Time
		s.Open = append(s.Open, OpenTurn{TurnID: ev.TurnID, Since: e.Time, Instance: ev.Instance, Run: ev.Run})
	case events.TypeAssistantMessageCompleted:
		var ev messageFields
		if err := decodeFields(e, &ev); err != nil {
			return err
		}
		s.Messages = append(s.Messages, Message{Role: "assistant", Content: ev.Content, Timestamp: e.Time, TurnID: ev.TurnID, Model: ev.Model, Erased: e.Erased})
		s.LastActivity = e.Time
		s.closeTurn(ev.TurnID)
	case events.TypeAssistantMessageFailed:
		var ev messageFields
		if err := decodeFields(e, &ev); err != nil {
			return err
		}
		s.Failed++
		s.LastActivity = e.Time
		s.closeTurn(ev.TurnID)
	case events.TypeSessionDeleted:
		s.Deleted, s.Started = true, false
		s.Messages, s.Open = nil, nil
		s.Sealed.Messages, s.EndRevision = 0, e.Revision
	case events.TypeSessionExpired:
		s.Expired, s.Started = true, false
		s.Messages, s.Open = nil, nil
		s.Sealed.Messages, s.EndRevision = 0, e.Revision
	}
	return nil
}

// closeTurn removes the turn an outcome belongs to from the open ones.
func (s *Session) closeTurn(turnID string) {
	for i, o := range s.Open {
		if o.TurnID == turnID {
			s.Open = append(s.Open[:i:i], s.Open[i+1:]...)
			return
		}
	}
}

// messageFields is the part of UserMessageAdded and AssistantMessageCompleted that history needs:
// decoding only it keeps the fold of a long session cheap (usage, citations and fallbacks are skipped).
type messageFields struct {
	TurnID   string `json:"turnId"`
	Content  string `json:"content"`
	Model    string `json:"model"`
	Instance string `json:"instance"`
	Run      string `json:"run"`
}

func decodeFields(e eventstore.Event, out *messageFields) error {
	if decodeMessage(e.Data, out) == nil {
		return nil
	}
	*out = messageFields{}
	return e.Decode(out)
}

// KeyID is the data key id a session's life is sealed under: "session/<id>" for the life that
// began at revision 0, "session/<id>/<life>" for one begun anew after a deletion (the keystore
// never gives a destroyed id a new key).
func KeyID(id string, life uint64) string {
	if life == 0 {
		return "session/" + id
	}
	return "session/" + id + "/" + strconv.FormatUint(life, 10)
}

// Fold builds a session from its events, oldest first.
func Fold(evs []eventstore.Event) (*Session, error) {
	s := &Session{}
	for _, e := range evs {
		if err := s.Apply(e); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// TitleOf derives a session title from its first message: the first line, at most 80 characters.
func TitleOf(msg string) string {
	r := []rune(msg)
	for i, c := range r {
		if c == '\n' || c == '\r' {
			r = r[:i]
			break
		}
	}
	if len(r) > 80 {
		return string(r[:77]) + "..."
	}
	return string(r)
}
