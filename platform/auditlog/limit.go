package auditlog

import (
	"errors"
	"sync"

	"github.com/crispy-enigma/crispy/platform/tenant"
)

// ErrVerifyRunning refuses a verification of a tenant's log while another of the same tenant runs.
var ErrVerifyRunning = errors.New("a verification of this tenant's log is already running")

// ErrVerifyBusy refuses a verification while the server runs its maximum of them.
var ErrVerifyBusy = errors.New("the server is running as many log verifications as it allows")

// verifyLimiter bounds the verifications running at once: a verification recomputes a tenant's
// whole log on every core, so without a bound a few parallel requests of one tenant (or a few
// tenants) take the replica's CPU from everyone. One per tenant, and at most max in all; excess
// requests are refused at once (the caller retries later), never queued.
type verifyLimiter struct {
	mu      sync.Mutex
	max     int
	running map[tenant.ID]struct{}
}

func newVerifyLimiter(max int) *verifyLimiter {
	return &verifyLimiter{max: max, running: map[tenant.ID]struct{}{}}
}

// acquire takes t's slot; release gives it back.
func (v *verifyLimiter) acquire(t tenant.ID) (release func(), err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.running[t]; ok {
		return nil, ErrVerifyRunning
	}
	if len(v.running) >= v.max {
		return nil, ErrVerifyBusy
	}
	v.running[t] = struct{}{}
	return func() {
		v.mu.Lock()
		delete(v.running, t)
		v.mu.Unlock()
	}, nil
}
