package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// TurnInput is one user message to answer.
type TurnInput struct {
	Tenant     tenant.ID
	SessionID  string
	Message    string
	ModelID    string
	UserID     string
	ToolName   string
	ToolParams json.RawMessage
	RAG        *bool // nil: the tenant's features.rag
	Source     string
	// Context, when set (the OpenAI-compatible endpoint), replaces the session history as the
	// conversation so far: the client sent it.
	Context  []ai.Message
	Received time.Time
	// Stateless (a /v1/chat/completions call without x-session-id): no session; nothing is recorded
	// but a CompletionRecorded usage event, and the turn cannot be resumed.
	Stateless bool
	// MaxTokens is the completion the client asked for at most (0: the server's
	// MaxCompletionTokens). What is reserved and sent upstream may be less: what the tenant's
	// tightest token ceiling has left.
	MaxTokens int
}

// SSE payloads (SPEC §2).
type (
	TokenData struct {
		Token string `json:"token"`
	}
	ToolData struct {
		Name   string          `json:"name"`
		Result json.RawMessage `json:"result"`
	}
	CitationData struct {
		DocID   string  `json:"docId"`
		ChunkID string  `json:"chunkId"`
		Title   string  `json:"title"`
		Source  string  `json:"source"`
		URL     string  `json:"url"`
		Score   float64 `json:"score"`
	}
	UsageData struct {
		PromptTokens     int `json:"promptTokens"`
		CompletionTokens int `json:"completionTokens"`
		TotalTokens      int `json:"totalTokens"`
	}
	DoneData struct {
		Usage     UsageData `json:"usage"`
		Model     string    `json:"model"`
		RequestID string    `json:"requestId"`
	}
	ErrorData struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
)

// Outcome is how a turn ended.
type Outcome struct {
	Content   string
	Model     string
	Usage     UsageData
	Citations []CitationData
	Err       *apperr.Error // nil when the answer completed
}

const maxToolResultChars = 8000

