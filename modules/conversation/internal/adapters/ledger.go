package adapters

import (
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

// AddTokens counts tokens used at at, by actor too when it is an API key.
func AddTokens(b *bolt.Bucket, t tenant.ID, actor string, at time.Time, tokens int64) error {
	if tokens <= 0 {
		return nil
	}
	keys := [][]byte{periodKey(t, 'd', domain.DayOf(at)), periodKey(t, 'm', domain.MonthOf(at))}
	if strings.HasPrefix(actor, "key:") {
		keys = append(keys, keyPeriodKey(t, actor, 'd', domain.DayOf(at)), keyPeriodKey(t, actor, 'm', domain.MonthOf(at)))
	}
	for _, k := range keys {
		var n uint64
		if v := b.Get(k); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		if err := b.Put(k, binary.BigEndian.AppendUint64(nil, n+uint64(tokens))); err != nil {
			return err
		}
	}
	return nil
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
type TokenLedger struct{ Projection *bus.Projection }

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
