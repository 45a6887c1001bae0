package sealing

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Policy says whether an event about to be appended is sealed, and under which key id. Modules
// supply them (conversation seals its sessions under "session/<id>"); the first Policy that answers
// ok wins. It sees the plaintext data, so a key id may depend on it. Events a Policy leaves out
// (deletion records, configuration) are stored as they are, so the audit can show who erased what
// and when.
type Policy func(stream tenant.Stream, e eventstore.EventData) (keyID string, ok bool)

// envelope is the JSON a sealed event's data becomes: still valid JSON, so every store adapter,
// hash and tool that reads raw events works on it unchanged. Plain holds the top-level fields the
// event type keeps readable (KeepPlain): ids, counts and usage that metrics, budgets and the audit
// need after the content is erased; C seals the rest.
type envelope struct {
	Sealed struct {
		K string `json:"k"`           // key id (the tenant is the event's)
		G []byte `json:"g,omitempty"` // the key's check value (absent in envelopes sealed before it)
		N []byte `json:"n"`           // nonce
		C []byte `json:"c"`           // ciphertext and tag
	} `json:"sealed"`
	Plain json.RawMessage `json:"plain,omitempty"`
}

var sealedPrefix = []byte(`{"sealed":{`)

// Marker is how every sealed envelope's data begins (a copy): a store that keeps event data byte
// for byte and holds no run of these bytes holds no sealed event.
func Marker() []byte { return bytes.Clone(sealedPrefix) }

// IsSealed reports whether raw event data is a sealed envelope.
func IsSealed(data []byte) bool { return bytes.HasPrefix(data, sealedPrefix) }

// KeyID returns the key id of sealed event data ("" when data is not sealed).
func KeyID(data []byte) string {
	if !IsSealed(data) {
		return ""
	}
	env, err := parseEnvelope(data)
	if err != nil {
		return ""
	}
	return env.Sealed.K
}

// Store is the sealing decorator of an eventstore.Store: Append seals the data of the events the
// policies name (the inner store hashes and stores the ciphertext, so Event.Hash and Prev are the
// stored bytes' and stay exactly as the inner store computed them); every read opens them again.
// An event whose key was destroyed is returned with its envelope, Erased set and Data null.
type Store struct {
	eventstore.Store
	sealer   *Sealer
	policies []Policy
	plain    map[string]map[string]bool // event type → top-level fields kept readable
}

var _ eventstore.Store = (*Store)(nil)

// NewStore decorates inner.
func NewStore(inner eventstore.Store, sealer *Sealer, policies ...Policy) *Store {
	return &Store{Store: inner, sealer: sealer, policies: policies}
}

// KeepPlain names, per event type, the top-level data fields that stay readable when the event is
// sealed (and after its key is destroyed): what is not content (ids, counts, token usage, model
// names), so usage, cost and budgets survive an erasure. Call it while wiring, before any append.
func (s *Store) KeepPlain(fields map[string][]string) *Store {
	if s.plain == nil {
		s.plain = map[string]map[string]bool{}
	}
	for typ, fs := range fields {
		if s.plain[typ] == nil {
			s.plain[typ] = map[string]bool{}
		}
		for _, f := range fs {
			s.plain[typ][f] = true
		}
	}
	return s
}

// Raw is the store under the sealing decorator found in s's chain of decorators (through their
// Unwrap() eventstore.Store), or s itself when none is sealing: what hash verification must read,
// since hashes are over the stored ciphertext.
func Raw(s eventstore.Store) eventstore.Store {
	for cur := s; cur != nil; {
		if ss, ok := cur.(*Store); ok {
			return ss.Store
		}
		u, ok := cur.(interface{ Unwrap() eventstore.Store })
		if !ok {
			break
		}
		cur = u.Unwrap()
	}
	return s
}

// Find is the sealing decorator in s's chain of decorators, if any: its Sealer opens raw events.
func Find(s eventstore.Store) (*Store, bool) {
	for cur := s; cur != nil; {
		if ss, ok := cur.(*Store); ok {
			return ss, true
		}
		u, ok := cur.(interface{ Unwrap() eventstore.Store })
		if !ok {
			break
		}
		cur = u.Unwrap()
	}
	return nil, false
}

