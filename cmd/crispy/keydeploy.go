package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/keystore"
	keysembedded "github.com/crispy-enigma/crispy/platform/keystore/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"

	"github.com/crispy-enigma/crispy/platform/atomicfile"
)

// typeKeyStoreInUse records which embedded data key store the deployment seals with.
const typeKeyStoreInUse = "keystore.KeyStoreInUse"

// keyStoreInUse is its data.
type keyStoreInUse struct {
	StoreID string `json:"storeId"`
	Reason  string `json:"reason"`
}

// deploymentKeyStoreStream is where a shared event store records the embedded key store in use.
var deploymentKeyStoreStream = tenant.MustStream(deploymentTenant, "key-store", "")

// checkSharedKeyStore refuses a second key store on one shared event store. With an event store
// that replicas share (EventStoreDB, or PostgreSQL with --keystore embedded) and the keys in each
// replica's data folder, content sealed through one replica reads as erased on the others, and then
// as corrupt on both once another creates a key under the same id. The first start records its
// embedded key store's id in the store; a replica whose key store is another is refused, naming
// --keystore postgres://… (shared by every replica); --new-key-store records a new one.
func checkSharedKeyStore(ctx context.Context, cfg config, raw eventstore.Store, keys keystore.Store) error {
	if _, embedded := keys.(*keysembedded.Store); !embedded || cfg.EventStore == "embedded" {
		return nil // one process (the embedded event store is locked), or keys shared by construction
	}
	id, err := keyStoreID(cfg)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		last, rev, err := lastKeyStoreInUse(ctx, raw)
		if err != nil {
			return fmt.Errorf("data key store: read the deployment's key store from the event store: %w", err)
		}
		if last == id {
			return nil
		}
		if last != "" && !cfg.NewKeyStore {
			return fmt.Errorf("data key store %s (id %s) is not the one content in this shared event store was sealed with (id %s, recorded by another replica): replicas of one event store must share one key store, so pass the same --keystore postgres://…&schema=NAME to every replica (or run one replica, on the data folder that has that key store)", keysPath(cfg), id, last)
		}
		reason, expected := "the first start on this event store with keys in the data folder", eventstore.NoStream
		if last != "" {
			reason, expected = "the server was started with --new-key-store", eventstore.Exact(rev)
		}
		ed, err := eventstore.NewEventData(typeKeyStoreInUse, keyStoreInUse{StoreID: id, Reason: reason})
		if err != nil {
			return err
		}
		ed.Actor = "system:keystore"
		_, err = raw.Append(ctx, deploymentKeyStoreStream, expected, ed)
		if errors.Is(err, eventstore.ErrConflict) && attempt < 3 {
			continue // another replica recorded its own meanwhile: compare with it
		}
		if err != nil {
			return fmt.Errorf("data key store: record it in the event store: %w", err)
		}
		return nil
	}
}

// keyStoreID is the embedded key store's identity, kept beside keys.db (made with it).
func keyStoreID(cfg config) (string, error) {
	path := filepath.Join(filepath.Dir(keysPath(cfg)), "store-id")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	var r [16]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("data key store id: %w", err)
	}
	id := hex.EncodeToString(r[:])
	// Durable before it is recorded in the store: an id lost to a power cut would be made anew and
	// the replica then refused for a key store that is not the recorded one.
	if err := atomicfile.Write(path, []byte(id+"\n"), 0o600); err != nil {
		return "", dataDirError(cfg.DataDir, filepath.Dir(path), err)
	}
	return id, nil
}

// lastKeyStoreInUse is the latest key store id recorded ("" when none) and the stream's revision.
func lastKeyStoreInUse(ctx context.Context, raw eventstore.Store) (string, uint64, error) {
	evs, err := raw.ReadStream(ctx, deploymentKeyStoreStream, 0, 0)
	if err != nil || len(evs) == 0 {
		return "", 0, err
	}
	for i := len(evs) - 1; i >= 0; i-- {
		var k keyStoreInUse
		if evs[i].Type == typeKeyStoreInUse && evs[i].Decode(&k) == nil && k.StoreID != "" {
			return k.StoreID, evs[len(evs)-1].Revision, nil
		}
	}
	return "", evs[len(evs)-1].Revision, nil
}
