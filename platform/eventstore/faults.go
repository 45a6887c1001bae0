package eventstore

import (
	"context"
	"errors"

	"github.com/crispy-enigma/crispy/platform/apperr"
)

// StorageRetryAfterSec is the retry-after of ErrStorageUnavailable: long enough for a healer that
// retries every second or so to notice freed space, short enough that a client does not wait long.
const StorageRetryAfterSec = 5

// ErrStorageUnavailable is the refusal of a write that the store's storage cannot take right now (a
// full disk, an I/O error on write or fsync). It is an *apperr.Error (503 storage_unavailable with
// retry-after), so an append error that a module wraps with %w answers 503 without the module knowing
// about storage. Implementations return it joined with the cause:
//
//	fmt.Errorf("%w: %w", eventstore.ErrStorageUnavailable, cause)
//
// Reads keep working while writes are refused, and the store heals by itself when the fault clears.
// Test with errors.Is; never modify the value.
var ErrStorageUnavailable = &apperr.Error{
	Kind: apperr.KindUnavailable, Code: "storage_unavailable", RetryAfterSec: StorageRetryAfterSec,
	Message: "the event store cannot write right now (its storage is full or failing); nothing was recorded; retry shortly",
}

// ErrStorageOutcomeUnknown is the refusal of a write whose bytes reached the store's files before
// the storage failed, and which the store could not take back (the truncation failed too): until the
// store heals and cuts them, a crash would keep them, so the write may turn up as recorded. It is
// still 503 storage_unavailable with retry-after, but it is not ErrStorageUnavailable and does not
// say that nothing was recorded: a module that treats that refusal as "nothing recorded" treats this
// one as a write that may be in the log. Implementations join it with the cause, as above.
var ErrStorageOutcomeUnknown = &apperr.Error{
	Kind: apperr.KindUnavailable, Code: "storage_unavailable", RetryAfterSec: StorageRetryAfterSec,
	Message: "the event store's storage failed during this write and the store could not undo it: it may have been recorded; check before retrying",
}

// ErrReadOnly is returned by writes to a store opened read-only (the operator's verify).
var ErrReadOnly = errors.New("event store opened read-only")

// HealthChecker is implemented by stores that know more about their health than whether a read
// succeeds (the embedded store reports a write fault as degraded while reads still work).
type HealthChecker interface {
	// Health returns nil when the store is fully usable, a *health.State (degraded) when it serves
	// reads but refuses writes, and any other error when it is down.
	Health(ctx context.Context) error
}

// CheckHealth is the /health check of a store: the store's own Health when it (or a store it
// decorates, found through Unwrap() Store) has one, else whether LastPosition answers.
func CheckHealth(ctx context.Context, s Store) error {
	for cur := s; cur != nil; {
		if h, ok := cur.(HealthChecker); ok {
			return h.Health(ctx)
		}
		u, ok := cur.(interface{ Unwrap() Store })
		if !ok {
			break
		}
		cur = u.Unwrap()
	}
	_, err := s.LastPosition(ctx)
	return err
}
