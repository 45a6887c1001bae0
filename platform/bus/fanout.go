package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// inboxBatches is how many forwarded batches a projection may have waiting: the slack between the
// projections of a group (they apply at different speeds), and the bound on what is held for one
// in memory whatever the length of the history.
const inboxBatches = 8

// errJoined ends a cursor whose projections moved to the main group: not a failure.
var errJoined = errors.New("bus: cursor's projections joined the main group")

// group is the projections that share one cursor (one store subscription): the events are read and
// decoded once for all of them, and the group goes at the pace of its slowest member (a read model
// slow by nature has a cursor of its own: ProjectionOptions.OwnCursor). It hands each member every
// batch through the member's inbox; a member whose inbox is full is waited for, unless it is stuck
// waiting out an unavailable dependency or a failing file while another member is idle: that one
// is detached onto a group of its own rather than holding every read model for as long as the
// fault lasts. A group other than the main one (and not a projection's own) joins the main group
// once it has handed its members the store's live end, so that a deployment at rest reads the
// store once for its read models.
type group struct {
	b     *Bus
	c     *cursor
	types decodeSet // event types decoded for the members, into which Go types (main: those of every projection without OwnCursor)
	main  bool
	own   bool // a projection's own cursor (OwnCursor): it never joins the main group

	// Touched only by the cursor's forwarding goroutine (a join is served on it too).
	members []*Projection
	live    bool // the live end was handed to the members

	kick  chan struct{} // a member became idle (capacity 1: a pending wake-up is enough)
	joins chan joinReq  // the main group: a group asking to join it (unbuffered, asked without waiting)
}

// joinReq asks the main group to take over a group's projections, which have been handed every
// event up to at.
type joinReq struct {
	from    *group
	at      eventstore.Position
	members []*Projection
	reply   chan bool
}

// newGroup makes the group and its cursor, which starts after position from; types nil decodes
// what any projection handles.
func (b *Bus) newGroup(name string, members []*Projection, from eventstore.Position, types decodeSet, main bool) *group {
	if types == nil {
		types = b.projected
	}
	g := &group{b: b, types: types, main: main, members: members, kick: make(chan struct{}, 1)}
	if main {
		g.joins = make(chan joinReq)
	}
	g.c = &cursor{name: name, wantsEnd: true, g: g,
		prepare: func(e eventstore.Event) delivery { return b.prepare(types, e) }}
	g.c.publish = g.publish
	g.c.pos.Store(uint64(from))
	for _, p := range members {
		p.given.Store(uint64(from))
		p.grp.Store(g)
	}
	return g
}

// typesOf is the event types whose data the projections' handlers take, and the Go types they take
// it as.
func typesOf(ps []*Projection) decodeSet {
	ts := decodeSet{}
	for _, p := range ps {
		p.addDecoded(ts)
	}
	return ts
}

// prepare is a consumer's delivery of e: its envelope, and its data decoded once into each Go type
// its handlers take it as (for a type in types: the registered type, or views of it), on the
// subscription's goroutine, so that decoding the next events overlaps with the consumers handling
// the previous batch.
func (b *Bus) prepare(types decodeSet, e eventstore.Event) delivery {
	d := delivery{env: envelopeOf(e)}
	ts := types[e.Type]
	if len(ts) == 0 {
		return d
	}
	d.into = ts[0]
	d.ev, d.err = b.codec.DecodeAs(e.Type, ts[0], e.Data)
	if len(ts) > 1 {
		d.more = make([]decodedAs, len(ts)-1)
		for i, t := range ts[1:] {
			v, err := b.codec.DecodeAs(e.Type, t, e.Data)
			d.more[i] = decodedAs{into: t, ev: v, err: err}
		}
	}
	return d
}

