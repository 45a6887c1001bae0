package domain_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
)

// BenchmarkLedgerTokensPerMinute is one tokens-per-minute decision in this process (no Redis):
// reserve and settle a call against a log holding the last 100 calls of the minute, as the
// in-process default does. Compare BenchmarkIntegrationRedisTokenWindow in
// modules/tenancy/internal/adapters (the shared log).
func BenchmarkLedgerTokensPerMinute(b *testing.B) {
	l := domain.NewLedger()
	now := time.Unix(1_800_000_000, 0)
	c := domain.Ceilings{PerMinute: 1 << 40}
	turns := make([]string, 100)
	for i := range turns {
		turns[i] = "turn-" + strconv.Itoa(i)
		if _, _, err := l.ReserveUpTo("acme", turns[i], 10, 1024, 16, c, now, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		turn := turns[i%len(turns)]
		i++
		l.Release("acme", turn) // keep 100 calls in the log
		if _, r, err := l.ReserveUpTo("acme", turn, 10, 1024, 16, c, now, nil); err != nil || r != nil {
			b.Fatal(err, r)
		}
		l.Settle("acme", turn, 500, 0)
	}
}