// Unwrap returns the decorated store (raw events: what verification reads).
func (s *Store) Unwrap() eventstore.Store { return s.Store }

// Sealer is the decorator's sealer.
func (s *Store) Sealer() *Sealer { return s.sealer }

func (s *Store) keyFor(stream tenant.Stream, e eventstore.EventData) (string, bool) {
	for _, p := range s.policies {
		if k, ok := p(stream, e); ok {
			return k, true
		}
	}
	return "", false
}

// Append seals what the policies name, appends, and returns the recorded events with their
// plaintext data (and the stored hashes).
func (s *Store) Append(ctx context.Context, stream tenant.Stream, expected eventstore.ExpectedRevision, evs ...eventstore.EventData) (eventstore.AppendResult, error) {
	var plain []json.RawMessage
	sealed := evs
	if v, _ := ctx.Value(plainCtx{}).(bool); v {
		return s.Store.Append(ctx, stream, expected, evs...)
	}
	for i, e := range evs {
		keyID, ok := s.keyFor(stream, e)
		if !ok {
			continue
		}
		if plain == nil {
			plain = make([]json.RawMessage, len(evs))
			sealed = append([]eventstore.EventData(nil), evs...)
		}
		if k, ok := keyFromContext(ctx); ok {
			keyID = k
		}
		data, err := s.seal(ctx, stream.Tenant(), keyID, e.Type, e.Data)
		if err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("append %s to %s: %w", e.Type, stream, err)
		}
		plain[i] = e.Data
		sealed[i].Data = data
	}
	res, err := s.Store.Append(ctx, stream, expected, sealed...)
	if err != nil || plain == nil {
		return res, err
	}
	if len(res.Events) == len(evs) {
		res.Events = append([]eventstore.Event(nil), res.Events...)
		for i := range res.Events {
			if plain[i] != nil {
				res.Events[i].Data = plain[i]
			}
		}
	}
	return res, nil
}

func (s *Store) seal(ctx context.Context, t tenant.ID, keyID, typ string, data []byte) (json.RawMessage, error) {
	secret, plain := []byte(data), json.RawMessage(nil)
	if keep := s.plain[typ]; len(keep) > 0 {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(data, &fields); err != nil {
			return nil, fmt.Errorf("seal %s: data is not a JSON object: %w", typ, err)
		}
		p, c := map[string]json.RawMessage{}, map[string]json.RawMessage{}
		for k, v := range fields {
			if keep[k] {
				p[k] = v
			} else {
				c[k] = v
			}
		}
		var err error
		if plain, err = json.Marshal(p); err != nil {
			return nil, fmt.Errorf("seal %s: %w", typ, err)
		}
		if secret, err = json.Marshal(c); err != nil {
			return nil, fmt.Errorf("seal %s: %w", typ, err)
		}
	}
	chk, nonce, ct, err := s.sealer.seal(ctx, t, keyID, secret)
	if err != nil {
		return nil, err
	}
	return appendEnvelope(make([]byte, 0, 64+len(keyID)+base64.StdEncoding.EncodedLen(len(chk))+base64.StdEncoding.EncodedLen(len(nonce))+
		base64.StdEncoding.EncodedLen(len(ct))+len(plain)), keyID, chk, nonce, ct, plain), nil
}

// appendEnvelope writes the envelope as json.Marshal of envelope would, without reflection: every
// sealed event goes through it.
func appendEnvelope(b []byte, keyID string, chk, nonce, ct, plain []byte) []byte {
	b = append(b, `{"sealed":{"k":`...)
	if strings.ContainsAny(keyID, "\"<>&") {
		q, _ := json.Marshal(keyID) // the rare id with a character JSON escapes
		b = append(b, q...)
	} else {
		b = append(append(append(b, '"'), keyID...), '"')
	}
	if len(chk) > 0 {
		b = append(b, `,"g":"`...)
		b = base64.StdEncoding.AppendEncode(b, chk)
		b = append(b, '"')
	}
	b = append(b, `,"n":"`...)
	b = base64.StdEncoding.AppendEncode(b, nonce)
	b = append(b, `","c":"`...)
	b = base64.StdEncoding.AppendEncode(b, ct)
	b = append(b, `"}`...)
	if len(plain) > 0 {
		b = append(b, `,"plain":`...)
		b = append(b, plain...)
	}
	return append(b, '}')
}