// Start validates and prepares a turn, records the user's message, and starts the model call in
// the background. Errors before the model call (validation, model not allowed, tool failure, budget)
// are returned; the turn's own outcome arrives through the returned Turn.
func (s *Service) Start(ctx context.Context, in TurnInput) (*Turn, error) {
	if in.Received.IsZero() {
		in.Received = s.Now()
	}
	if in.Stateless {
		in.SessionID = ""
	} else if !domain.ValidSessionID(in.SessionID) {
		field := "body.sessionId"
		if in.Source == "openai" {
			field = "header.x-session-id"
		}
		return nil, apperr.Invalid("invalid_session_id", field, domain.SessionIDRule)
	}
	if n := len([]rune(in.Message)); n == 0 || n > 10000 {
		return nil, apperr.Invalid("invalid_message", "body.message", "message must be 1 to 10000 characters")
	}
	cfg, err := s.config(ctx, in.Tenant)
	if err != nil {
		return nil, err
	}
	models, err := domain.SelectModels(domain.ModelChoice{Requested: in.ModelID, Override: s.Settings.OverrideModel,
		TenantDefault: cfg.Models.Chat, ServerDefault: s.Settings.DefaultModel, Fallbacks: cfg.Models.Fallbacks, Allowed: cfg.Models.Allowed,
		Skipped: func(model, from string) {
			s.Log.WarnContext(ctx, "model skipped: not in the tenant's models.allowed", "tenant", in.Tenant.String(), "model", model, "from", from)
		}})
	if err != nil {
		return nil, err
	}
	if in.ModelID != "" && !s.Router.Has(models[0].Provider) {
		return nil, apperr.Invalid("model_unavailable", "body.modelId", fmt.Sprintf("provider %q is not configured on this server (configured: %s)",
			models[0].Provider, strings.Join(s.Router.Providers(), ", ")))
	}
	turnID := newID()
	// The turn holds its session from here until its outcome is recorded: a second turn of the
	// session is refused (409 turn_in_progress) rather than interleaved with this one.
	tctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	turn := newTurn(turnID, in.SessionID, in.Tenant, s.Settings.ResumeWindow, cancel)
	key := cacheKey(in.Tenant, in.SessionID)
	if in.Stateless {
		key = cacheKey(in.Tenant, "call-"+turnID) // nothing to serialise with; shutdown still finds it
	}
	if err := s.Running.acquire(key, turn); err != nil {
		cancel(nil)
		return nil, err
	}
	turn.onEnd = func() { s.Running.release(key, turn) }
	started := false
	defer func() {
		if !started {
			cancel(nil)
			turn.abandon()
			s.Running.release(key, turn)
		}
	}()
	// A turn of the session still open in the store and not left behind by a crash runs elsewhere
	// (another replica): refuse now, before a tool runs or the model starts.
	sess := &domain.Session{}
	if !in.Stateless {
		if sess, err = s.load(ctx, in.Tenant, in.SessionID); err != nil {
			return nil, err
		}
		if sess.Live() && !ownedBy(sess, in.UserID) {
			return nil, errSessionNotFound() // another user's session: as if it did not exist
		}
		turn.Owner = in.UserID
		if sess.Live() {
			turn.Owner = sess.UserID
		}
		if _, err := s.closeInterrupted(sess, turnID); err != nil {
			return nil, err
		}
	}
	var pre []Event // events the client sees before the tokens
	// Tool first: its result is part of the prompt.
	var toolResult string
	var toolCall *events.ToolCall
	if in.ToolName != "" {
		if s.Tools == nil {
			return nil, apperr.New(apperr.KindUnavailable, "tools_unavailable", "tools are not available on this server")
		}
		// A turn the budget cannot take must not run its tool first: check with the least the turn
		// will need (the message and the answer); the full reservation follows once the prompt is
		// assembled.
		if _, err := s.reserveCompletion(ctx, in.Tenant, turnID, int64(domain.EstimateTokens(in.Message)), s.wantCompletion(in, cfg, models), cfg, models); err != nil {
			return nil, err
		}
		s.Ledger.Release(in.Tenant.String(), turnID)
		params := in.ToolParams
		if len(params) == 0 {
			params = json.RawMessage(`{}`)
		}
		t0 := time.Now()
		res, err := s.Tools.Execute(ctx, in.Tenant, in.ToolName, params, in.UserID)
		if err != nil {
			return nil, err
		}
		toolCall = &events.ToolCall{Name: in.ToolName, Succeeded: true, DurationMs: ms(time.Since(t0))}
		toolResult = string(res)
		if len(toolResult) > maxToolResultChars {
			toolResult = strings.ToValidUTF8(toolResult[:maxToolResultChars], "")
		}
		pre = append(pre, Event{Name: "tool", Data: ToolData{Name: in.ToolName, Result: res}})
	}
	// A request may turn RAG off, or on where the tenant leaves features.rag unset; a tenant's
	// features.rag: false binds (the turn runs without retrieval, and records rag: false).
	rag := cfg.Feature("rag")
	if v, set := cfg.Features["rag"]; in.RAG != nil && (!*in.RAG || !set || v) {
		rag = *in.RAG
	}
	var passages []domain.Passage
	if rag && s.Retriever != nil {
		passages, err = s.Retriever.Retrieve(ctx, in.Tenant, in.Message, s.Settings.RAGTopK)
		if err != nil {
			if _, ok := apperr.As(err); ok {
				return nil, err
			}
			return nil, fmt.Errorf("retrieve for tenant %s: %w", in.Tenant, err)
		}
	}
	var citations []CitationData
	var cites []events.Citation
	for i, p := range passages {
		c := CitationData{DocID: p.DocID, ChunkID: p.ChunkID, Title: p.Title, Source: p.Source, URL: p.URL, Score: p.Score}
		citations = append(citations, c)
		cites = append(cites, events.Citation{Index: i + 1, DocID: p.DocID, ChunkID: p.ChunkID, Title: p.Title, Source: p.Source, URL: p.URL, Score: p.Score})
		pre = append(pre, Event{Name: "citation", Data: c})
	}
	var history []domain.Message
	if in.Context != nil {
		for _, m := range in.Context {
			history = append(history, domain.Message{Role: m.Role, Content: m.Content})
		}
	} else if sess.Live() {
		history = sess.Messages
	}
	asm := domain.Assemble(domain.Prompt{System: s.Settings.SystemPrompt, Passages: passages, RAGRequested: rag, ToolName: in.ToolName,
		ToolResult: toolResult, History: history, Message: in.Message, ContextTokens: s.Settings.ContextTokens,
		MaxCompletion: s.Settings.MaxCompletion, MaxMessages: cfg.MaxMessages()})
	// Budget: reserve the worst case before anything is recorded or called: the prompt and the
	// completion asked for, capped at what the tightest ceiling leaves (which is what the model is
	// then told it may write).
	granted, err := s.reserveCompletion(ctx, in.Tenant, turnID, int64(asm.PromptTokens), s.wantCompletion(in, cfg, models), cfg, models)
	if err != nil {
		return nil, err
	}
	requested := in.ModelID
	turn.Model = models[0].String()
	for _, e := range pre {
		turn.push(e.Name, e.Data)
	}
	// The user's message is recorded while the model starts, so its fsync overlaps the model's time
	// to first token; a model that finishes within UserRecordDelay has its outcome recorded with the
	// message in one append (one fsync). The outcome is never recorded before the message, and a
	// message that cannot be recorded ends the turn with an error.
	userEvents := func(cur *domain.Session) ([]eventstore.EventData, error) {
		// Decided again on every optimistic-concurrency retry: a turn that appeared meanwhile in
		// the store (another replica's) refuses this one; one a crash left open is closed first.
		out, err := s.closeInterrupted(cur, turnID)
		if err != nil {
			return nil, err
		}
		if !cur.Live() {
			ev, err := eventstore.NewEventData(events.TypeSessionStarted, events.SessionStarted{SessionID: in.SessionID, Tenant: in.Tenant.String(),
				UserID: in.UserID, Title: domain.TitleOf(in.Message)})
			if err != nil {
				return nil, err
			}
			out = append(out, ev)
		}
		ev, err := eventstore.NewEventData(events.TypeUserMessageAdded, events.UserMessageAdded{SessionID: in.SessionID, TurnID: turnID,
			Content: in.Message, UserID: in.UserID, RequestedModel: requested, ChosenModel: models[0].String(), ToolName: in.ToolName, RAG: rag, Source: in.Source,
			Instance: s.Instance, Run: s.Run})
		if err != nil {
			return nil, err
		}
		return append(out, ev), nil
	}
	var ur *userRecord // nil: stateless, no user message to record
	if !in.Stateless {
		ur = &userRecord{events: userEvents, done: make(chan struct{})}
		rctx := context.WithoutCancel(ctx)
		time.AfterFunc(s.Settings.UserRecordDelay, func() {
			if !ur.claim(claimedEarly) {
				return // the outcome came first: dispatch records both together
			}
			_, _, ur.err = s.update(rctx, in.Tenant, in.SessionID, userEvents)
			if ur.err != nil {
				cancel(errNotRecorded)
			}
			close(ur.done)
		})
		s.Hub.put(turn)
	}
	req := ai.Request{Messages: asm.Messages, Documents: asm.Documents, MaxTokens: int(granted)}
	started = true
	go s.dispatch(tctx, cancel, turn, in, models, req, asm.PromptTokens, citations, cites, toolCall, ur)
	return turn, nil
}

