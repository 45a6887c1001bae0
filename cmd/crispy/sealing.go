package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/crispy-enigma/crispy/modules/conversation"
	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/postgres"
	"github.com/crispy-enigma/crispy/platform/keystore"
	keysembedded "github.com/crispy-enigma/crispy/platform/keystore/embedded"
	keyspostgres "github.com/crispy-enigma/crispy/platform/keystore/postgres"
	"github.com/crispy-enigma/crispy/platform/sealing"
)

// The data keys (issue 12 §4, crypto-shredding) live with the event store they erase content of:
//   - embedded event store: keys.db in <data-dir>/keys (platform/keystore/embedded);
//   - PostgreSQL: the data_keys table in the event store's schema, shared by every replica;
//   - EventStoreDB: keys.db in the data folder too. EventStoreDB has no place to keep a key that can
//     really be deleted (its streams are append-only and scavenging is not overwriting), so a
//     deployment on EventStoreDB keeps its keys in the serving replica's data folder: back that
//     folder up with the database, and run one replica (or put the keys on PostgreSQL).
//
// Losing the keys loses every sealed content: keys.db belongs in the data folder's backups.

// keysPath is the embedded key store's file in the data folder.
func keysPath(cfg config) string { return filepath.Join(cfg.DataDir, "keys", keysembedded.FileName) }

// openKeys opens the key store that goes with the event store raw (as openStore returned it).
func openKeys(ctx context.Context, cfg config, raw eventstore.Store, log *slog.Logger) (keystore.Store, error) {
	if pg, ok := raw.(*postgres.Store); ok {
		cctx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		ks, err := keyspostgres.Open(cctx, cfg.EventStore, pg.Schema(), log)
		if err != nil {
			return nil, engine{name: "PostgreSQL", url: cfg.EventStore, instead: "pass --eventstore embedded"}.failed(err)
		}
		return ks, nil
	}
	ks, err := keysembedded.Open(keysPath(cfg))
	if err != nil {
		return nil, dataDirError(cfg.DataDir, filepath.Dir(keysPath(cfg)), err)
	}
	return ks, nil
}

// openKeysReadOnly is openKeys for the operator's read-only commands (replay): beside a running
// server, the embedded key store is read without its lock.
func openKeysReadOnly(ctx context.Context, cfg config, raw eventstore.Store, log *slog.Logger) (keystore.Store, error) {
	if _, ok := raw.(*postgres.Store); ok {
		return openKeys(ctx, cfg, raw, log)
	}
	ks, err := keysembedded.OpenReadOnly(keysPath(cfg))
	if err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w; check that the keys folder is readable", cfg.DataDir, err)
	}
	return ks, nil
}

// sealStore is raw behind the sealing decorator with every module's policy: what the modules append
// and read. Verification and the Merkle log read raw (they hash what is stored).
func sealStore(raw eventstore.Store, sl *sealing.Sealer) *sealing.Store {
	return sealing.NewStore(raw, sl, conversation.SealPolicy(), retrieval.SealingPolicy).KeepPlain(conversation.PlainFields())
}
