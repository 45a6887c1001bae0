package conversation_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/modules/conversation"
	"github.com/crispy-enigma/crispy/modules/conversation/events"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// subscribeLog records where the store's subscriptions start, and can hold back the events after
// the live end (a forwarder that has not seen an append yet).
type subscribeLog struct {
	eventstore.Store
	mu    sync.Mutex
	froms []eventstore.Position
	hold  chan struct{} // when set, live events wait for it to close
}

func (s *subscribeLog) Subscribe(ctx context.Context, o eventstore.SubscribeOptions, h eventstore.Handler) error {
	s.mu.Lock()
	s.froms = append(s.froms, o.From)
	hold := s.hold
	s.mu.Unlock()
	live := false
	if o.CaughtUp != nil {
		up := o.CaughtUp
		o.CaughtUp = func(ctx context.Context, at eventstore.Position) error { live = true; return up(ctx, at) }
	}
	return s.Store.Subscribe(ctx, o, func(ctx context.Context, e eventstore.Event) error {
		if live && hold != nil {
			select {
			case <-hold:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return h(ctx, e)
	})
}

func (s *subscribeLog) starts() []eventstore.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]eventstore.Position(nil), s.froms...)
}

func listIDs(t *testing.T, e *env, tenantID, cursor string, limit int) ([]string, string) {
	t.Helper()
	r := e.do("GET", "/sessions?limit="+strconv.Itoa(limit)+"&cursor="+cursor, tenantID, nil)
	if r.status != 200 {
		t.Fatalf("list: %d %s", r.status, r.raw)
	}
	var ids []string
	for _, x := range r.body["sessions"].([]any) {
		ids = append(ids, x.(map[string]any)["sessionId"].(string))
	}
	next, _ := r.body["nextCursor"].(string)
	return ids, next
}

// A restart resumes the session list and the token ledger from their checkpoints: the store is
// read only from after the last event they applied (no replay), a cursor handed out before the
// restart pages on after it, and the budget still counts what was used before it.
func TestReadModelsResumeFromTheirCheckpointAcrossARestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := &subscribeLog{Store: eventstoretest.NewMemory()}
	o := opts{store: st, dir: dir, config: conversation.Config{MaxCompletionTokens: 50, ContextTokens: 4096},
		fake:    aitest.New(aitest.Script{Usage: &ai.Usage{PromptTokens: 250, CompletionTokens: 50, TotalTokens: 300}}),
		tenants: map[string]tenancyevents.TenantConfig{"acme": {TokenBudget: tenancyevents.TokenBudget{Daily: 950}}}}
	e := newEnv(t, o)
	var made []string
	for i := 0; i < 3; i++ {
		s := sid()
		made = append(made, s)
		if r := e.chatJSON("acme", s, "hi"); r.status != 200 {
			t.Fatal(r.raw)
		}
		time.Sleep(time.Millisecond)
	}
	e.sync()
	page1, cursor := listIDs(t, e, "acme", "", 2)
	if len(page1) != 2 || cursor == "" || page1[0] != made[2] || page1[1] != made[1] {
		t.Fatalf("first page %v (made %v)", page1, made)
	}
	last, err := st.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.cancel()

	before := len(st.starts())
	e2 := newEnv(t, o)
	e2.sync()
	for _, from := range st.starts()[before:] {
		if from <= last {
			t.Fatalf("the restart subscribed from %d: it replays what its checkpoint holds (store at %d)", from, last)
		}
	}
	page2, next := listIDs(t, e2, "acme", cursor, 2)
	if len(page2) != 1 || page2[0] != made[0] || next != "" {
		t.Fatalf("the page after the restart: %v next %q", page2, next)
	}
	// 900 tokens used before the restart: the next turn (about 100 reserved) does not fit under 950.
	wantProblem(t, e2.chatJSON("acme", sid(), "hi"), 429, "budget_exceeded")
}

// Tenant isolation of the read models: a tenant lists only its sessions, even with another tenant's
// cursor, and spends only its own budget.
func TestReadModelsKeepTenantsApart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{config: conversation.Config{MaxCompletionTokens: 50, ContextTokens: 4096},
		fake: aitest.New(aitest.Script{Usage: &ai.Usage{PromptTokens: 250, CompletionTokens: 50, TotalTokens: 300}}),
		tenants: map[string]tenancyevents.TenantConfig{
			"acme":   {TokenBudget: tenancyevents.TokenBudget{Daily: 650}},
			"globex": {TokenBudget: tenancyevents.TokenBudget{Daily: 650}}}})
	for i := 0; i < 2; i++ {
		if r := e.chatJSON("acme", sid(), "hi"); r.status != 200 {
			t.Fatal(r.raw)
		}
	}
	e.sync()
	ids, cursor := listIDs(t, e, "acme", "", 1)
	if len(ids) != 1 || cursor == "" {
		t.Fatalf("acme: %v %q", ids, cursor)
	}
	if ids, _ := listIDs(t, e, "globex", "", 100); len(ids) != 0 {
		t.Fatalf("globex lists %v", ids)
	}
	if ids, next := listIDs(t, e, "globex", cursor, 100); len(ids) != 0 || next != "" {
		t.Fatalf("globex pages into acme's sessions with acme's cursor: %v %q", ids, next)
	}
	// acme has used 600 of 650; globex none of its own.
	wantProblem(t, e.chatJSON("acme", sid(), "hi"), 429, "budget_exceeded")
	if r := e.chatJSON("globex", sid(), "hi"); r.status != 200 {
		t.Fatalf("globex was charged acme's tokens: %d %s", r.status, r.raw)
	}
}

