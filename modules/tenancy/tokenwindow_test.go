package tenancy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The shared tokens-per-minute log follows --ratelimit-fail: with Redis unreachable it fails open
// (a plain error: the caller counts the call in its own process) or closed (503
// ratelimit_unavailable to answer); without Redis there is no shared log at all.
func TestTokenWindowFailsOpenOrClosed(t *testing.T) {
	if w := mustModule(t, tenancy.Config{}).TokenWindow(); w != nil {
		t.Fatal("a token window without Redis")
	}
	for _, closed := range []bool{false, true} {
		m := mustModule(t, tenancy.Config{RedisURL: "redis://127.0.0.1:1/0", RedisTimeout: 200 * time.Millisecond, FailClosed: closed})
		w := m.TokenWindow()
		_, err := w.Reserve(context.Background(), tenant.MustParse("acme"), "t", "turn-1", 10, 100, 16, 1000, time.Now())
		if err == nil {
			t.Fatalf("closed=%v: Redis on a closed port answered", closed)
		}
		var ae *apperr.Error
		if isAppErr := errors.As(err, &ae); isAppErr != closed || closed && (ae.Code != "ratelimit_unavailable" || ae.RetryAfterSec < 1) {
			t.Fatalf("closed=%v: %v", closed, err)
		}
	}
}

func mustModule(t *testing.T, c tenancy.Config) *tenancy.Module {
	t.Helper()
	m, err := tenancy.New(tenancy.Deps{Config: c, Store: eventstoretest.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}