// groupCursors forms the groups at start. A projection with OwnCursor gets its own. The others:
// those whose checkpoints are close (within CatchUpCommitEvery, what one crash leaves between them)
// share a cursor from the lowest of them, those ahead skipping what they have; one far behind (a new
// or rebuilt read model) gets another, so that the others are caught up at once. The main group is
// the shared one furthest ahead (nil when every projection has its own cursor).
func (b *Bus) groupCursors(ps []*Projection) (gs []*group, main *group) {
	sorted := slices.Clone(ps)
	pos := func(p *Projection) eventstore.Position { return p.store.Load().Position() }
	slices.SortStableFunc(sorted, func(x, y *Projection) int { return -cmpPos(pos(x), pos(y)) })
	shared := slices.DeleteFunc(slices.Clone(sorted), func(p *Projection) bool { return p.opts.OwnCursor })
	for i := 0; i < len(shared); {
		top := pos(shared[i])
		j := i + 1
		for j < len(shared) && uint64(top-pos(shared[j])) <= uint64(b.cfg.CatchUpCommitEvery) {
			j++
		}
		members := slices.Clone(shared[i:j])
		from := pos(shared[j-1])
		if main == nil {
			main = b.newGroup("projections", members, from, nil, true)
			gs = append(gs, main)
		} else {
			gs = append(gs, b.newGroup(fmt.Sprintf("projections from %d", from), members, from, typesOf(members), false))
		}
		i = j
	}
	for _, p := range sorted {
		if p.opts.OwnCursor {
			g := b.newGroup("projection "+p.name, []*Projection{p}, pos(p), typesOf([]*Projection{p}), false)
			g.own = true
			gs = append(gs, g)
		}
	}
	return gs, main
}

func cmpPos(x, y eventstore.Position) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// publish hands a batch (and the live end after it, when end is set) to every member, in order.
func (g *group) publish(ctx context.Context, batch []item, end *eventstore.Position) error {
	done := g.c.pos.Load()
	lb := &localBatch{events: make([]delivery, 0, len(batch))}
	for _, it := range batch {
		if uint64(it.d.env.Position) <= done {
			continue
		}
		lb.events = append(lb.events, it.d)
	}
	if end != nil {
		lb.caughtUp, lb.at = true, *end
	}
	if len(lb.events) == 0 && !lb.caughtUp {
		return nil
	}
	last := done
	if n := len(lb.events); n > 0 {
		last = uint64(lb.events[n-1].env.Position)
	}
	for i := 0; i < len(g.members); {
		p := g.members[i]
		handed, err := g.handTo(ctx, p, lb)
		if err != nil {
			return err
		}
		if !handed {
			g.members = slices.Delete(g.members, i, i+1)
			continue
		}
		p.given.Store(last)
		i++
	}
	g.c.pos.Store(last)
	if lb.caughtUp {
		g.live = true
	}
	return nil
}

// handTo puts lb in p's inbox. When the inbox is full it waits for p, unless (or until) p is stuck
// waiting out a fault while another member is idle: then p is detached onto a cursor of its own
// (false), and the group goes on with the others. (A member that is merely slower paces the group:
// detaching it would cost one more read of the store for as long as it catches up, and on a busy
// machine the next slowest would follow, and the next.)
func (g *group) handTo(ctx context.Context, p *Projection, lb *localBatch) (bool, error) {
	p.queued.Add(1)
	select {
	case p.inbox <- lb:
		return true, nil
	default:
	}
	for {
		if p.stuck() && g.otherIdle(p) {
			p.queued.Add(-1)
			g.detach(p)
			return false, nil
		}
		select {
		case p.inbox <- lb:
			return true, nil
		case <-g.kick:
		case <-ctx.Done():
			p.queued.Add(-1)
			return false, ctx.Err()
		}
	}
}

// otherIdle reports whether a member other than p has applied every batch it was handed.
func (g *group) otherIdle(p *Projection) bool {
	for _, q := range g.members {
		if q != p && q.queued.Load() == 0 {
			return true
		}
	}
	return false
}

