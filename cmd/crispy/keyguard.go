package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/keystore"
	keysembedded "github.com/crispy-enigma/crispy/platform/keystore/embedded"
	"github.com/crispy-enigma/crispy/platform/sealing"
)

// keyGuardFlags are the flags of the commands that may create the embedded data key store.
func (f *flags) keyGuardFlags(c *config) {
	f.fs.BoolVar(&c.NewKeyStore, "new-key-store", false, "start an empty data key store although the event store holds sealed content (keys.db was lost): that content then reads as erased, for good")
}

// errFoundSealed stops the scan of checkKeyStore at the first sealed event.
var errFoundSealed = errors.New("found a sealed event")

// checkKeyStore refuses to let the embedded data key store be created empty beside an event store
// that already holds sealed content (keys/ not restored with the data folder, or --data-dir
// pointing elsewhere): every session and document would read as erased, search would drop every
// hit, and new keys made under old ids would turn the old content unreadable even once the real
// keys.db came back. Like a missing audit signing key, that takes the operator's word
// (--new-key-store). A data folder from before sealing, or with nothing sealed yet, starts as it
// did. Only the embedded key store is checked (wasMissing: its file was absent before openKeys
// created it); a PostgreSQL key store is a table a data folder cannot lose on its own.
func checkKeyStore(ctx context.Context, cfg config, raw eventstore.Store, keys keystore.Store, wasMissing bool) error {
	if cfg.NewKeyStore {
		return nil
	}
	found, err := sealedWithoutKeys(ctx, raw, keys, wasMissing)
	if err != nil || found == nil {
		return err
	}
	// Opening created an empty keys.db: remove it, or the next start would find a key store and
	// serve everything as erased without a word (the caller closes the store).
	if err := os.Remove(keysPath(cfg)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("data key store: remove the empty %s made at open: %w", keysPath(cfg), err)
	}
	return fmt.Errorf("data key store %s not found but the event store holds sealed content (tenant %s, %s): restore the keys folder from the backup that goes with this data folder (or point --data-dir at the right one), or pass --new-key-store to start an empty one (what was sealed so far then reads as erased, for good)",
		keysPath(cfg), found.Tenant, found.Stream)
}

// keysFileMissing says whether the embedded key store's file is absent (or empty) before it is
// opened (opening creates it).
func keysFileMissing(cfg config) bool {
	st, err := os.Stat(keysPath(cfg))
	return errors.Is(err, fs.ErrNotExist) || err == nil && st.Size() == 0
}

// rawScanner is an event store that can tell that no event's data holds some bytes without reading
// its events (the embedded store: embedded.Store.MayHold).
type rawScanner interface {
	MayHold(ctx context.Context, b []byte) (bool, error)
}

// firstSealed is the store's first sealed event (nil when none): a full scan when nothing is
// sealed, which happens only on a start whose key store is missing. The embedded store first says
// whether its log holds the bytes every sealed envelope begins with at all: when it does not,
// nothing is sealed, without a subscription over every event (a first start at a million events
// spent 3.6 s of CPU there before anything else ran); when it does, the events are read to find the
// first sealed one, as before.
func firstSealed(ctx context.Context, raw eventstore.Store) (*eventstore.Event, error) {
	last, err := raw.LastPosition(ctx)
	if err != nil || last == 0 {
		return nil, err
	}
	if rs, ok := raw.(rawScanner); ok {
		held, err := rs.MayHold(ctx, sealing.Marker())
		if err != nil || !held {
			return nil, err
		}
	}
	var found *eventstore.Event
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err = raw.Subscribe(sctx, eventstore.SubscribeOptions{CaughtUp: func(context.Context, eventstore.Position) error {
		cancel()
		return nil
	}}, func(_ context.Context, e eventstore.Event) error {
		if sealing.KeyID(e.Data) != "" {
			found = &e
			return errFoundSealed
		}
		return nil
	})
	switch {
	case found != nil:
		return found, nil
	case err != nil && !errors.Is(err, context.Canceled):
		return nil, err
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	return nil, nil
}

// sealedWithoutKeys is the first sealed event of a store whose embedded key store was missing when
// it was opened (nil when there is none, or the key store is not the embedded one or was there).
func sealedWithoutKeys(ctx context.Context, raw eventstore.Store, keys keystore.Store, wasMissing bool) (*eventstore.Event, error) {
	if _, embedded := keys.(*keysembedded.Store); !embedded || !wasMissing {
		return nil, nil
	}
	found, err := firstSealed(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("data key store: read the event store: %w", err)
	}
	return found, nil
}

// checkKeysForReading is checkKeyStore for the read-only commands (replay), which create no key
// store: without the keys every sealed event would be shown as erased, and exit 0.
func checkKeysForReading(ctx context.Context, cfg config, raw eventstore.Store, keys keystore.Store, wasMissing bool) error {
	found, err := sealedWithoutKeys(ctx, raw, keys, wasMissing)
	if err != nil || found == nil {
		return err
	}
	return fmt.Errorf("data key store %s not found but the event store holds sealed content (tenant %s, %s): restore the keys folder from the backup that goes with this data folder (or point --data-dir at the right one); without it every sealed event would read as erased",
		keysPath(cfg), found.Tenant, found.Stream)
}