// userRecord is the user's message of a turn on its way to the store: claimed either early (its own
// append, after UserRecordDelay) or late (appended together with the outcome).
type userRecord struct {
	mu      sync.Mutex
	claimed int
	events  func(*domain.Session) ([]eventstore.EventData, error)
	done    chan struct{} // closed after an early append; err is then set
	err     error
}

const (
	claimedEarly = 1
	claimedLate  = 2
)

func (u *userRecord) claim(how int) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.claimed != 0 {
		return false
	}
	u.claimed = how
	return true
}

// errNotRecorded cancels a turn whose user message could not be recorded.
var errNotRecorded = errors.New("the user's message could not be recorded")

func (s *Service) dispatch(ctx context.Context, cancel context.CancelCauseFunc, turn *Turn, in TurnInput, models []ai.ModelID, req ai.Request,
	promptEstimate int, citations []CitationData, cites []events.Citation, tool *events.ToolCall, ur *userRecord) {
	defer cancel(nil)
	defer s.Hub.finished(turn)
	tctx, stop := context.WithTimeout(ctx, s.Settings.TurnTimeout)
	defer stop()
	var streamed strings.Builder
	ans, err := s.Router.Stream(tctx, models, req, func(d string) error {
		streamed.WriteString(d)
		turn.push("token", TokenData{Token: d})
		return nil
	})
	end := time.Now()
	rid := request.From(ctx).ID
	var late func(*domain.Session) ([]eventstore.EventData, error)
	if ur != nil && ur.claim(claimedLate) {
		late = ur.events // not appended yet: it goes with the outcome, in one append
	} else if ur != nil {
		<-ur.done
	}
	if ur != nil && ur.err != nil {
		aerr := ur.err
		s.Ledger.Release(in.Tenant.String(), turn.ID)
		s.Log.ErrorContext(ctx, "record user message", "error", aerr, "session", in.SessionID, "tenant", in.Tenant.String())
		s.Metrics.turn(models[0].String(), "not_recorded")
		e, ok := apperr.As(aerr)
		if !ok {
			e = apperr.Wrap(aerr, apperr.KindInternal, "record_failed", "the message could not be saved; quote the request id")
		}
		s.fail(turn, in, "", e, nil)
		return
	}
	fallbacks := s.fallbacksOf(ans, err)
	// Record with a context of its own: the turn's may be cancelled, the outcome must still be kept.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer rcancel()
	latency := ms(end.Sub(in.Received))
	if err == nil {
		u := usageOf(ans.Usage, promptEstimate, ans.Content)
		ttft := 0.0
		if !ans.FirstToken.IsZero() {
			ttft = ms(ans.FirstToken.Sub(in.Received))
			s.Metrics.ttft(ans.Model.String(), ans.FirstToken.Sub(in.Received))
		}
		ev := events.AssistantMessageCompleted{SessionID: in.SessionID, TurnID: turn.ID, Content: ans.Content, Model: ans.Model.String(), Usage: u,
			LatencyMs: latency, TTFTMs: ttft, Citations: cites, Fallbacks: fallbacks, Tool: tool, UserID: in.UserID, Source: in.Source,
			Offline: ans.Model == ai.Offline}
		if rerr := s.recordOutcome(rctx, in, turn.ID, events.TypeAssistantMessageCompleted, ev, int64(u.TotalTokens), late); rerr != nil {
			s.Log.ErrorContext(rctx, "record completed turn", "error", rerr, "session", in.SessionID)
			s.Running.lost(turn.ID)
			e, ok := apperr.As(rerr) // a classified refusal (503 storage_unavailable on a full disk) keeps its status
			if !ok {
				e = apperr.Wrap(rerr, apperr.KindInternal, "record_failed", "the answer could not be saved; quote the request id")
			}
			s.fail(turn, in, "", e, nil)
			return
		}
		s.Metrics.turn(ans.Model.String(), "completed")
		s.Metrics.tokens(ans.Model.String(), u.PromptTokens, u.CompletionTokens)
		ud := UsageData{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
		turn.finish("done", DoneData{Usage: ud, Model: ans.Model.String(), RequestID: rid},
			Outcome{Content: ans.Content, Model: ans.Model.String(), Usage: ud, Citations: citations})
		return
	}
	// Failure: classify, record, tell the client.
	model := ""
	emitted := false
	var fe *ai.FailedError
	if errors.As(err, &fe) {
		emitted = fe.Emitted
		if emitted {
			model = fe.Model.String()
		}
	}
	code, msg, kind := events.CodeAllModelsFailed, "no model could answer; the message is saved in the history", apperr.KindBadGateway
	if len(fallbacks) > 0 || fe != nil {
		var tried []string
		for _, f := range fallbacks {
			tried = append(tried, f.Model+": "+f.Reason)
		}
		if fe != nil && !fe.Emitted && len(tried) < len(models) {
			tried = append(tried, fe.Model.String()+": "+ai.ReasonOf(fe.Err))
		}
		msg = "no model could answer (" + strings.Join(tried, ", ") + "); the message is saved in the history"
	}
	cancelled := false
	switch {
	case errors.Is(context.Cause(ctx), errClientGone):
		code, msg, cancelled = events.CodeCancelled, "the client disconnected and did not resume; the partial answer was discarded", true
	case errors.Is(context.Cause(ctx), errShuttingDown):
		code, msg, kind, cancelled = events.CodeShuttingDown,
			"the server shut down before the answer was complete; the partial answer was discarded and the message is saved in the history", apperr.KindUnavailable, true
	case errors.Is(tctx.Err(), context.DeadlineExceeded):
		code, msg, kind = events.CodeTimeout, "the model did not finish in time", apperr.KindTimeout
	case ai.ReasonOf(err) == ai.ReasonTruncated:
		code, msg = events.CodeUpstreamTruncated, "the model's answer ended before it was complete; the partial answer was discarded"
		if len(fallbacks) > 0 && !emitted {
			msg = "no model could answer (the last one's answer ended before it was complete); the message is saved in the history"
		}
	case emitted:
		code, msg = events.CodeStreamFailed, "the model failed while answering; the partial answer was discarded"
	}
	partial := streamed.String()
	u := usageOf(ai.Usage{}, promptEstimate, partial)
	if !emitted {
		u = events.Usage{Estimated: true}
	}
	ev := events.AssistantMessageFailed{SessionID: in.SessionID, TurnID: turn.ID, Code: code, Message: msg, Cancelled: cancelled,
		PartialContentLength: len(partial), Model: model, Usage: u, LatencyMs: latency, Fallbacks: fallbacks, Tool: tool, UserID: in.UserID, Source: in.Source}
	if rerr := s.recordOutcome(rctx, in, turn.ID, events.TypeAssistantMessageFailed, ev, int64(u.TotalTokens), late); rerr != nil {
		s.Log.ErrorContext(rctx, "record failed turn", "error", rerr, "session", in.SessionID)
		s.Running.lost(turn.ID)
	}
	label := model
	if label == "" && len(models) > 0 {
		label = models[0].String()
	}
	s.Metrics.turn(label, code)
	s.Log.WarnContext(rctx, "chat turn failed", "code", code, "error", err, "session", in.SessionID, "tenant", in.Tenant.String())
	e := apperr.Wrap(err, kind, code, msg)
	if code == events.CodeShuttingDown {
		e.RetryAfterSec = 1
	}
	s.fail(turn, in, code, e, fallbacks)
}

func (s *Service) fail(turn *Turn, _ TurnInput, code string, e *apperr.Error, _ []events.FallbackAttempt) {
	if code == "" {
		code = e.Code
	}
	turn.finish("error", ErrorData{Code: code, Message: e.Message}, Outcome{Err: e})
}

// recordOutcome records a turn's outcome: in its session, or as a usage event for a stateless call.
func (s *Service) recordOutcome(ctx context.Context, in TurnInput, turnID, typ string, data any, tokens int64, user func(*domain.Session) ([]eventstore.EventData, error)) error {
	if in.Stateless {
		return s.recordCompletion(ctx, in, turnID, data, tokens)
	}
	return s.record(ctx, in, turnID, typ, data, tokens, user)
}

// record appends a turn's outcome, preceded by the user's message when user is not nil (retrying
// conflicts from fresh state), and settles the turn's budget reservation.
func (s *Service) record(ctx context.Context, in TurnInput, turnID, typ string, data any, tokens int64, user func(*domain.Session) ([]eventstore.EventData, error)) error {
	ev, err := eventstore.NewEventData(typ, data)
	if err != nil {
		return err
	}
	_, res, err := s.update(ctx, in.Tenant, in.SessionID, func(cur *domain.Session) ([]eventstore.EventData, error) {
		if user != nil {
			evs, err := user(cur)
			if err != nil {
				return nil, err
			}
			return append(evs, ev), nil
		}
		if cur.Live() {
			return []eventstore.EventData{ev}, nil
		}
		// Deleted or expired while the model answered: the answer must not outlive the deletion,
		// so only the fact and the tokens spent are recorded.
		gone := events.AssistantMessageFailed{SessionID: in.SessionID, TurnID: turnID, Code: events.CodeSessionGone,
			Message: "the session was deleted or expired during the turn", UserID: in.UserID, Source: in.Source}
		switch d := data.(type) {
		case events.AssistantMessageCompleted:
			gone.PartialContentLength, gone.Usage, gone.Model, gone.LatencyMs = len(d.Content), d.Usage, d.Model, d.LatencyMs
		case events.AssistantMessageFailed:
			gone.PartialContentLength, gone.Usage, gone.Model, gone.LatencyMs = d.PartialContentLength, d.Usage, d.Model, d.LatencyMs
		}
		g, err := eventstore.NewEventData(events.TypeAssistantMessageFailed, gone)
		if err != nil {
			return nil, err
		}
		return []eventstore.EventData{g}, nil
	})
	if err != nil {
		s.Ledger.Release(in.Tenant.String(), turnID)
		return err
	}
	s.Ledger.Settle(in.Tenant.String(), turnID, tokens, res.Position)
	return nil
}

// reserve books up to tokens of the tenant's budget for turnID: 429 budget_exceeded when they do
// not fit, 503 catching_up while the token ledger read model catches up with the store.
func (s *Service) reserve(ctx context.Context, t tenant.ID, turnID string, tokens, daily, monthly int64) error {
	now := s.Now()
	r, err := s.Ledger.Reserve(t.String(), turnID, tokens, daily, monthly, now, func() (domain.Usage, error) {
		if s.Usage == nil {
			return domain.Usage{}, nil
		}
		return s.Usage.Used(ctx, t, now)
	})
	if err != nil {
		if _, ok := apperr.As(err); ok {
			return err
		}
		return fmt.Errorf("token budget of %s: %w", t, err)
	}
	if r != nil {
		return budgetExceeded(r, tokens)
	}
	return nil
}

// minCompletion is the least completion a turn is worth running for: with less left under a
// ceiling, the turn is refused rather than cut to a few words.
const minCompletion = 16

// wantCompletion is the completion a turn asks for: the client's max_tokens, else the default of
// the model it goes to.
func (s *Service) wantCompletion(in TurnInput, cfg tenancyevents.TenantConfig, models []ai.ModelID) int64 {
	if in.MaxTokens > 0 {
		return int64(in.MaxTokens)
	}
	return s.defaultCompletion(cfg, models)
}

// defaultCompletion is the completion reserved for (and sent as max_tokens with) a call that names
// no max_tokens: the first model's default in the tenant's models.maxTokens, else in the server's
// (CRISPY_MODEL_MAX_TOKENS), else MaxCompletionTokens (1024). A small model's calls then do not
// reserve 1,024 tokens of a budget they never write, and a long-form model's are not cut at it.
func (s *Service) defaultCompletion(cfg tenancyevents.TenantConfig, models []ai.ModelID) int64 {
	if len(models) > 0 {
		m := models[0].String()
		if n := cfg.Models.MaxTokens[m]; n > 0 {
			return int64(n)
		}
		if n := s.Settings.ModelMaxTokens[m]; n > 0 {
			return int64(n)
		}
	}
	return int64(s.Settings.MaxCompletion)
}

// reserveCompletion books prompt tokens and up to want completion tokens of the tenant's token
// ceilings (daily, monthly, per minute) and of the calling API key's own (tokens and USD) for
// turnID, and returns the completion tokens granted: the max_tokens to send upstream. models are
// the models the call may reach (its USD reservation is priced at the dearest; nil: the tenant's
// and the server's configured models). 429 budget_exceeded when not even min(want, minCompletion)
// fit; 503 catching_up while the token ledger read model catches up with the store.
func (s *Service) reserveCompletion(ctx context.Context, t tenant.ID, turnID string, prompt, want int64, cfg tenancyevents.TenantConfig, models []ai.ModelID) (int64, error) {
	now := s.Now()
	// The calling API key's own budgets first: the tenant's then books what they granted.
	links, err := s.reserveKey(ctx, t, turnID, prompt, &want, cfg, models, now)
	if err != nil {
		return 0, err
	}
	granted, err := s.reserveTenant(ctx, t, turnID, prompt, want, cfg, now)
	if err != nil {
		for _, l := range links {
			s.Ledger.Release(l.scope, turnID)
		}
		return 0, err
	}
	for _, l := range links {
		s.Ledger.Link(turnID, l.scope, l.cost)
	}
	return granted, nil
}

// keyLink is a ledger scope of an API key's budget that a call was booked under.
type keyLink struct {
	scope string
	cost  bool // counted in nano-USD
}

// keyUsage is what the token ledger read model tells of one API key: its tokens and its cost (in
// nano-USD) today and this month.
type keyUsage interface {
	UsedByKey(ctx context.Context, t tenant.ID, key string, now time.Time) (domain.Usage, error)
	CostByKey(ctx context.Context, t tenant.ID, key string, now time.Time) (domain.Usage, error)
}

// reserveKey books prompt and up to *want tokens of the request's API key's own ceilings (admin
// API keys' budget.dailyTokens/monthlyTokens and limits.tokensPerMinute, then budget.dailyUsd/
// monthlyUsd priced at the dearest of models) and lowers *want to what they granted. It returns
// the scopes it booked under (none when the key has no ceiling).
func (s *Service) reserveKey(ctx context.Context, t tenant.ID, turnID string, prompt int64, want *int64, cfg tenancyevents.TenantConfig,
	models []ai.ModelID, now time.Time) ([]keyLink, error) {
	key := request.From(ctx).Actor
	if s.KeyBudget == nil || !strings.HasPrefix(key, "key:") {
		return nil, nil
	}
	kc := s.KeyBudget(t, key)
	ku, _ := s.Usage.(keyUsage)
	var links []keyLink
	fail := func(err error) ([]keyLink, error) {
		for _, l := range links {
			s.Ledger.Release(l.scope, turnID)
		}
		return nil, err
	}
	if kc.Tokens != (domain.Ceilings{}) {
		scope := domain.KeyScope(t.String(), key)
		least := min(*want, minCompletion)
		c, perMinute := s.splitWindow(kc.Tokens)
		granted, r, err := s.Ledger.ReserveUpTo(scope, turnID, prompt, *want, least, c, now, func() (domain.Usage, error) {
			if ku == nil {
				return domain.Usage{}, nil
			}
			return ku.UsedByKey(ctx, t, key, now)
		})
		if err != nil {
			return fail(usageErr(err, t, key))
		}
		if r == nil && perMinute > 0 {
			if granted, r, err = s.reserveWindow(ctx, t, windowKey(key), scope, turnID, prompt, granted, least, perMinute, now); err != nil || r != nil {
				s.Ledger.Release(scope, turnID)
			}
			if err != nil {
				return fail(usageErr(err, t, key))
			}
		}
		if r != nil {
			e := apperr.New(apperr.KindRateLimited, "budget_exceeded",
				fmt.Sprintf("the %s token budget (%d) of API key %s would be exceeded (%d used or reserved, this call needs up to %d)",
					r.Period, r.Limit, key, r.Used, prompt+least))
			e.RetryAfterSec = int(r.RetryAfter.Seconds()) + 1
			return fail(e)
		}
		*want = granted
		links = append(links, keyLink{scope: scope})
	}
	if kc.DailyUSD > 0 || kc.MonthlyUSD > 0 {
		scope := domain.KeyCostScope(t.String(), key)
		perPrompt, perCompletion, unpriced := s.dearest(cfg, models)
		if len(unpriced) > 0 {
			// Its calls would count nothing against the budget: a USD budget that a model can
			// spend past unseen is no budget, so the call is refused until the model is priced.
			return fail(apperr.New(apperr.KindForbidden, "model_unpriced",
				fmt.Sprintf("API key %s has a USD budget, and %s, which this call may reach, has no price in the price table: its cost could not be counted. "+
					"Price it in the CRISPY_PRICES file (0 for a free model), or call a priced model", key, strings.Join(unpriced, ", "))))
		}
		least := min(*want, minCompletion)
		c := domain.Ceilings{Daily: nanoUSD(kc.DailyUSD), Monthly: nanoUSD(kc.MonthlyUSD)}
		granted, r, err := s.Ledger.ReserveSpend(scope, turnID, prompt*perPrompt, perCompletion, *want, least, c, now, func() (domain.Usage, error) {
			if ku == nil {
				return domain.Usage{}, nil
			}
			return ku.CostByKey(ctx, t, key, now)
		})
		if err != nil {
			return fail(usageErr(err, t, key))
		}
		if r != nil {
			e := apperr.New(apperr.KindRateLimited, "budget_exceeded",
				fmt.Sprintf("the %s USD budget ($%.6g) of API key %s would be exceeded ($%.6g spent or reserved, this call may cost up to $%.6g)",
					r.Period, float64(r.Limit)/1e9, key, float64(r.Used)/1e9, float64(prompt*perPrompt+least*perCompletion)/1e9))
			e.RetryAfterSec = int(r.RetryAfter.Seconds()) + 1
			return fail(e)
		}
		*want = granted
		links = append(links, keyLink{scope: scope, cost: true})
	}
	return links, nil
}

func usageErr(err error, t tenant.ID, key string) error {
	if _, ok := apperr.As(err); ok {
		return err
	}
	return fmt.Errorf("budget of %s %s: %w", t, key, err)
}

// nanoUSD is usd in nano-dollars, the unit the ledger books USD budgets in.
func nanoUSD(usd float64) int64 { return int64(math.Round(usd * 1e9)) }

// dearest is the most a prompt token and a completion token may cost (nano-USD, rounded up) among
// models, or, with none given, the models the tenant and the server configure: a call's USD
// reservation is priced at the dearest model it may be answered by (fallbacks included), so a
// fallback cannot take a key past its budget. unpriced names those the price table does not know.
func (s *Service) dearest(cfg tenancyevents.TenantConfig, models []ai.ModelID) (perPrompt, perCompletion int64, unpriced []string) {
	if s.Pricer == nil {
		return 0, 0, nil
	}
	names := make([]string, 0, len(models)+4)
	for _, m := range models {
		names = append(names, m.String())
	}
	if len(names) == 0 {
		names = append(append(names, cfg.Models.Chat, cfg.Models.Embeddings, s.Settings.OverrideModel, s.Settings.DefaultModel), cfg.Models.Fallbacks...)
	}
	const m = 1_000_000 // price per million tokens, in USD = nano-USD per token / 1e3
	priced := true
	per := func(name string, t domain.SpendTokens) int64 {
		usd, ok := s.Pricer.Cost(name, t)
		priced = priced && ok
		return int64(math.Ceil(usd * 1e3))
	}
	for _, n := range names {
		if n == "" {
			continue
		}
		priced = true
		perPrompt = max(perPrompt, per(n, domain.SpendTokens{Prompt: m}), per(n, domain.SpendTokens{Prompt: m, Cached: m}))
		perCompletion = max(perCompletion, per(n, domain.SpendTokens{Completion: m}), per(n, domain.SpendTokens{Completion: m, Reasoning: m}))
		if !priced && !slices.Contains(unpriced, n) {
			unpriced = append(unpriced, n)
		}
	}
	return perPrompt, perCompletion, unpriced
}

// reserveTenant is the tenant's part of reserveCompletion.
func (s *Service) reserveTenant(ctx context.Context, t tenant.ID, turnID string, prompt, want int64, cfg tenancyevents.TenantConfig, now time.Time) (int64, error) {
	c, perMinute := s.splitWindow(domain.Ceilings{Daily: cfg.TokenBudget.Daily, Monthly: cfg.TokenBudget.Monthly, PerMinute: int64(cfg.RateLimit.TokensPerMinute)})
	granted, r, err := s.Ledger.ReserveUpTo(t.String(), turnID, prompt, want, min(want, minCompletion), c, now, func() (domain.Usage, error) {
		if s.Usage == nil {
			return domain.Usage{}, nil
		}
		return s.Usage.Used(ctx, t, now)
	})
	if err == nil && r == nil && perMinute > 0 {
		if granted, r, err = s.reserveWindow(ctx, t, windowTenant, t.String(), turnID, prompt, granted, min(want, minCompletion), perMinute, now); err != nil || r != nil {
			s.Ledger.Release(t.String(), turnID)
		}
	}
	if err != nil {
		if _, ok := apperr.As(err); ok {
			return 0, err
		}
		return 0, fmt.Errorf("token budget of %s: %w", t, err)
	}
	if r != nil {
		return 0, budgetExceeded(r, prompt+min(want, minCompletion))
	}
	return granted, nil
}

// splitWindow takes the per-minute ceiling out of c when a shared window books it (returned as
// perMinute; 0: c keeps it and the Ledger books it in this process).
func (s *Service) splitWindow(c domain.Ceilings) (domain.Ceilings, int64) {
	if s.Window == nil || c.PerMinute <= 0 {
		return c, 0
	}
	perMinute := c.PerMinute
	c.PerMinute = 0
	return c, perMinute
}

// hasCeiling reports whether the tenant or the calling API key has any ceiling (tokens daily,
// monthly or per minute; a key's USD): then every model call must be told how much it may write.
func (s *Service) hasCeiling(ctx context.Context, t tenant.ID, cfg tenancyevents.TenantConfig) bool {
	if cfg.TokenBudget.Daily > 0 || cfg.TokenBudget.Monthly > 0 || cfg.RateLimit.TokensPerMinute > 0 {
		return true
	}
	key := request.From(ctx).Actor
	if s.KeyBudget == nil || !strings.HasPrefix(key, "key:") {
		return false
	}
	kc := s.KeyBudget(t, key)
	return kc.Tokens != (domain.Ceilings{}) || kc.DailyUSD > 0 || kc.MonthlyUSD > 0
}

func usageOf(u ai.Usage, promptEstimate int, content string) events.Usage {
	if u.Reported {
		return events.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens,
			CachedTokens: u.CachedTokens, ReasoningTokens: u.ReasoningTokens}
	}
	c := 0
	if content != "" {
		c = domain.EstimateTokens(content)
	}
	return events.Usage{PromptTokens: promptEstimate, CompletionTokens: c, TotalTokens: promptEstimate + c, Estimated: true}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func newID() string {
	u, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return u.String()
}

// budgetExceeded is the 429 of a turn that needs up to tokens more than the budget has left.
func budgetExceeded(r *domain.Refusal, tokens int64) error {
	e := apperr.New(apperr.KindRateLimited, "budget_exceeded",
		fmt.Sprintf("the tenant's %s token budget (%d) would be exceeded (%d used or reserved, this turn needs up to %d)", r.Period, r.Limit, r.Used, tokens))
	e.RetryAfterSec = int(r.RetryAfter.Seconds()) + 1
	return e
}

// fallbacksOf is the models a routed call tried before the one that answered (or all it tried, when
// none did), as recorded in the outcome's event; each is counted in the fallback metric.
func (s *Service) fallbacksOf(ans ai.Answer, err error) []events.FallbackAttempt {
	attempts := ans.Attempts
	var fe *ai.FailedError
	if errors.As(err, &fe) {
		attempts = fe.Attempts
	}
	var fallbacks []events.FallbackAttempt
	for _, a := range attempts {
		fallbacks = append(fallbacks, events.FallbackAttempt{Model: a.Model.String(), Reason: a.Reason, Message: a.Message})
		s.Metrics.fallback(a.Model.String(), a.Reason)
	}
	return fallbacks
}