// Read-your-writes of the budget: a turn's tokens count for the next turn on this replica as soon
// as the turn is answered, while the token ledger read model has not applied it yet.
func TestBudgetCountsATurnBeforeTheLedgerHasIt(t *testing.T) {
	t.Parallel()
	st := &subscribeLog{Store: eventstoretest.NewMemory(), hold: make(chan struct{})}
	e := newEnv(t, opts{store: st, config: conversation.Config{MaxCompletionTokens: 50, ContextTokens: 4096},
		fake:    aitest.New(aitest.Script{Usage: &ai.Usage{PromptTokens: 450, CompletionTokens: 50, TotalTokens: 500}}),
		tenants: map[string]tenancyevents.TenantConfig{"acme": {TokenBudget: tenancyevents.TokenBudget{Daily: 520}}}})
	if r := e.chatJSON("acme", sid(), "hi"); r.status != 200 {
		t.Fatal(r.raw)
	}
	// The forwarder is held: the read models have not seen the turn.
	if ids, _ := listIDs(t, e, "acme", "", 10); len(ids) != 0 {
		t.Fatalf("the read model saw the turn: %v", ids)
	}
	wantProblem(t, e.chatJSON("acme", sid(), "hi"), 429, "budget_exceeded")
	close(st.hold)
	e.sync()
	// Counted once: by the read model now, not also by this replica's booking.
	wantProblem(t, e.chatJSON("acme", sid(), "hi"), 429, "budget_exceeded")
	if ids, _ := listIDs(t, e, "acme", "", 10); len(ids) != 1 {
		t.Fatalf("listed %v", ids)
	}
}

