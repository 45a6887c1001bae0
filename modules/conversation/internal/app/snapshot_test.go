package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/keystore/keystoretest"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// countingStore counts the session events ReadStream returns, and can act right after the check
// of a snapshot append (a read of one session event), as a deletion on another replica would.
type countingStore struct {
	eventstore.Store
	mu         sync.Mutex
	read       int
	afterCheck func()
}

func (c *countingStore) ReadStream(ctx context.Context, st tenant.Stream, from uint64, max int) ([]eventstore.Event, error) {
	evs, err := c.Store.ReadStream(ctx, st, from, max)
	c.mu.Lock()
	hook := c.afterCheck
	if st.Category() == events.SessionCategory {
		c.read += len(evs)
		if max == 1 {
			c.afterCheck = nil
		} else {
			hook = nil
		}
	} else {
		hook = nil
	}
	c.mu.Unlock()
	if hook != nil {
		hook()
	}
	return evs, err
}

func (c *countingStore) reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.read
	c.read = 0
	return n
}

// sealedStores holds the sealing decorator of each test store, so services sharing a store (two
// replicas) share its keys, and the tests read what the services read.
var sealedStores sync.Map // eventstore.Store → *sealing.Store

// through is st behind the sealing decorator with the module's policy, as crispy serve wires it.
func through(st eventstore.Store) *sealing.Store {
	v, _ := sealedStores.LoadOrStore(st, sealing.NewStore(st, sealing.New(keystoretest.NewMemory()), SealPolicy()).KeepPlain(PlainFields()))
	return v.(*sealing.Store)
}

func snapService(st eventstore.Store, every int) *Service {
	sl := through(st)
	return &Service{Store: sl, Keys: sl.Sealer(), Cache: NewCache(64 << 20), Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Settings: Settings{SnapshotEvery: every}}
}

// turnEvents are a turn's user message and its outcome (completed or failed), the session started
// first when it is not live.
func turnEvents(id string, n int, failed bool) func(*domain.Session) ([]eventstore.EventData, error) {
	return func(cur *domain.Session) ([]eventstore.EventData, error) {
		var out []eventstore.EventData
		if !cur.Live() {
			ev, _ := eventstore.NewEventData(events.TypeSessionStarted, events.SessionStarted{SessionID: id, Title: fmt.Sprint("title ", n)})
			out = append(out, ev)
		}
		turn := fmt.Sprint("turn-", n)
		u, _ := eventstore.NewEventData(events.TypeUserMessageAdded, events.UserMessageAdded{SessionID: id, TurnID: turn, Content: fmt.Sprintf("question %d %s", n, strings.Repeat("q", n%50))})
		a, _ := eventstore.NewEventData(events.TypeAssistantMessageCompleted, events.AssistantMessageCompleted{SessionID: id, TurnID: turn, Content: fmt.Sprint("answer ", n), Model: "fake:m"})
		if failed {
			a, _ = eventstore.NewEventData(events.TypeAssistantMessageFailed, events.AssistantMessageFailed{SessionID: id, TurnID: turn, Code: events.CodeStreamFailed})
		}
		if n%7 == 3 {
			return append(out, u), nil // a turn left open (an interrupted one is closed by a later turn's outcome or never)
		}
		return append(out, u, a), nil
	}
}