// parseEnvelope reads what appendEnvelope wrote without reflection (projections catching up open
// every event); anything else (another spelling of the same JSON) falls back to encoding/json.
func parseEnvelope(data []byte) (env envelope, err error) {
	if k, g, n, c, plain, ok := scanEnvelope(data); ok {
		env.Sealed.K, env.Sealed.G, env.Sealed.N, env.Sealed.C, env.Plain = k, g, n, c, plain
		return env, nil
	}
	err = json.Unmarshal(data, &env)
	return env, err
}

func scanEnvelope(b []byte) (k string, g, n, c, plain []byte, ok bool) {
	field := func(prefix string) ([]byte, bool) {
		if !bytes.HasPrefix(b, []byte(prefix)) {
			return nil, false
		}
		b = b[len(prefix):]
		end := bytes.IndexByte(b, '"')
		if end < 0 || bytes.IndexByte(b[:end], '\\') >= 0 {
			return nil, false
		}
		v := b[:end]
		b = b[end+1:]
		return v, true
	}
	kb, ok1 := field(`{"sealed":{"k":"`)
	gb, hasG := field(`,"g":"`)
	nb, ok2 := field(`,"n":"`)
	cb, ok3 := field(`,"c":"`)
	if !ok1 || !ok2 || !ok3 || !bytes.HasPrefix(b, []byte("}")) {
		return "", nil, nil, nil, nil, false
	}
	b = b[1:]
	switch {
	case len(b) == 1 && b[0] == '}':
	case bytes.HasPrefix(b, []byte(`,"plain":{`)) && b[len(b)-1] == '}':
		plain = b[len(`,"plain":`) : len(b)-1]
	default:
		return "", nil, nil, nil, nil, false
	}
	var err error
	if hasG {
		if g, err = base64.StdEncoding.AppendDecode(nil, gb); err != nil || len(g) == 0 {
			return "", nil, nil, nil, nil, false
		}
	}
	if n, err = base64.StdEncoding.AppendDecode(nil, nb); err != nil {
		return "", nil, nil, nil, nil, false
	}
	if c, err = base64.StdEncoding.AppendDecode(nil, cb); err != nil {
		return "", nil, nil, nil, nil, false
	}
	return string(kb), g, n, c, plain, true
}

// OpenEvent returns e with its data opened when it is sealed: Erased, and Data only the fields kept
// plain ({} when none), when its key is gone. An event that is not sealed is returned as it is.
//
// A sealed event that does not open with its live key (its ciphertext altered, or sealed under a
// key that is not the one this key store holds under its id) is returned like an erased one, with
// Unreadable set too, and logged and counted (Report): its content is lost to every reader either
// way, and one tenant's damaged event must not stop the projections of every tenant (a reader
// that failed on it would fail again on every restart). `crispy verify` does not see this damage
// when the stored bytes still hash (a key store that lost or replaced the key); the log line names
// the event.
func (s *Sealer) OpenEvent(ctx context.Context, e eventstore.Event) (eventstore.Event, error) {
	if !IsSealed(e.Data) {
		return e, nil
	}
	env, err := parseEnvelope(e.Data)
	if err != nil || env.Sealed.K == "" {
		return e, nil // a plain event whose data merely starts like an envelope
	}
	// Erased and Unreadable are derived here, never taken from where the event came from (a broker
	// message's JSON carries them).
	e.Erased, e.Unreadable = false, false
	pt, err := s.open(ctx, e.Tenant, env.Sealed.K, env.Sealed.G, env.Sealed.N, env.Sealed.C)
	switch {
	case errors.Is(err, ErrErased):
		e.Data, e.Erased = json.RawMessage("{}"), true
		if len(env.Plain) > 0 {
			e.Data = env.Plain
		}
		return e, nil
	case errors.Is(err, ErrCorrupt):
		s.reportUnreadable(ctx, e, env.Sealed.K, err)
		e.Data, e.Erased, e.Unreadable = json.RawMessage("{}"), true, true
		if len(env.Plain) > 0 {
			e.Data = env.Plain
		}
		return e, nil
	case err != nil:
		return e, fmt.Errorf("open %s %s@%d: %w", e.Type, e.Stream, e.Revision, err)
	}
	e.Data = merge(env.Plain, pt)
	return e, nil
}