// A read model file that is not a database any more is moved aside and rebuilt from the store.
func TestACorruptSessionListIsRebuilt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := eventstoretest.NewMemory()
	e := newEnv(t, opts{store: st, dir: dir})
	s := sid()
	if r := e.chatJSON("acme", s, "keep me"); r.status != 200 {
		t.Fatal(r.raw)
	}
	e.sync()
	e.cancel()
	for _, name := range []string{"conversation.sessions.db", "conversation.token-ledger.db"} {
		if err := os.WriteFile(filepath.Join(dir, "readmodels", name), []byte(strings.Repeat("not bbolt ", 1000)), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	e2 := newEnv(t, opts{store: st, dir: dir})
	e2.sync()
	if ids, _ := listIDs(t, e2, "acme", "", 10); len(ids) != 1 || ids[0] != s {
		t.Fatalf("after the rebuild: %v", ids)
	}
	aside, _ := filepath.Glob(filepath.Join(dir, "readmodels", "conversation.sessions.db.corrupt-*"))
	if len(aside) != 1 {
		t.Fatalf("the corrupt file was not moved aside: %v", aside)
	}
}

// Two replicas on one store: a start never closes a turn that another replica is streaming; the
// replica whose earlier run left a turn open closes it when it starts again.
func TestAReplicaLeavesAnotherReplicasTurnOpen(t *testing.T) {
	t.Parallel()
	st := eventstoretest.NewMemory()
	gate := make(chan struct{})
	dirA := t.TempDir()
	a := newEnv(t, opts{store: st, dir: dirA, instance: "replica-a", fake: aitest.New(aitest.Script{Gate: gate})})
	s := sid()
	done := make(chan resp, 1)
	go func() { done <- a.chatJSON("acme", s, "long answer") }()
	eventually(t, "the turn is open in the store", func() bool { return types(a.streamEvents("acme", s)) == "SessionStarted,UserMessageAdded" })

	b := newEnv(t, opts{store: st, instance: "replica-b"})
	b.sync()
	if n, err := b.mod.CloseInterrupted(context.Background()); err != nil || n != 0 {
		t.Fatalf("replica b closed %d of replica a's turns (err %v)", n, err)
	}
	wantProblem(t, b.chatJSON("acme", s, "me too"), 409, "turn_in_progress")
	close(gate)
	if r := <-done; r.status != 200 {
		t.Fatalf("replica a's turn: %d %s", r.status, r.raw)
	}
	if got := types(a.streamEvents("acme", s)); got != "SessionStarted,UserMessageAdded,AssistantMessageCompleted" {
		t.Fatalf("events %s", got)
	}

	// Replica a is killed mid-turn (its turn stays open), and starts again on its data folder.
	hung := make(chan struct{})
	defer close(hung)
	a.fake.Push(aitest.Script{Gate: hung})
	go a.chatJSON("acme", s, "cut short")
	eventually(t, "the second turn is open", func() bool {
		return strings.HasSuffix(types(a.streamEvents("acme", s)), "AssistantMessageCompleted,UserMessageAdded")
	})
	a.cancel()
	b.sync()
	if n, _ := b.mod.CloseInterrupted(context.Background()); n != 0 {
		t.Fatalf("replica b closed replica a's recent turn")
	}
	a2 := newEnv(t, opts{store: st, dir: dirA, instance: "replica-a"})
	a2.sync()
	if n, err := a2.mod.CloseInterrupted(context.Background()); err != nil || n != 1 {
		t.Fatalf("replica a's restart closed %d (err %v), want its own earlier run's turn", n, err)
	}
}

// Retention runs once per deployment: two replicas on one store and one NATS JetStream both ask
// for the sweep of the same interval; one request is recorded, one replica sweeps, the idle
// session expires once.
func TestIntegrationRetentionRunsOncePerDeploymentOnNATS(t *testing.T) {
	t.Parallel()
	url, prefix := bustest.NATS(t, "conv")
	cfg := bus.Config{Transport: url, Prefix: prefix, AckWait: 5 * time.Second, RetryInitial: time.Millisecond,
		RetryMax: 10 * time.Millisecond, MaxRetries: 2, CheckpointInterval: 50 * time.Millisecond}
	st := eventstoretest.NewMemory()
	tenants := map[string]tenancyevents.TenantConfig{"acme": {SessionRetentionDays: 7}}
	idle := sid()
	sets := []*metrics.Set{metrics.NewSet(), metrics.NewSet()}
	var rs []*env
	for i := range 2 {
		rs = append(rs, newEnv(t, opts{store: st, tenants: tenants, busConfig: &cfg, metrics: sets[i], instance: "replica-" + strconv.Itoa(i)}))
	}
	if r := rs[0].chatJSON("acme", idle, "old news"); r.status != 200 {
		t.Fatal(r.raw)
	}
	for _, e := range rs {
		e.sync()
		e.clock.Add(8 * 24 * time.Hour)
	}
	slot := rs[0].clock.Now()
	var wg sync.WaitGroup
	recorded := make([]int, 2)
	for i, e := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := e.mod.RequestSweeps(context.Background(), slot)
			if err != nil {
				t.Error(err)
			}
			recorded[i] = n
		}()
	}
	wg.Wait()
	if recorded[0]+recorded[1] != 1 {
		t.Fatalf("sweep requests recorded: %v, want one across the replicas", recorded)
	}
	eventually(t, "the idle session expired", func() bool { return readable(rs[0].streamEvents("acme", idle)) == "SessionExpired" })
	for _, e := range rs {
		e.sync()
	}
	sweeps := 0
	for _, set := range sets {
		sweeps += int(set.GetOrCreateCounter(`crispy_chat_retention_sweeps_total`).Get())
	}
	if sweeps != 1 {
		t.Fatalf("%d sweeps across the replicas, want 1", sweeps)
	}
	evs, err := st.ReadTenant(context.Background(), tenant.MustParse("acme"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	requests := 0
	for _, ev := range evs {
		if ev.Type == events.TypeRetentionSweepRequested {
			requests++
		}
	}
	if requests != 1 {
		t.Fatalf("%d sweep requests in the store", requests)
	}
}

// On one replica (GoChannel) the retention processor sweeps what RequestSweeps asked for; a tenant
// with nothing idle gets no request.
func TestRetentionRequestIsSweptByTheProcessor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{tenants: map[string]tenancyevents.TenantConfig{"acme": {SessionRetentionDays: 7}}})
	idle, kept := sid(), sid()
	e.chatJSON("acme", idle, "old news")
	e.chatJSON("globex", kept, "globex keeps 30 days")
	e.sync()
	e.clock.Add(8 * 24 * time.Hour)
	n, err := e.mod.RequestSweeps(context.Background(), e.clock.Now())
	if err != nil || n != 1 {
		t.Fatalf("recorded %d requests (err %v), want acme's only", n, err)
	}
	if n, _ := e.mod.RequestSweeps(context.Background(), e.clock.Now()); n != 0 {
		t.Fatalf("the same interval was requested again: %d", n)
	}
	eventually(t, "acme's idle session expired", func() bool { return readable(e.streamEvents("acme", idle)) == "SessionExpired" })
	if e.history("globex", kept).status != 200 {
		t.Fatal("globex's session expired")
	}
}
