package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
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

// The data keys (issue 12 §4, crypto-shredding) live where --keystore says:
//   - default with a PostgreSQL event store: the data_keys table in the event store's schema,
//     shared by every replica;
//   - default otherwise (embedded, EventStoreDB), and --keystore embedded: keys.db in
//     <data-dir>/keys (platform/keystore/embedded), which one process uses;
//   - --keystore postgres://…&schema=NAME: the data_keys table of that schema, shared by every
//     replica pointed at it, whatever the event store. EventStoreDB has no place to keep a key that
//     can really be deleted (its streams are append-only and scavenging is not overwriting), so
//     replicas on EventStoreDB must share such a key store: each with its own keys.db, a session
//     used through two replicas reads as erased on one, then as corrupt on both
//     (checkSharedKeyStore refuses a second embedded key store on a shared event store).
//
// Losing the keys loses every sealed content: the key store belongs in the deployment's backups.

// keysPath is the embedded key store's file in the data folder.
func keysPath(cfg config) string { return filepath.Join(cfg.DataDir, "keys", keysembedded.FileName) }

// keysOnPostgres says which PostgreSQL URL and schema hold the keys, if any: --keystore's, or by
// default the PostgreSQL event store's.
func keysOnPostgres(cfg config, raw eventstore.Store) (rawURL, schema string, ok bool) {
	switch {
	case isPostgres(cfg.KeyStore):
		schema = postgres.DefaultSchema
		if u, err := url.Parse(cfg.KeyStore); err == nil && u.Query().Get("schema") != "" {
			schema = u.Query().Get("schema")
		}
		return cfg.KeyStore, schema, true
	case cfg.KeyStore == "":
		if pg, isPG := raw.(*postgres.Store); isPG {
			return cfg.EventStore, pg.Schema(), true
		}
	}
	return "", "", false
}

// openKeys opens the key store that goes with the event store raw (as openStore returned it).
func openKeys(ctx context.Context, cfg config, raw eventstore.Store, log *slog.Logger) (keystore.Store, error) {
	if rawURL, schema, ok := keysOnPostgres(cfg, raw); ok {
		cctx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		ks, err := keyspostgres.OpenWith(cctx, rawURL, schema, keyspostgres.Options{Log: log, NoCache: cfg.KeyStoreNoCache})
		if err != nil {
			if rawURL == cfg.KeyStore {
				return nil, engine{name: "PostgreSQL key store", url: rawURL, instead: "point --keystore at a server that answers"}.failed(err)
			}
			return nil, engine{name: "PostgreSQL", url: rawURL, instead: "pass --eventstore embedded"}.failed(err)
		}
		return ks, nil
	}
	ks, err := keysembedded.Open(keysPath(cfg), keysembedded.WithLog(log))
	if err != nil {
		return nil, dataDirError(cfg.DataDir, filepath.Dir(keysPath(cfg)), err)
	}
	return ks, nil
}

// openKeysReadOnly is openKeys for the operator's read-only commands (replay): beside a running
// server, the embedded key store is read without its lock.
func openKeysReadOnly(ctx context.Context, cfg config, raw eventstore.Store, log *slog.Logger) (keystore.Store, error) {
	if _, _, ok := keysOnPostgres(cfg, raw); ok {
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
