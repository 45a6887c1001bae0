package domain

import (
	"time"
	"unsafe"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// Seal is what a session's snapshot stream (t-{tenant}.snapshot-session-{id}) holds of a fold.
//
// A long session is read back from its segments (SessionSnapshotted, each with the state whole and
// the messages since the previous one) plus the events after the last segment, instead of from
// every event. Segments carry message content, so a deletion or expiry appends
// SessionSnapshotsDropped to the snapshot stream and truncates before it. A segment is appended
// expecting the snapshot stream's revision that was read before the session's events were: if a
// deletion's SessionSnapshotsDropped came in between, the append is refused, so content folded
// before a deletion cannot be written after it.
type Seal struct {
	// StreamRev and StreamExists are the snapshot stream's last revision as this fold knows it, when
	// StreamKnown (a fold of a short session has not read its snapshot stream).
	StreamKnown  bool
	StreamRev    uint64
	StreamExists bool
	// Covered: a segment holds the fold through session revision Through.
	Covered bool
	Through uint64
	// Messages is how many of the fold's first messages the segments hold (0 after the session was
	// started anew, deleted or expired).
	Messages int
}

// Expected is the snapshot stream revision a segment append must expect.
func (s Seal) Expected() eventstore.ExpectedRevision {
	return eventstore.After(s.StreamRev, s.StreamExists)
}

// SegmentBytes bounds the message text of one segment (plus the little one update appends): well
// under the 1 MiB an EventStoreDB append takes by default.
const SegmentBytes = 512 << 10

// SegmentDue reports whether the fold's events since its last segment should become a new one: the
// session is live, and at least every events, or SegmentBytes of message text, are in no segment.
// every <= 0: never.
func (s *Session) SegmentDue(every int) bool {
	if every <= 0 || !s.Live() {
		return false
	}
	tail := s.Revision + 1
	if s.Sealed.Covered {
		if s.Revision <= s.Sealed.Through {
			return false
		}
		tail = s.Revision - s.Sealed.Through
	}
	if tail >= uint64(every) {
		return true
	}
	n := 0
	for _, m := range s.Messages[min(s.Sealed.Messages, len(s.Messages)):] {
		if n += len(m.Content); n >= SegmentBytes {
			return true
		}
	}
	return false
}

// MinSnapshotEvery is the fewest events a segment may cover (the floor of the SnapshotEvery setting).
const MinSnapshotEvery = 16

// MayHaveSegments reports whether segments of this live fold, or of an older fold of the same
// session, may have been written (by this process or another, with any SnapshotEvery setting): the
// fold has at least MinSnapshotEvery events, or SegmentBytes of message text, or knows a segment. A
// deletion of a session that may not have any skips dropping them.
func (s *Session) MayHaveSegments() bool {
	if s.Sealed.Covered || s.Revision+1 >= MinSnapshotEvery {
		return true
	}
	n := 0
	for _, m := range s.Messages {
		n += len(m.Content)
	}
	return n >= SegmentBytes
}

// Segment is the fold's next segment: its state, and its messages after the ones already sealed.
func (s *Session) Segment() events.SessionSnapshotted {
	keep := min(s.Sealed.Messages, len(s.Messages))
	seg := events.SessionSnapshotted{SessionID: s.ID, Through: s.Revision, Keep: keep, Life: s.Life, Title: s.Title, UserID: s.UserID,
		Turns: s.Turns, Failed: s.Failed, CreatedAt: nanos(s.CreatedAt), LastActivity: nanos(s.LastActivity),
		Messages: make([]events.SnapshotMessage, 0, len(s.Messages)-keep)}
	if s.Sealed.Covered {
		seg.From = s.Sealed.Through + 1
	}
	for _, o := range s.Open {
		seg.Open = append(seg.Open, events.SnapshotOpenTurn{TurnID: o.TurnID, Since: nanos(o.Since), Instance: o.Instance, Run: o.Run})
	}
	for _, m := range s.Messages[keep:] {
		seg.Messages = append(seg.Messages, events.SnapshotMessage{Role: m.Role, Content: m.Content, Timestamp: nanos(m.Timestamp), TurnID: m.TurnID, Model: m.Model})
	}
	return seg
}

// CutSegment returns the fold's next segment when one is due (SegmentDue), and from then on counts
// it as sealed: the caller appends it to the snapshot stream, or drops this fold if it cannot. Called
// after every event applied, it cuts a long run of events into segments of at most every events or
// about SegmentBytes of text.
func (s *Session) CutSegment(every int) (events.SessionSnapshotted, bool) {
	if !s.SegmentDue(every) {
		return events.SessionSnapshotted{}, false
	}
	seg := s.Segment()
	s.Sealed.Covered, s.Sealed.Through, s.Sealed.Messages = true, seg.Through, seg.Keep+len(seg.Messages)
	return seg, true
}

// ApplyCutting applies evs and returns the segments cut along the way (CutSegment).
func (s *Session) ApplyCutting(evs []eventstore.Event, every int) ([]events.SessionSnapshotted, error) {
	var segs []events.SessionSnapshotted
	for _, e := range evs {
		if err := s.Apply(e); err != nil {
			return nil, err
		}
		if seg, ok := s.CutSegment(every); ok {
			segs = append(segs, seg)
		}
	}
	return segs, nil
}

// SegmentText is the message text a segment carries.
func SegmentText(seg events.SessionSnapshotted) int {
	n := 0
	for _, m := range seg.Messages {
		n += len(m.Content)
	}
	return n
}

// FromSegments rebuilds a session from the readable events of its snapshot stream, oldest first:
// the fold at the last segment that chains onto the ones before it (nil when there is none; a
// SessionSnapshotsDropped starts over). The returned Seal holds the stream's last revision even
// when no segment is usable.
func FromSegments(evs []eventstore.Event) (*Session, Seal, error) {
	seal := Seal{StreamKnown: true}
	var cur *Session
	for _, e := range evs {
		seal.StreamRev, seal.StreamExists = e.Revision, true
		switch e.Type {
		case events.TypeSessionSnapshotsDropped:
			cur = nil
		case events.TypeSessionSnapshotted:
			if e.Erased {
				// An ended life's segment (its key destroyed): the events will be folded instead.
				cur = nil
				continue
			}
			var seg events.SessionSnapshotted
			var msgs []Message
			if decodeSegment(e.Data, &seg, &msgs) != nil {
				seg, msgs = events.SessionSnapshotted{}, nil
				if err := e.Decode(&seg); err != nil {
					return nil, seal, err
				}
				for _, m := range seg.Messages {
					msgs = append(msgs, Message{Role: role(m.Role), Content: m.Content, Timestamp: fromNanos(m.Timestamp), TurnID: m.TurnID, Model: m.Model})
				}
			}
			switch {
			case seg.Keep == 0: // self-contained
				cur = &Session{}
			case cur != nil && seg.From == cur.Revision+1 && seg.Keep <= len(cur.Messages):
			default: // does not chain (a segment lost to truncation): the events will be folded instead
				cur = nil
				continue
			}
			cur = applySegment(cur, seg, msgs)
		}
	}
	if cur != nil {
		cur.Sealed = seal
		cur.Sealed.Covered, cur.Sealed.Through, cur.Sealed.Messages = true, cur.Revision, len(cur.Messages)
	}
	return cur, seal, nil
}

// applySegment sets cur to the state of seg, keeping its first seg.Keep messages, then msgs.
func applySegment(cur *Session, seg events.SessionSnapshotted, msgs []Message) *Session {
	all := append(cur.Messages[:seg.Keep], msgs...) // amortised: the segments add to one slice
	var open []OpenTurn
	for _, o := range seg.Open {
		open = append(open, OpenTurn{TurnID: o.TurnID, Since: fromNanos(o.Since), Instance: o.Instance, Run: o.Run})
	}
	return &Session{ID: seg.SessionID, Exists: true, Started: true, Revision: seg.Through, Life: seg.Life, Title: seg.Title, UserID: seg.UserID, Messages: all,
		Turns: seg.Turns, Failed: seg.Failed, CreatedAt: fromNanos(seg.CreatedAt), LastActivity: fromNanos(seg.LastActivity), Open: open}
}

// role returns the constant spelling of a decoded role, so a long history holds no copy per message.
func role(r string) string {
	switch r {
	case "user":
		return "user"
	case "assistant":
		return "assistant"
	}
	return r
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Sizes for the fold cache's accounting: what a cached session costs beyond its strings' bytes.
const (
	// messageSize is one Message value in a session's slice (its strings' headers and a time).
	messageSize  = int64(unsafe.Sizeof(Message{}))
	openTurnSize = int64(unsafe.Sizeof(OpenTurn{}))
	// SessionOverhead is the Session value and what holds it in a cache: its key, a map entry and a
	// list element (BenchmarkCacheAccounting: within 2% of the heap).
	SessionOverhead = int64(unsafe.Sizeof(Session{})) + 160
	// stringOverhead is the allocator's rounding of a string's bytes, on average.
	stringOverhead = 8
)

// Size is what the fold costs in memory, counted as the fold cache budgets it: the session value,
// every message's slot (the slice's capacity) and the bytes of its strings. Strings shared with
// other values are counted as if they were not: a cache's budget errs on the side of holding less.
func (s *Session) Size() int64 {
	n := SessionOverhead + str(s.ID) + str(s.Title) + str(s.UserID)
	n += int64(cap(s.Messages)) * messageSize
	for i := range s.Messages {
		m := &s.Messages[i]
		n += str(m.Content) + str(m.TurnID) + str(m.Model)
	}
	n += int64(cap(s.Open)) * openTurnSize
	for _, o := range s.Open {
		n += str(o.TurnID) + str(o.Instance) + str(o.Run)
	}
	return n
}

func str(s string) int64 {
	if s == "" {
		return 0
	}
	return int64(len(s)) + stringOverhead
}
