package auditlog

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"

	"github.com/crispy-enigma/crispy/platform/atomicfile"
)

// ProjectionName is the tree's durable projection name (its file is <ReadModelDir>/audit.merkle.db).
const ProjectionName = "audit.merkle"

// TypeSigningKeyCreated is recorded in each tenant's t-{tenant}.audit-key stream when the server
// was started with --new-audit-key over a store that had events: the history from then on is signed
// by another key, and that fact is itself in the log.
const TypeSigningKeyCreated = "audit.SigningKeyCreated"

// SigningKeyCreated is its data.
type SigningKeyCreated struct {
	KeyID     string `json:"keyId"`
	PublicKey string `json:"publicKey"`
	Reason    string `json:"reason"`
}

// Deps configure a Log.
type Deps struct {
	Key   ed25519.PrivateKey
	Store eventstore.Store
	// Dir keeps the latest checkpoint of each tenant (<data>/audit/checkpoints).
	Dir string
	// Interval is how often a tenant whose log grew gets a new signed checkpoint (default 30 s).
	Interval time.Duration
	Sinks    []Sink
	// WitnessRetry is the first wait before a checkpoint a witness did not take is pushed again
	// (doubling up to 5 minutes; default 5 s).
	WitnessRetry time.Duration
	// NewKey says the key was created by --new-audit-key over a store with events (or such a
	// rotation is still pending from an earlier start): Run records SigningKeyCreated in every
	// tenant's stream once the tree has caught up, retrying until every tenant's is recorded, and
	// then calls NewKeyRecorded (which clears the pending marker).
	NewKey         bool
	NewKeyRecorded func() error
	// MaxVerifications bounds the log verifications (Verify) running at once, one per tenant
	// at most (default 2): each recomputes a whole log on every core.
	MaxVerifications int
	Log              *slog.Logger
	Now              func() time.Time
}

// Log is the running audit log: the tree projection, the signer and the witness pushes.
type Log struct {
	d    Deps
	pub  ed25519.PublicKey
	proj *bus.Projection
	app  *appender

	mu     sync.Mutex
	latest map[tenant.ID]*Checkpoint
	wit    *witnesses
	verify *verifyLimiter
}

// New builds the log; Register adds its projection to the bus, Run signs and pushes.
func New(d Deps) (*Log, error) {
	if len(d.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("auditlog: an Ed25519 signing key is required")
	}
	if d.Store == nil || d.Dir == "" {
		return nil, errors.New("auditlog: a store and a checkpoint folder are required")
	}
	if d.Interval <= 0 {
		d.Interval = 30 * time.Second
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.WitnessRetry <= 0 {
		d.WitnessRetry = 5 * time.Second
	}
	if d.MaxVerifications <= 0 {
		d.MaxVerifications = 2
	}
	if err := os.MkdirAll(d.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("auditlog: checkpoint folder: %w", err)
	}
	return &Log{d: d, pub: d.Key.Public().(ed25519.PublicKey), app: newAppender(), latest: map[tenant.ID]*Checkpoint{},
		wit: newWitnesses(d.Sinks, d.WitnessRetry, d.Log), verify: newVerifyLimiter(d.MaxVerifications)}, nil
}

// Register adds the tree projection: every event of every tenant, in global order.
func (l *Log) Register(b bus.Consumers) {
	// Its own cursor: at about 4 µs of bbolt writes per event it is slower than the other read
	// models, and on the shared cursor it would pace them all while catching up (it needs no
	// decoded data, so reading the log again for it costs little).
	l.proj = b.Projection(ProjectionName, bus.ProjectionOptions{What: "audit log", Version: 1, OwnCursor: true})
	bus.ApplyAll(l.proj, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope) error {
		return l.app.Append(tx.Bucket(), env.Tenant, env.ID, uint64(env.Position), env.Hash)
	})
}

// Projection is the tree's projection (for readiness and tests).
func (l *Log) Projection() *bus.Projection { return l.proj }

// PublicKey is the signing key's public half.
func (l *Log) PublicKey() ed25519.PublicKey { return l.pub }

// ErrEmpty is returned for a tenant whose log has no events.
var ErrEmpty = errors.New("the tenant's audit log has no events")