// reportUnreadable logs an unreadable event once (many readers open the same event: every
// projection's catch-up, every history read) and counts it.
func (s *Sealer) reportUnreadable(ctx context.Context, e eventstore.Event, keyID string, cause error) {
	id := fmt.Sprintf("%s\x00%s\x00%d", e.Tenant, e.Stream, e.Revision)
	s.mu.Lock()
	_, seen := s.reported[id]
	if !seen {
		if len(s.reported) >= maxReported {
			clear(s.reported)
		}
		s.reported[id] = struct{}{}
	}
	s.mu.Unlock()
	if seen {
		return
	}
	if s.unreadable != nil {
		s.unreadable.Inc()
	}
	s.log.ErrorContext(ctx, "sealed event does not open with its key: its content reads as erased; restore the key store (keys.db / data_keys) that goes with this event store, or the event from a backup",
		"tenant", e.Tenant.String(), "stream", e.Stream, "revision", e.Revision, "position", uint64(e.Position), "type", e.Type, "key", keyID, "error", cause)
}

// merge joins two JSON objects with disjoint keys (the plain and the sealed part of one event's
// data) by splicing, which costs a copy rather than a decode.
func merge(plain, secret []byte) json.RawMessage {
	plain, secret = bytes.TrimSpace(plain), bytes.TrimSpace(secret)
	switch {
	case len(plain) < 2 || string(plain) == "{}":
		return secret
	case string(secret) == "{}":
		return plain
	}
	out := make([]byte, 0, len(plain)+len(secret))
	out = append(out, plain[:len(plain)-1]...)
	out = append(out, ',')
	return append(out, secret[1:]...)
}

type keyCtx struct{}

// WithKey makes the events of appends made with ctx that a Policy seals use keyID instead of the
// Policy's: for content whose key depends on state the stream name does not show (a session
// started anew after a deletion gets a new key, since the old one is destroyed for good).
func WithKey(ctx context.Context, keyID string) context.Context {
	return context.WithValue(ctx, keyCtx{}, keyID)
}

type plainCtx struct{}

// WithoutContent states that the events of appends made with ctx carry no content, so none is
// sealed whatever the policies say: for a record made after the content's key is gone (a turn's
// outcome after its session was deleted, with only counts in it).
func WithoutContent(ctx context.Context) context.Context {
	return context.WithValue(ctx, plainCtx{}, true)
}

func keyFromContext(ctx context.Context) (string, bool) {
	k, ok := ctx.Value(keyCtx{}).(string)
	return k, ok && k != ""
}

func (s *Store) openAll(ctx context.Context, evs []eventstore.Event) ([]eventstore.Event, error) {
	for i := range evs {
		e, err := s.sealer.OpenEvent(ctx, evs[i])
		if err != nil {
			return nil, err
		}
		evs[i] = e
	}
	return evs, nil
}

// ReadStream implements eventstore.Store, opening sealed events.
func (s *Store) ReadStream(ctx context.Context, stream tenant.Stream, from uint64, max int) ([]eventstore.Event, error) {
	evs, err := s.Store.ReadStream(ctx, stream, from, max)
	if err != nil {
		return nil, err
	}
	return s.openAll(ctx, evs)
}

// ReadTenant implements eventstore.Store, opening sealed events.
func (s *Store) ReadTenant(ctx context.Context, t tenant.ID, from eventstore.Position, max int) ([]eventstore.Event, error) {
	evs, err := s.Store.ReadTenant(ctx, t, from, max)
	if err != nil {
		return nil, err
	}
	return s.openAll(ctx, evs)
}

// Subscribe implements eventstore.Store, opening sealed events before h sees them.
func (s *Store) Subscribe(ctx context.Context, opts eventstore.SubscribeOptions, h eventstore.Handler) error {
	return s.Store.Subscribe(ctx, opts, func(ctx context.Context, e eventstore.Event) error {
		e, err := s.sealer.OpenEvent(ctx, e)
		if err != nil {
			return err
		}
		return h(ctx, e)
	})
}
