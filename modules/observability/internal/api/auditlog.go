package api

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/auditlog"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// AuditLog is the tenant-wide Merkle log with signed checkpoints (platform/auditlog.Log).
type AuditLog interface {
	PublicKey() ed25519.PublicKey
	Checkpoint(ctx context.Context, t tenant.ID) (auditlog.Checkpoint, error)
	Prove(ctx context.Context, t tenant.ID, id string, size uint64) (auditlog.InclusionProof, error)
	Verify(ctx context.Context, t tenant.ID, cp auditlog.Checkpoint, progress func(uint64)) (auditlog.Report, error)
}

type publicKeyOutput struct {
	Body struct {
		auditlog.PublicKey
		RequestID string `json:"requestId"`
	}
}

// checkpointOutput is the checkpoint alone (no request id): the body is the file a client keeps and
// posts back to POST /audit/verify.
type checkpointOutput struct {
	Body auditlog.Checkpoint
}

type verifyCheckpointInput struct {
	KeyHeaders
	Body auditlog.Checkpoint
}

type verifyCheckpointOutput struct {
	Body struct {
		auditlog.Report
		RequestID string `json:"requestId"`
	}
}

type proofInput struct {
	KeyHeaders
	EventID string `path:"id" maxLength:"100" doc:"The event's id"`
	Size    uint64 `query:"size" doc:"Prove against the checkpoint of this many events (one you kept); default: the latest, signed afresh when the log grew"`
}

type proofOutput struct {
	Body struct {
		auditlog.InclusionProof
		RequestID string `json:"requestId"`
	}
}

// RegisterLog mounts the signed-log operations: public key, checkpoint, verification against a
// checkpoint and inclusion proofs. All are scoped to the caller's tenant.
func (a *Audit) RegisterLog(api huma.API) {
	huma.Register(api, huma.Operation{OperationID: "get-audit-public-key", Method: http.MethodGet, Path: "/audit/public-key", Tags: []string{tag},
		Summary: "The key that signs audit checkpoints", Description: "The server's Ed25519 public key: raw (base64), PEM, and as a signed-note verifier key. Keep a copy outside the server to check checkpoints with."},
		func(ctx context.Context, _ *struct{}) (*publicKeyOutput, error) {
			if _, err := tenantOf(ctx); err != nil {
				return nil, err
			}
			if a.Log == nil {
				return nil, logUnavailable()
			}
			out := &publicKeyOutput{}
			out.Body.PublicKey = auditlog.Describe(a.Log.PublicKey())
			out.Body.RequestID = request.From(ctx).ID
			return out, nil
		})

	huma.Register(api, huma.Operation{OperationID: "get-audit-checkpoint", Method: http.MethodGet, Path: "/audit/checkpoint", Tags: []string{tag},
		Summary: "The tenant's latest signed checkpoint", Description: "{tenant, size, rootHash, time} signed with Ed25519: the latest, or a fresh one when the tenant's log grew since. Keep it: POST /audit/verify with it later proves the log still holds exactly what it committed to. Requires the tenant's API key."},
		func(ctx context.Context, in *verifyInput) (*checkpointOutput, error) {
			t, err := a.logCaller(ctx, in.KeyHeaders)
			if err != nil {
				return nil, err
			}
			c, err := a.Log.Checkpoint(ctx, t)
			if err != nil {
				return nil, logError(err)
			}
			return &checkpointOutput{Body: c}, nil
		})

	huma.Register(api, huma.Operation{OperationID: "verify-audit-checkpoint", Method: http.MethodPost, Path: "/audit/verify", Tags: []string{tag},
		Summary: "Verify the tenant's log against a kept checkpoint", Description: "Checks the checkpoint's signature, recomputes every event's hash and the tenant's Merkle tree from the stored events, and proves that the log still holds exactly what the checkpoint committed to plus only appends (with an RFC 6962 consistency proof). A store that does not: ok false and the first position at fault. A bad signature, another tenant's checkpoint or one from the future: 4xx. Requires the tenant's API key."},
		func(ctx context.Context, in *verifyCheckpointInput) (*verifyCheckpointOutput, error) {
			t, err := a.logCaller(ctx, in.KeyHeaders)
			if err != nil {
				return nil, err
			}
			rep, err := a.Log.Verify(ctx, t, in.Body, nil)
			if err != nil {
				return nil, logError(err)
			}
			out := &verifyCheckpointOutput{}
			out.Body.Report = rep
			out.Body.RequestID = request.From(ctx).ID
			return out, nil
		})

	huma.Register(api, huma.Operation{OperationID: "get-audit-event-proof", Method: http.MethodGet, Path: "/audit/events/{id}/proof", Tags: []string{tag},
		Summary: "Inclusion proof of one event", Description: "An RFC 6962 inclusion proof of the event in the tenant's log, against the latest signed checkpoint (included) or the checkpoint of a given size. 'crispy audit prove' checks it offline with the event as /audit/events or crispy replay show it. Requires the tenant's API key."},
		func(ctx context.Context, in *proofInput) (*proofOutput, error) {
			t, err := a.logCaller(ctx, in.KeyHeaders)
			if err != nil {
				return nil, err
			}
			p, err := a.Log.Prove(ctx, t, in.EventID, in.Size)
			if err != nil {
				return nil, logError(err)
			}
			out := &proofOutput{}
			out.Body.InclusionProof = p
			out.Body.RequestID = request.From(ctx).ID
			return out, nil
		})
}