// Checkpoint is t's latest checkpoint, signed afresh when the log grew since.
func (l *Log) Checkpoint(ctx context.Context, t tenant.ID) (Checkpoint, error) {
	var size uint64
	if err := l.proj.View(ctx, func(tx *readmodel.Tx) error { size = Size(tx.Bucket(), t); return nil }); err != nil {
		return Checkpoint{}, err
	}
	if size == 0 {
		return Checkpoint{}, ErrEmpty
	}
	if c := l.kept(t); c != nil && c.Size == size {
		return *c, nil
	}
	return l.sign(ctx, t)
}

// Latest is t's latest kept checkpoint without signing (nil: none yet).
func (l *Log) Latest(t tenant.ID) *Checkpoint { return l.kept(t) }

func (l *Log) path(t tenant.ID) string { return filepath.Join(l.d.Dir, t.String()+".json") }

func (l *Log) kept(t tenant.ID) *Checkpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.latest[t]; ok {
		return c
	}
	c, err := ReadCheckpointFile(l.path(t))
	if err != nil {
		c = nil // none yet, or unreadable: the next signature replaces it
	}
	l.latest[t] = c
	return c
}

// ReadCheckpointFile reads a checkpoint kept as JSON.
func ReadCheckpointFile(path string) (*Checkpoint, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Checkpoint
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return &c, nil
}

// sign signs t's log at the tree's current size, keeps it and queues it for the witnesses.
func (l *Log) sign(ctx context.Context, t tenant.ID) (Checkpoint, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var size uint64
	var root, atKept []byte
	prev := l.latest[t]
	err := l.proj.View(ctx, func(tx *readmodel.Tx) error {
		tr := Open(tx.Bucket(), t)
		size = tr.Size()
		var err error
		if root, err = tr.Root(size); err != nil {
			return err
		}
		if prev != nil && prev.Size <= size {
			atKept, err = tr.Root(prev.Size)
		}
		return err
	})
	if err != nil {
		return Checkpoint{}, err
	}
	if size == 0 {
		return Checkpoint{}, ErrEmpty
	}
	if prev != nil && prev.KeyID == KeyID(l.pub) {
		// Never sign a log that does not extend the last checkpoint signed: a store rolled back or
		// rewritten under the server would otherwise get a fresh signature over the change.
		if size < prev.Size || b64(atKept) != prev.RootHash {
			l.d.Log.Error("audit: the log no longer extends the last signed checkpoint; not signing", "tenant", t.String(),
				"checkpointSize", prev.Size, "logSize", size)
			return Checkpoint{}, fmt.Errorf("%w: the tenant's log (%d events) does not extend its last signed checkpoint (%d events); run crispy verify --checkpoint with it", ErrInconsistent, size, prev.Size)
		}
		if prev.Size == size {
			return *prev, nil
		}
	}
	c := Sign(l.d.Key, t, size, root, l.d.Now())
	if err := writeFileAtomic(l.path(t), c); err != nil {
		return Checkpoint{}, err
	}
	l.latest[t] = &c
	l.wit.offer(c)
	return c, nil
}

func writeFileAtomic(path string, c Checkpoint) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	// Durable before it is pushed: the kept checkpoint is what the server refuses to sign a
	// non-extending log against, so a power cut must not leave an empty or older file behind.
	if err := atomicfile.Write(path, append(b, '\n'), 0o640); err != nil {
		return fmt.Errorf("keep checkpoint: %w", err)
	}
	return nil
}