// fullFold is the session folded from every readable event, without snapshots.
func fullFold(t *testing.T, st eventstore.Store, tn tenant.ID, id string) *domain.Session {
	t.Helper()
	evs, err := through(st).ReadStream(context.Background(), tenant.MustStream(tn, events.SessionCategory, id), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := domain.Fold(evs)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID == "" {
		s.ID = id
	}
	return s
}

// sameFold compares two folds but for what their snapshot stream holds.
func sameFold(a, b *domain.Session) bool {
	x, y := *a, *b
	x.Sealed, y.Sealed = domain.Seal{}, domain.Seal{}
	if len(x.Messages) == 0 && len(y.Messages) == 0 {
		x.Messages, y.Messages = nil, nil
	}
	if len(x.Open) == 0 && len(y.Open) == 0 {
		x.Open, y.Open = nil, nil
	}
	return reflect.DeepEqual(x, y)
}

func segments(t *testing.T, st eventstore.Store, tn tenant.ID, id string) (segs, dropped int, text string) {
	t.Helper()
	sst, _ := snapshotStream(tn, id)
	evs, err := through(st).ReadStream(context.Background(), sst, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range evs {
		switch {
		case e.Erased:
			continue // an erased segment: no longer readable
		case e.Type == events.TypeSessionSnapshotted:
			segs++
		case e.Type == events.TypeSessionSnapshotsDropped:
			dropped++
		}
		b.Write(e.Data)
	}
	return segs, dropped, b.String()
}

// A fold from snapshot segments is the fold of every event, whatever the session went through
// (turns completed, failed and left open, a deletion and a new start, folds from a cold cache at any
// point), and a cold fold of a long session reads a few segments and the events after them.
func TestSnapshotFoldIsTheFoldOfEveryEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := &countingStore{Store: eventstoretest.NewMemory()}
	const every = 16
	svc := snapService(st, every)
	id := "0b0f6a52-6f7e-4c55-9a8e-3f3d2f1c9b10"
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 600; n++ {
		if r.IntN(10) == 0 {
			svc.Cache.drop(cacheKey(acme, id)) // a restart, or an eviction
		}
		if n == 300 { // deleted and started anew
			if err := svc.Delete(ctx, acme, id); err != nil {
				t.Fatal(err)
			}
			if segs, dropped, _ := segments(t, st, acme, id); segs != 0 || dropped != 1 {
				t.Fatalf("after the deletion: %d readable segments and %d drops, want 0 and 1", segs, dropped)
			}
		}
		if _, _, err := svc.update(ctx, acme, id, turnEvents(id, n, r.IntN(5) == 0)); err != nil {
			t.Fatal(err)
		}
		if n%25 != 0 {
			continue
		}
		svc.Cache.drop(cacheKey(acme, id))
		got, err := svc.load(ctx, acme, id)
		if err != nil {
			t.Fatal(err)
		}
		if want := fullFold(t, st, acme, id); !sameFold(got, want) {
			t.Fatalf("after turn %d the fold with snapshots differs from the fold of every event:\n got %+v\nwant %+v", n, *got, *want)
		}
	}
	segs, _, _ := segments(t, st, acme, id)
	if segs == 0 {
		t.Fatal("no segment was written")
	}
	svc.Cache.drop(cacheKey(acme, id))
	st.reads()
	sess, err := svc.load(ctx, acme, id)
	if err != nil {
		t.Fatal(err)
	}
	// The probe (every events) and at most every+2 events after the last segment.
	if n := st.reads(); n > 2*every+2 {
		t.Fatalf("a cold fold of %d events read %d of them", sess.Revision+1, n)
	}
}

// The same with segments cut by size (a few long messages) rather than by count.
func TestSnapshotSegmentsAreCutBySize(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := eventstoretest.NewMemory()
	svc := snapService(st, 10000)
	id := "0b0f6a52-6f7e-4c55-9a8e-3f3d2f1c9b11"
	long := strings.Repeat("long message ", 10000) // 130 kB
	for n := 0; n < 12; n++ {
		_, _, err := svc.update(ctx, acme, id, func(cur *domain.Session) ([]eventstore.EventData, error) {
			var out []eventstore.EventData
			if !cur.Live() {
				ev, _ := eventstore.NewEventData(events.TypeSessionStarted, events.SessionStarted{SessionID: id})
				out = append(out, ev)
			}
			ev, _ := eventstore.NewEventData(events.TypeUserMessageAdded, events.UserMessageAdded{SessionID: id, TurnID: fmt.Sprint(n), Content: long})
			return append(out, ev), nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	segs, _, _ := segments(t, st, acme, id)
	if segs != 2 { // 4 messages make 520 kB: a segment after the 4th and the 8th
		t.Fatalf("%d segments, want 2", segs)
	}
}

// Deletion makes a session's snapshot unreadable, and a snapshot of a fold taken before the
// deletion cannot be written after it, whichever side of the writer's check the deletion falls on.
func TestADeletedSessionsSnapshotIsUnreadable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const secret = "the launch code is 0000"
	seed := func(t *testing.T, st eventstore.Store, svc *Service, id string) *domain.Session {
		for n := 0; n < 40; n++ {
			if _, _, err := svc.update(ctx, acme, id, func(cur *domain.Session) ([]eventstore.EventData, error) {
				evs, _ := turnEvents(id, n, false)(cur)
				u, _ := eventstore.NewEventData(events.TypeUserMessageAdded, events.UserMessageAdded{SessionID: id, TurnID: fmt.Sprint("s", n), Content: secret})
				return append(evs, u), nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		if segs, _, text := segments(t, st, acme, id); segs == 0 || !strings.Contains(text, secret) {
			t.Fatalf("%d segments, want some holding the text", segs)
		}
		sess, err := svc.load(ctx, acme, id)
		if err != nil {
			t.Fatal(err)
		}
		return sess
	}
	noContent := func(t *testing.T, st eventstore.Store, id string) {
		t.Helper()
		segs, dropped, text := segments(t, st, acme, id)
		if segs != 0 || dropped != 1 || strings.Contains(text, secret) {
			t.Fatalf("snapshot stream after the deletion: %d segments, %d drops, content readable: %v", segs, dropped, strings.Contains(text, secret))
		}
		for _, rd := range []eventstore.Store{through(st), st} { // as read, and as stored
			all, err := rd.ReadTenant(ctx, acme, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range all {
				if strings.Contains(string(e.Data), secret) {
					t.Fatalf("%s %s@%d still readable with the deleted content", e.Type, e.Stream, e.Revision)
				}
			}
		}
	}

	t.Run("deleted", func(t *testing.T) {
		st := eventstoretest.NewMemory()
		svc := snapService(st, 16)
		id := "0b0f6a52-6f7e-4c55-9a8e-3f3d2f1c9b12"
		seed(t, st, svc, id)
		if err := svc.Delete(ctx, acme, id); err != nil {
			t.Fatal(err)
		}
		noContent(t, st, id)
		svc.Cache.drop(cacheKey(acme, id))
		if _, err := svc.History(ctx, acme, id); apperrCode(err) != "session_not_found" {
			t.Fatalf("history of the deleted session: %v", err)
		}
	})

	t.Run("snapshot of a fold from before the deletion, written after it", func(t *testing.T) {
		st := eventstoretest.NewMemory()
		svc := snapService(st, 16)
		id := "0b0f6a52-6f7e-4c55-9a8e-3f3d2f1c9b13"
		before := seed(t, st, svc, id)
		stale := before.Clone()
		var segs []events.SessionSnapshotted
		for n := 0; n < 20; n++ { // a fold with a segment due, as another replica might hold
			u, _ := eventstore.NewEventData(events.TypeUserMessageAdded, events.UserMessageAdded{SessionID: id, TurnID: fmt.Sprint("x", n), Content: secret})
			res, err := through(st).Append(ctx, tenant.MustStream(acme, events.SessionCategory, id), eventstore.Exact(stale.Revision), u)
			if err != nil {
				t.Fatal(err)
			}
			cut, err := stale.ApplyCutting(res.Events, 16)
			if err != nil {
				t.Fatal(err)
			}
			segs = append(segs, cut...)
		}
		if len(segs) == 0 {
			t.Fatal("no segment due")
		}
		if err := svc.Delete(ctx, acme, id); err != nil {
			t.Fatal(err)
		}
		if svc.writeSegments(ctx, acme, stale, segs) {
			t.Fatal("segments of a fold from before the deletion were written after it")
		}
		noContent(t, st, id)
	})

	t.Run("the key's destruction failed, and the DELETE is sent again", func(t *testing.T) {
		st := eventstoretest.NewMemory()
		svc := snapService(st, 16)
		keys := &failingKeys{Keys: svc.Keys, fail: true}
		svc.Keys = keys
		id := "0b0f6a52-6f7e-4c55-9a8e-3f3d2f1c9b15"
		seed(t, st, svc, id)
		if err := svc.Delete(ctx, acme, id); err == nil {
			t.Fatal("the deletion's key destruction failed, and Delete said nothing")
		}
		if _, _, text := segments(t, st, acme, id); !strings.Contains(text, secret) {
			t.Fatal("the failure left nothing to finish: the test cannot tell")
		}
		keys.fail = false
		if err := svc.Delete(ctx, acme, id); apperrCode(err) != "session_not_found" {
			t.Fatalf("second DELETE: %v, want session_not_found", err)
		}
		noContent(t, st, id)
	})

	t.Run("deleted between the writer's check and its append", func(t *testing.T) {
		cs := &countingStore{Store: eventstoretest.NewMemory()}
		writer := snapService(cs, 16)
		deleter := snapService(cs, 16) // another replica
		id := "0b0f6a52-6f7e-4c55-9a8e-3f3d2f1c9b14"
		seed(t, cs, writer, id)
		deleted := false
		cs.mu.Lock()
		cs.afterCheck = func() {
			if err := deleter.Delete(ctx, acme, id); err != nil {
				t.Error(err)
			}
			deleted = true
		}
		cs.mu.Unlock()
		for n := 100; !deleted && n < 140; n++ { // until a segment is due and the writer checks
			if _, _, err := writer.update(ctx, acme, id, turnEvents(id, n, false)); err != nil {
				t.Fatal(err)
			}
		}
		if !deleted {
			t.Fatal("no segment was attempted")
		}
		noContent(t, cs, id)
	})
}

// failingKeys fails Destroy while fail is set.
type failingKeys struct {
	Keys
	fail bool
}

func (f *failingKeys) Destroy(ctx context.Context, t tenant.ID, keyID string) error {
	if f.fail {
		return fmt.Errorf("key store on fire")
	}
	return f.Keys.Destroy(ctx, t, keyID)
}

func apperrCode(err error) string {
	if e, ok := apperr.As(err); ok {
		return e.Code
	}
	return fmt.Sprint(err)
}
