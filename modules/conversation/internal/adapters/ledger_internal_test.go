package adapters

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// TestLedgerCountersAddUpAcrossABatchAndCommits: answers counted in one transaction (a catch-up
// batch: each counter written once, at the commit) add to what earlier commits stored, for the
// tenant, the API key and the key's spend by model.
func TestLedgerCountersAddUpAcrossABatchAndCommits(t *testing.T) {
	s, err := readmodel.Open(filepath.Join(t.TempDir(), "ledger.db"), readmodel.Options{Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	acme := tenant.MustParse("acme")
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	answer := func(tx *readmodel.Tx, actor string, tokens int64) error {
		if err := AddTokens(tx, acme, actor, at, tokens); err != nil {
			return err
		}
		return AddKeySpend(tx, acme, actor, "m1", at, domain.SpendTokens{Prompt: tokens, Completion: 1})
	}
	if err := s.Update(func(tx *readmodel.Tx) error { return answer(tx, "key:k1", 5) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx *readmodel.Tx) error {
		for _, a := range []struct {
			actor  string
			tokens int64
		}{{"key:k1", 10}, {"user-1", 100}, {"key:k1", 20}, {"key:k2", 1}} {
			if err := answer(tx, a.actor, a.tokens); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx *readmodel.Tx) error {
		if day, month := TokensUsed(tx.Bucket(), acme, at); day != 136 || month != 136 {
			t.Errorf("tenant: day %d, month %d; want 136", day, month)
		}
		if day, month := KeyTokensUsed(tx.Bucket(), acme, "key:k1", at); day != 35 || month != 35 {
			t.Errorf("key k1: day %d, month %d; want 35", day, month)
		}
		if got := KeySpend(tx.Bucket(), acme, "key:k1", 'm', at)["m1"]; got.Prompt != 35 || got.Completion != 3 {
			t.Errorf("key k1's spend on m1: %+v; want 35 prompt, 3 completion", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