// SignChanged signs a checkpoint for every tenant whose log grew since its latest (what Run does
// every Interval).
func (l *Log) SignChanged(ctx context.Context) error {
	var sizes map[tenant.ID]uint64
	if err := l.proj.View(ctx, func(tx *readmodel.Tx) error {
		var err error
		sizes, err = Tenants(tx.Bucket())
		return err
	}); err != nil {
		return err
	}
	var errs []error
	for t, size := range sizes {
		if c := l.kept(t); c != nil && c.Size == size || size == 0 {
			continue
		}
		if _, err := l.sign(ctx, t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run signs changed tenants every Interval, pushes checkpoints to the witnesses, and (after
// --new-audit-key) records the new key in every tenant's stream, until ctx ends.
func (l *Log) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.wit.run(ctx)
	}()
	defer wg.Wait()
	if err := l.proj.WaitCaughtUp(ctx); err != nil {
		// The projection stops when the bus does; the bus's own error names the cause (and the
		// fix), so give it the time to end the run first rather than race it with this one.
		t := time.NewTimer(5 * time.Second)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		return err
	}
	keyPending := l.d.NewKey
	tick := time.NewTicker(l.d.Interval)
	defer tick.Stop()
	for {
		if keyPending {
			// Before signing with the new key: the change of key is itself in every tenant's log.
			// Idempotent (a tenant whose stream records this key already is skipped), so a failed
			// append or a stop midway is finished by the next try or the next start.
			if err := l.recordNewKey(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				l.d.Log.Error("audit: could not record the new signing key in every tenant's stream; retrying", "err", err)
			} else {
				keyPending = false
				if l.d.NewKeyRecorded != nil {
					if err := l.d.NewKeyRecorded(); err != nil {
						l.d.Log.Warn("audit: the new signing key is recorded, but its pending marker could not be removed (the next start checks again)", "err", err)
					}
				}
			}
		}
		if err := l.SignChanged(ctx); err != nil && ctx.Err() == nil {
			l.d.Log.Warn("audit: signing checkpoints", "err", err)
		}
		var retry <-chan time.Time
		if keyPending {
			retry = time.After(min(l.d.WitnessRetry, l.d.Interval))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-retry:
		}
	}
}

// recordNewKey appends SigningKeyCreated to every tenant's audit-key stream that does not end with
// this key's record yet (so a retry, or a restart while the rotation is still pending, completes it).
func (l *Log) recordNewKey(ctx context.Context) error {
	var sizes map[tenant.ID]uint64
	if err := l.proj.View(ctx, func(tx *readmodel.Tx) error {
		var err error
		sizes, err = Tenants(tx.Bucket())
		return err
	}); err != nil {
		return err
	}
	desc := Describe(l.pub)
	var errs []error
	for t := range sizes {
		st := tenant.MustStream(t, "audit-key", "")
		evs, err := l.d.Store.ReadStream(ctx, st, 0, 0)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if n := len(evs); n > 0 {
			var last SigningKeyCreated
			if evs[n-1].Decode(&last) == nil && last.KeyID == desc.KeyID {
				continue
			}
		}
		ed, err := eventstore.NewEventData(TypeSigningKeyCreated, SigningKeyCreated{KeyID: desc.KeyID, PublicKey: desc.PublicKey,
			Reason: "the server was started with --new-audit-key: checkpoints from here on are signed by this key"})
		if err != nil {
			return err
		}
		ed.Actor = "system:audit"
		if _, err := l.d.Store.Append(ctx, st, eventstore.Any, ed); err != nil {
			errs = append(errs, fmt.Errorf("record the new key for %s: %w", t, err))
		}
	}
	return errors.Join(errs...)
}

// InclusionProof shows that one event is in a tenant's log of TreeSize events whose root is
// RootHash (the Checkpoint's, when one is given).
type InclusionProof struct {
	Tenant     string      `json:"tenant"`
	EventID    string      `json:"eventId"`
	Position   uint64      `json:"position" doc:"The event's store position"`
	LeafIndex  uint64      `json:"leafIndex" doc:"0-based place of the event in the tenant's log"`
	TreeSize   uint64      `json:"treeSize"`
	EventHash  string      `json:"eventHash" doc:"The event's stored hash (hex); the leaf is RFC 6962 SHA-256(0x00 || its 32 bytes)"`
	LeafHash   string      `json:"leafHash" doc:"base64"`
	RootHash   string      `json:"rootHash" doc:"Root of the first treeSize events, base64"`
	Proof      []string    `json:"proof" doc:"RFC 6962 inclusion proof, base64 hashes, leaf to root"`
	Checkpoint *Checkpoint `json:"checkpoint,omitempty" doc:"The signed checkpoint of treeSize, when the proof is against the latest"`
}

// Prove is the inclusion proof of t's event id against the checkpoint of size (0: the latest,
// signed afresh when the log grew).
func (l *Log) Prove(ctx context.Context, t tenant.ID, id string, size uint64) (InclusionProof, error) {
	var cp *Checkpoint
	if size == 0 {
		c, err := l.Checkpoint(ctx, t)
		if err != nil {
			return InclusionProof{}, err
		}
		cp, size = &c, c.Size
	}
	out := InclusionProof{Tenant: t.String(), EventID: id, TreeSize: size, Checkpoint: cp}
	err := l.proj.View(ctx, func(tx *readmodel.Tx) error {
		tr := Open(tx.Bucket(), t)
		idx, pos, err := tr.Locate(id)
		if err != nil {
			return err
		}
		if size > tr.Size() {
			return fmt.Errorf("%w: the log holds %d events, not %d", ErrBeyondLog, tr.Size(), size)
		}
		if idx >= size {
			return fmt.Errorf("%w: the event is entry %d, after the checkpoint's %d events", ErrNotInTree, idx, size)
		}
		leaf, err := tr.Leaf(idx)
		if err != nil {
			return err
		}
		root, err := tr.Root(size)
		if err != nil {
			return err
		}
		p, err := tr.Inclusion(idx, size)
		if err != nil {
			return err
		}
		out.LeafIndex, out.Position, out.LeafHash, out.RootHash = idx, pos, b64(leaf), b64(root)
		out.Proof = make([]string, len(p))
		for i, h := range p {
			out.Proof[i] = b64(h)
		}
		return nil
	})
	if err != nil {
		return InclusionProof{}, err
	}
	return out, nil
}

// ErrInconsistent is a log that no longer extends the last checkpoint the server signed.
var ErrInconsistent = errors.New("audit log inconsistent with its last checkpoint")

// ErrBeyondLog is a checkpoint size larger than the log.
var ErrBeyondLog = errors.New("size beyond the audit log")

// Verify checks the store against cp with this server's key and stored tree. It refuses at once
// (ErrVerifyRunning, ErrVerifyBusy) rather than queue when t's log is being verified already or
// the server runs Deps.MaxVerifications verifications.
func (l *Log) Verify(ctx context.Context, t tenant.ID, cp Checkpoint, progress func(uint64)) (Report, error) {
	release, err := l.verify.acquire(t)
	if err != nil {
		return Report{}, err
	}
	defer release()
	return Verify(ctx, l.d.Store, VerifyOptions{Checkpoint: cp, PublicKey: l.pub, Tenant: t, Now: l.d.Now(), Progress: progress,
		Tree: func() (StoredTree, error) { return &viewTree{l: l, t: t, ctx: ctx}, nil }})
}

// viewTree reads the stored tree, a read transaction per call (no long transaction holds the file).
type viewTree struct {
	l   *Log
	t   tenant.ID
	ctx context.Context
}

func (v *viewTree) do(fn func(Tree) error) error {
	return v.l.proj.View(v.ctx, func(tx *readmodel.Tx) error { return fn(Open(tx.Bucket(), v.t)) })
}

func (v *viewTree) Size() uint64 {
	var n uint64
	_ = v.do(func(tr Tree) error { n = tr.Size(); return nil })
	return n
}

func (v *viewTree) Root(size uint64) (r []byte, err error) {
	err = v.do(func(tr Tree) error { r, err = tr.Root(size); return err })
	return r, err
}

func (v *viewTree) Leaf(i uint64) (r []byte, err error) {
	err = v.do(func(tr Tree) error { r, err = tr.Leaf(i); return err })
	return r, err
}

func (v *viewTree) Consistency(a, b uint64) (p [][]byte, err error) {
	err = v.do(func(tr Tree) error { p, err = tr.Consistency(a, b); return err })
	return p, err
}

// FileTree opens the tree projection's file read-only (crispy verify beside or without a server).
// It fails at once when a running server holds the file; the caller then verifies without it.
func FileTree(path string, t tenant.ID) (StoredTree, func(), error) {
	db, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true, Timeout: 200 * time.Millisecond})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, func() {}, fmt.Errorf("the stored audit tree %s is held by a running server (POST /audit/verify names the place; or stop the server)", path)
	}
	if err != nil {
		return nil, func() {}, fmt.Errorf("open the stored audit tree %s: %w", path, err)
	}
	tx, err := db.Begin(false)
	if err != nil {
		_ = db.Close()
		return nil, func() {}, err
	}
	closer := func() { _ = tx.Rollback(); _ = db.Close() }
	state := tx.Bucket([]byte("state"))
	if state == nil {
		closer()
		return nil, func() {}, fmt.Errorf("%s holds no audit tree", path)
	}
	tr := Open(state, t)
	return tr, closer, nil
}

// leafHex is for messages.
func leafHex(b []byte) string { return hex.EncodeToString(b) }
