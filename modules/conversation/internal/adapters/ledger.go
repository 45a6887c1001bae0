package adapters

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The token ledger counts the tokens every recorded turn and stateless call used, per tenant and
// UTC period of the event's time, one key each:
//
//	tenant 0 'd' 2006-01-02  →  tokens (uint64)
//	tenant 0 'm' 2006-01     →  tokens (uint64)
//	tenant 0 'K' key 0 'd' 2006-01-02 / 'm' 2006-01  →  the same for the calls of one API key (the
//	                                                    event's actor "key:<id>"): per-key budgets
//
//	tenant 0 'C' key 0 'd' 2006-01-02 0 model / 'm' 2006-01 0 model  →  prompt, cached, completion and
//	                                 reasoning tokens (4 × uint64) of one API key's calls of one model:
//	                                 per-key USD budgets, priced when read (the price table may change)
//
// A budget check reads two keys. Keys grow by two a day per tenant that chats (a few kB a year).

func periodKey(t tenant.ID, kind byte, period string) []byte {
	k := append(tenantPrefix(t.String()), kind)
	return append(k, period...)
}

// keyPeriodKey is the counter of key's calls in period.
func keyPeriodKey(t tenant.ID, key string, kind byte, period string) []byte {
	k := append(append(append(tenantPrefix(t.String()), 'K'), key...), 0, kind)
	return append(k, period...)
}

// pendingLedgerKey names the ledger's readmodel.Pending: its counters (a tenant's day and month, an
// API key's) are added to by every answer, so a catch-up commit writes each once instead of reading
// and writing it back at every event.
type pendingLedgerKey struct{}

// AddTokens counts tokens used at at, by actor too when it is an API key.
func AddTokens(tx *readmodel.Tx, t tenant.ID, actor string, at time.Time, tokens int64) error {
	if tokens <= 0 {
		return nil
	}
	keys := [][]byte{periodKey(t, 'd', domain.DayOf(at)), periodKey(t, 'm', domain.MonthOf(at))}
	if strings.HasPrefix(actor, "key:") {
		keys = append(keys, keyPeriodKey(t, actor, 'd', domain.DayOf(at)), keyPeriodKey(t, actor, 'm', domain.MonthOf(at)))
	}
	p := tx.Pending(pendingLedgerKey{})
	for _, k := range keys {
		var n uint64
		if v := p.Get(k); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		p.Put(k, binary.BigEndian.AppendUint64(nil, n+uint64(tokens)))
	}
	return nil
}

// keySpendPrefix starts the per-model counters of key's calls in period.
func keySpendPrefix(t tenant.ID, key string, kind byte, period string) []byte {
	k := append(append(append(tenantPrefix(t.String()), 'C'), key...), 0, kind)
	return append(append(k, period...), 0)
}

// AddKeySpend counts the tokens of an API key's call of model at at, by kind, for its USD budget
// (actors other than API keys have none).
func AddKeySpend(tx *readmodel.Tx, t tenant.ID, actor, model string, at time.Time, u domain.SpendTokens) error {
	if !strings.HasPrefix(actor, "key:") || u.Prompt+u.Completion <= 0 {
		return nil
	}
	pending := tx.Pending(pendingLedgerKey{})
	for _, p := range [][]byte{keySpendPrefix(t, actor, 'd', domain.DayOf(at)), keySpendPrefix(t, actor, 'm', domain.MonthOf(at))} {
		k := append(p, model...)
		v := make([]byte, 32)
		copy(v, pending.Get(k))
		for i, n := range []int64{u.Prompt, u.Cached, u.Completion, u.Reasoning} {
			binary.BigEndian.PutUint64(v[8*i:], binary.BigEndian.Uint64(v[8*i:])+uint64(max(n, 0)))
		}
		pending.Put(k, v)
	}
	return nil
}

// KeySpend is the tokens of t's API key by model for the UTC day or month (kind 'd' or 'm') of now.
func KeySpend(b *bolt.Bucket, t tenant.ID, key string, kind byte, now time.Time) map[string]domain.SpendTokens {
	period := domain.DayOf(now)
	if kind == 'm' {
		period = domain.MonthOf(now)
	}
	prefix := keySpendPrefix(t, key, kind, period)
	out := map[string]domain.SpendTokens{}
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(v) != 32 {
			continue
		}
		n := func(i int) int64 { return int64(binary.BigEndian.Uint64(v[8*i:])) }
		out[string(k[len(prefix):])] = domain.SpendTokens{Prompt: n(0), Cached: n(1), Completion: n(2), Reasoning: n(3)}
	}
	return out
}

// TokensUsed is the tenant's count for the UTC day and month of now.
func TokensUsed(b *bolt.Bucket, t tenant.ID, now time.Time) (day, month int64) {
	get := func(k []byte) int64 {
		if v := b.Get(k); len(v) == 8 {
			return int64(binary.BigEndian.Uint64(v))
		}
		return 0
	}
	return get(periodKey(t, 'd', domain.DayOf(now))), get(periodKey(t, 'm', domain.MonthOf(now)))
}

// KeyTokensUsed is the count of t's API key for the UTC day and month of now.
func KeyTokensUsed(b *bolt.Bucket, t tenant.ID, key string, now time.Time) (day, month int64) {
	get := func(k []byte) int64 {
		if v := b.Get(k); len(v) == 8 {
			return int64(binary.BigEndian.Uint64(v))
		}
		return 0
	}
	return get(keyPeriodKey(t, key, 'd', domain.DayOf(now))), get(keyPeriodKey(t, key, 'm', domain.MonthOf(now)))
}

// TokenLedger answers budget checks from its projection: 503 catching_up until it has caught up.
// Cost prices a key's spend for its USD budget (nil: every call costs nothing).
type TokenLedger struct {
	Projection *bus.Projection
	Cost       func(model string, u domain.SpendTokens) (nanoUSD int64)
}

// Used is the tenant's recorded use today and this month, and the position it reflects.
func (l TokenLedger) Used(ctx context.Context, t tenant.ID, now time.Time) (u domain.Usage, err error) {
	err = l.Projection.View(ctx, func(tx *readmodel.Tx) error {
		u.Day, u.Month = TokensUsed(tx.Bucket(), t, now)
		u.At = tx.Position()
		return nil
	})
	return u, err
}

// UsedByKey is the recorded use of t's API key today and this month, and the position it reflects.
func (l TokenLedger) UsedByKey(ctx context.Context, t tenant.ID, key string, now time.Time) (u domain.Usage, err error) {
	err = l.Projection.View(ctx, func(tx *readmodel.Tx) error {
		u.Day, u.Month = KeyTokensUsed(tx.Bucket(), t, key, now)
		u.At = tx.Position()
		return nil
	})
	return u, err
}

// CostByKey is the cost in nano-USD of t's API key's calls today and this month, priced now, and
// the position it reflects.
func (l TokenLedger) CostByKey(ctx context.Context, t tenant.ID, key string, now time.Time) (u domain.Usage, err error) {
	err = l.Projection.View(ctx, func(tx *readmodel.Tx) error {
		if l.Cost != nil {
			for m, s := range KeySpend(tx.Bucket(), t, key, 'd', now) {
				u.Day += l.Cost(m, s)
			}
			for m, s := range KeySpend(tx.Bucket(), t, key, 'm', now) {
				u.Month += l.Cost(m, s)
			}
		}
		u.At = tx.Position()
		return nil
	})
	return u, err
}