// stuck reports whether p waits out an unavailable dependency or a failing read model file.
func (p *Projection) stuck() bool { return p.waiting.err.Load() != nil || p.fault.Load() != nil }

// kickGroup wakes p's group: p became idle, or stuck.
func (p *Projection) kickGroup() {
	if g := p.grp.Load(); g != nil {
		select {
		case g.kick <- struct{}{}:
		default:
		}
	}
}

// detach moves p to a group of its own, whose cursor starts after the last event p was handed and
// decodes only the types p handles. It rejoins the main group once it has caught up again.
func (g *group) detach(p *Projection) {
	b := g.b
	b.log.Warn("bus: projection is stuck on a fault; the others go on, and it reads the store on its own cursor until it has caught up again",
		"projection", p.name, "at", p.progress.Load(), "handed", p.given.Load(), "group", g.c.name)
	s := b.newGroup("projection "+p.name, []*Projection{p}, eventstore.Position(p.given.Load()), typesOf([]*Projection{p}), false)
	b.startCursor(s.c)
}

// idle is called on the cursor's goroutine when a member became idle and the cursor waits for the
// store: a group other than the main one that has handed its members the live end asks to join the
// main group (without waiting: a main group busy handing a batch is asked again at the next wake-up).
// errJoined when it joined.
func (g *group) idle() error {
	m := g.b.mainGroup
	if g.main || g.own || m == nil || !g.live {
		return nil
	}
	for _, p := range g.members {
		if p.queued.Load() != 0 || !p.isCaughtUp() {
			return nil // still busy: joining now would have it paced by, or pace, the main group
		}
	}
	r := joinReq{from: g, at: eventstore.Position(max(g.c.pos.Load(), g.c.liveEnd.Load())), members: g.members, reply: make(chan bool, 1)}
	select {
	case m.joins <- r:
	default:
		return nil
	}
	if !<-r.reply {
		return nil
	}
	g.b.log.Info("bus: projections rejoin the main cursor", "cursor", g.c.name, "at", r.at, "projections", names(r.members))
	g.members = nil
	return errJoined
}

// accept takes over a group's projections when the main cursor has handed out nothing after the
// position they were handed up to (what it hands them next may repeat some: a projection skips
// positions at or below its checkpoint); refused otherwise, and asked again later.
func (g *group) accept(r joinReq) {
	if g.c.pos.Load() > uint64(r.at) {
		r.reply <- false
		return
	}
	for _, p := range r.members {
		p.grp.Store(g)
		p.given.Store(uint64(r.at))
	}
	g.members = append(g.members, r.members...)
	r.reply <- true
}

func names(ps []*Projection) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.name
	}
	return out
}

// startCursor runs c's forwarding loop until the bus stops (or c's projections joined the main
// group).
func (b *Bus) startCursor(c *cursor) {
	b.mu.Lock()
	b.cursors = append(b.cursors, c)
	b.mu.Unlock()
	// Called from Run before it waits, or from a running cursor (the group counts as running).
	b.fwdWG.Add(1)
	go func() {
		defer b.fwdWG.Done()
		b.forward(b.fwdCtx, c)
		if c.joined.Load() {
			b.mu.Lock()
			b.cursors = slices.DeleteFunc(b.cursors, func(x *cursor) bool { return x == c })
			b.mu.Unlock()
		}
	}()
}