func (a *Audit) logCaller(ctx context.Context, k KeyHeaders) (tenant.ID, error) {
	t, err := tenantOf(ctx)
	if err != nil {
		return t, err
	}
	if err := k.requireKey(); err != nil {
		return t, err
	}
	if a.Log == nil {
		return t, logUnavailable()
	}
	return t, nil
}

func logUnavailable() error {
	return apperr.New(apperr.KindUnavailable, "audit_log_unavailable", "the signed audit log is not running on this server")
}

// logError maps the audit log's errors to problems.
// verifyRetryAfterSec is the retry-after of a refused verification: about what verifying a log of a
// few million events takes.
const verifyRetryAfterSec = 10

func logError(err error) error {
	if _, ok := apperr.As(err); ok {
		return err // catching_up and the like
	}
	switch {
	case errors.Is(err, auditlog.ErrOtherTenant):
		return apperr.Wrap(err, apperr.KindForbidden, "checkpoint_other_tenant", "the checkpoint is another tenant's; verify with your own tenant's checkpoint")
	case errors.Is(err, auditlog.ErrFromTheFuture):
		return apperr.Wrap(err, apperr.KindInvalid, "checkpoint_from_the_future", "the checkpoint's time is after the server's clock: it was not signed by this server as given")
	case errors.Is(err, auditlog.ErrBadSignature), errors.Is(err, auditlog.ErrUnknownKey):
		return apperr.Wrap(err, apperr.KindInvalid, "checkpoint_bad_signature", "the checkpoint's signature does not verify under this server's key (GET /audit/public-key): it was altered, or signed by another key")
	case errors.Is(err, auditlog.ErrMalformed):
		return apperr.Wrap(err, apperr.KindInvalid, "invalid_checkpoint", "the body is not a checkpoint as GET /audit/checkpoint returns it")
	case errors.Is(err, auditlog.ErrEmpty):
		return apperr.NotFound("audit_log_empty", "the tenant has no events yet, so no checkpoint")
	case errors.Is(err, auditlog.ErrNotInTree):
		return apperr.Wrap(err, apperr.KindNotFound, "event_not_in_log", "no event with that id in the tenant's log at that size (it may not be in a checkpoint yet; retry without size)")
	case errors.Is(err, auditlog.ErrInconsistent):
		return apperr.Wrap(err, apperr.KindConflict, "audit_log_inconsistent", "the tenant's log no longer extends the last checkpoint this server signed (rolled back or rewritten); nothing new is signed. Verify with a kept checkpoint (POST /audit/verify) to find where")
	case errors.Is(err, auditlog.ErrBeyondLog):
		return apperr.Wrap(err, apperr.KindInvalid, "checkpoint_size_beyond_log", "size is larger than the tenant's log")
	case errors.Is(err, auditlog.ErrVerifyRunning):
		e := apperr.Wrap(err, apperr.KindRateLimited, "audit_verify_running", "a verification of this tenant's log is already running; retry when it is done")
		e.RetryAfterSec = verifyRetryAfterSec
		return e
	case errors.Is(err, auditlog.ErrVerifyBusy):
		e := apperr.Wrap(err, apperr.KindUnavailable, "audit_verify_busy", "the server is running as many log verifications as it allows; retry shortly")
		e.RetryAfterSec = verifyRetryAfterSec
		return e
	case errors.Is(err, eventstore.ErrCorrupt):
		return apperr.Wrap(err, apperr.KindUnavailable, "eventstore_corrupt", "a stored record could not be read back as written; restore the data folder from a backup")
	}
	return apperr.Wrap(err, apperr.KindUnavailable, "audit_log_unavailable", "the audit log could not be read; try again")
}
