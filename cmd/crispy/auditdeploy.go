package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/crispy-enigma/crispy/platform/auditlog"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// deploymentTenant holds the deployment's own records: the audit signing key every replica of the
// store must sign with. It is a reserved tenant name (a tenants file must not configure it): the
// store's streams all belong to a tenant, and the key is the deployment's, not any one tenant's.
var deploymentTenant = tenant.Deployment

// deploymentKeyStream is where the deployment's signing key is recorded: audit.SigningKeyCreated, the
// first by whichever replica of a new deployment starts first (appended expecting no stream, so one
// wins), then one per --new-audit-key.
var deploymentKeyStream = tenant.MustStream(deploymentTenant, "audit-key", "")

// checkDeploymentKey makes every replica of a store sign with one key. Nothing else tells replicas
// started together on a new store that each made its own key (each finds the store empty), after
// which checkpoints depend on which replica answers. The key in use must be the latest recorded in
// the store; the first start records it; --new-audit-key records the new one (a rotation the other
// replicas then refuse to start without).
func checkDeploymentKey(ctx context.Context, cfg config, store eventstore.Store, pub ed25519.PublicKey) error {
	mine := auditlog.Describe(pub)
	for attempt := 0; ; attempt++ {
		last, expected, seen, err := lastDeploymentKey(ctx, store)
		if err != nil {
			return fmt.Errorf("audit signing key: read the deployment's key from the store: %w", err)
		}
		if last != nil && last.KeyID == mine.KeyID && last.PublicKey == mine.PublicKey {
			return nil
		}
		// A rotation this data folder began (marker written before its key was made) and a stop cut
		// short before it was recorded here counts as asked for again (audit.go openAuditKey), but
		// only for a key never recorded: the marker names no key, and a key the deployment signed
		// with before (an old --audit-key) is not the rotation's.
		rotating := cfg.NewAuditKey || auditKeyRotationPending(cfg) && !seen[mine.KeyID]
		if last != nil && !rotating {
			return fmt.Errorf("audit signing key %s (key id %s) is not the one this deployment signs with (key id %s, recorded in the store): pass --audit-key FILE with the key the other replicas use, or start with --new-audit-key to rotate to a new key (recorded; the other replicas then need it)", auditKeyPath(cfg), mine.KeyID, last.KeyID)
		}
		reason := "the first start of the deployment: checkpoints are signed by this key"
		if last != nil {
			reason = "the server was started with --new-audit-key: checkpoints from here on are signed by this key"
		}
		ed, err := eventstore.NewEventData(auditlog.TypeSigningKeyCreated, auditlog.SigningKeyCreated{KeyID: mine.KeyID, PublicKey: mine.PublicKey, Reason: reason})
		if err != nil {
			return err
		}
		ed.Actor = "system:audit"
		_, err = store.Append(ctx, deploymentKeyStream, expected, ed)
		if errors.Is(err, eventstore.ErrConflict) && attempt < 3 {
			continue // another replica recorded its key meanwhile: compare with it
		}
		if err != nil {
			return fmt.Errorf("audit signing key: record it in the store: %w", err)
		}
		return nil
	}
}

// lastDeploymentKey is the latest key recorded (nil when none), the revision an append after it
// expects, and every key id recorded so far.
func lastDeploymentKey(ctx context.Context, store eventstore.Store) (*auditlog.SigningKeyCreated, eventstore.ExpectedRevision, map[string]bool, error) {
	evs, err := store.ReadStream(ctx, deploymentKeyStream, 0, 0)
	if err != nil {
		return nil, eventstore.Any, nil, err
	}
	seen := map[string]bool{}
	var last *auditlog.SigningKeyCreated
	for _, e := range evs {
		if e.Type != auditlog.TypeSigningKeyCreated {
			continue
		}
		var k auditlog.SigningKeyCreated
		if err := e.Decode(&k); err != nil {
			return nil, eventstore.Any, nil, err
		}
		seen[k.KeyID] = true
		last = &k
	}
	if len(evs) == 0 {
		return nil, eventstore.NoStream, seen, nil
	}
	return last, eventstore.Exact(evs[len(evs)-1].Revision), seen, nil
}