// feed moves the batches of p's inbox, in order, to its runner through the in-process Watermill
// transport (its own topic): each publish returns once p has applied the batch. It wakes p's group
// when p has applied every batch it was handed.
func (p *Projection) feed(ctx context.Context, pub message.Publisher, wg *sync.WaitGroup) {
	defer wg.Done()
	inbox := p.inbox
	var prepared chan preparedBatch
	if len(p.prepByType) > 0 {
		// Its Prepare handlers take the inbox, on a goroutine of their own a batch ahead of the
		// projection.
		inbox, prepared = nil, make(chan preparedBatch)
		wg.Add(1)
		go p.prepareLoop(ctx, prepared, wg)
	}
	for {
		var pb preparedBatch
		select {
		case <-ctx.Done():
			return
		case pb.lb = <-inbox:
		case pb = <-prepared:
		}
		m := message.NewMessage(watermill.NewUUID(), nil)
		m.SetContext(context.WithValue(context.WithoutCancel(ctx), localBatchKey{}, pb))
		if err := pub.Publish(p.topic(), m); err != nil {
			if ctx.Err() == nil {
				p.b.log.Error("bus: publish to a projection", "projection", p.name, "err", err)
			}
			return
		}
		if p.queued.Add(-1) == 0 {
			p.kickGroup()
		}
	}
}

// topic is p's in-process topic.
func (p *Projection) topic() string { return "projection." + p.name }

// startCursors starts the groups' cursors: those shared by several read models at once, those of a
// projection with a cursor of its own (OwnCursor: slow by nature, the search index) once every
// shared read model has caught up (or is stuck on a fault). On a first start or a rebuild the
// shared read models (session lists, budgets, usage, the tenant directory: what most routes read)
// then have the machine's cores to themselves instead of sharing them with the index's
// re-embedding, and are ready that much sooner; the own cursors start after, and catch up at their
// own pace as before. At a restart from checkpoints the shared read models are caught up at once,
// so nothing waits. processors, when set, is the processors' cursor far behind the store (a new
// data folder on a store with history): it starts with the own cursors, for the same reason (in a
// first start of crispy serve at 1M events it took a fifth of the CPU the shared read models had;
// processors act in the background and no route waits for them).
//
// settled, when set, is called once the shared read models have settled so (it puts the
// collector's setting back: catchUpGC).
func (b *Bus) startCursors(ctx context.Context, groups []*group, processors *cursor, settled func()) {
	var shared []*Projection
	var own []*group
	for _, g := range groups {
		if g.own {
			own = append(own, g)
			continue
		}
		shared = append(shared, g.members...)
		startReading(g)
		b.startCursor(g.c)
	}
	startLater := func() {
		for _, g := range own {
			startReading(g)
			b.startCursor(g.c)
		}
		if processors != nil {
			b.startCursor(processors)
		}
	}
	if len(own) == 0 && processors == nil && settled == nil {
		return
	}
	if len(shared) == 0 {
		if settled != nil {
			settled()
		}
		startLater()
		return
	}
	b.fwdWG.Add(1)
	go func() {
		defer b.fwdWG.Done()
		waited := time.Now()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for !sharedSettled(shared) {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		if settled != nil {
			settled()
		}
		if len(own) == 0 && processors == nil {
			return
		}
		if d := time.Since(waited); d > 100*time.Millisecond {
			b.log.Info("bus: the shared read models caught up; projections on cursors of their own start now", "waited", d.Round(time.Millisecond).String(), "projections", ownNames(own),
				"processorsFrom", processorsFrom(processors))
		}
		startLater()
	}()
}

// startReading notes when g's members start reading the store (before its cursor runs).
func startReading(g *group) {
	now := time.Now().UnixNano()
	for _, p := range g.members {
		p.reading.CompareAndSwap(0, now)
	}
}

// sharedSettled reports whether every one of ps has caught up, is stuck on a fault or stopped.
func sharedSettled(ps []*Projection) bool {
	for _, p := range ps {
		if p.isCaughtUp() || p.stuck() {
			continue
		}
		select {
		case <-p.stopped:
			continue
		default:
		}
		return false
	}
	return true
}

// processorsFrom is the position after which a deferred processors' cursor starts (-1: not deferred).
func processorsFrom(c *cursor) int64 {
	if c == nil {
		return -1
	}
	return int64(c.pos.Load())
}

func ownNames(gs []*group) []string {
	var out []string
	for _, g := range gs {
		out = append(out, names(g.members)...)
	}
	return out
}
