// Package readmodel keeps one checkpointed read model in an embedded bbolt file: the model's state
// and the store position it reflects, written in the same transaction, so a start resumes exactly
// where the last commit left off and an event is never applied twice or lost.
//
// Why bbolt (go.etcd.io/bbolt): read models are small, read-mostly and written in batches; a
// single-file B+tree with ACID transactions and MVCC readers does that with the fewest moving parts.
// An LSM engine (Pebble) writes faster, but read models do not need it, and it brings compaction,
// a folder of files and background goroutines.
//
// Layout: one file per read model (<dir>/<name>.db). bbolt has one writer per file, and the bus
// holds a read model's write transaction open across a batch of events: one file each lets read
// models apply the same events in parallel, and a damaged file costs the rebuild of one read model.
// In the file, bucket "meta" holds the position and the state's format version, and bucket "state"
// is the model's own, reached through Tx.Bucket.
//
// Durability: every commit is fsync'd (bbolt's default, fdatasync). Commits are batched by the
// caller (the bus commits a projection every few thousand events while it catches up, and at the end
// of every forwarded batch once live, so a busy store gets bigger batches, not more fsyncs). A
// crash loses at most what was not committed, which the projection applies again from its
// checkpoint.
//
// Faults: a missing file starts empty (position 0: the caller builds the model from the start of
// the store). A file bbolt cannot read as a database (torn, overwritten, another format) is moved
// aside to <name>.db.corrupt-<unix seconds> and started afresh, with a log line saying so: the state
// is derived from the store, so rebuilding it is always possible and never wrong. A state written
// by another format Version is emptied, for the same reason. A file another process holds is an
// error (two processes must not feed one read model).
package readmodel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// ErrCorrupt marks a read model file that could not be read back as written.
var ErrCorrupt = errors.New("read model file is corrupt")

var (
	metaBucket  = []byte("meta")
	stateBucket = []byte("state")
	keyPosition = []byte("position")
	keyVersion  = []byte("version")
)

// lockTimeout bounds the wait for the file lock: a second process on the same data folder is told
// at once, not left hanging.
const lockTimeout = time.Second

// Options configure Open.
type Options struct {
	// Version is the format of the state the caller writes. A file holding another version is
	// emptied (position 0), so a changed projection rebuilds from zero on its next start.
	Version uint64
	// Log receives the lines saying that a file was rebuilt and why (nil: discarded).
	Log *slog.Logger
}

// Store is one read model's file.
type Store struct {
	db      *bolt.DB
	path    string
	pos     atomic.Uint64 // committed position
	rebuilt string
}

// Open opens (creating) the read model file at path. See the package doc for what happens to a
// missing, corrupt or older file.
func Open(path string, o Options) (*Store, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("read model folder: %w", err)
	}
	_, statErr := os.Stat(path)
	fresh := errors.Is(statErr, os.ErrNotExist)
	db, err := openBolt(path)
	if err != nil && isCorrupt(err) {
		aside := fmt.Sprintf("%s.corrupt-%d", path, time.Now().Unix())
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, fmt.Errorf("read model %s is unreadable (%v) and cannot be moved aside: %w", path, err, rerr)
		}
		o.Log.Warn("read model file is unreadable: moved aside, rebuilding it from the start of the store",
			"file", path, "movedTo", aside, "err", err)
		db, err = openBolt(path)
		fresh = true
	}
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("read model %s is in use by another process (one process per data folder)", path)
		}
		return nil, fmt.Errorf("open read model %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	if fresh {
		s.rebuilt = "new file"
	}
	if err := s.prepare(o); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

func openBolt(path string) (db *bolt.DB, err error) {
	defer func() {
		// bbolt trusts what it maps; a damaged file can make it panic rather than fail.
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	return bolt.Open(path, 0o640, &bolt.Options{Timeout: lockTimeout, FreelistType: bolt.FreelistMapType})
}

// isCorrupt tells a file bbolt cannot read as a database from a folder that cannot be used (which
// must be reported, not rebuilt over).
func isCorrupt(err error) bool {
	switch {
	case errors.Is(err, ErrCorrupt), errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum),
		errors.Is(err, bolterrors.ErrVersionMismatch), errors.Is(err, bolterrors.ErrInvalidMapping):
		return true
	case errors.Is(err, bolterrors.ErrTimeout):
		return false
	}
	var errno syscall.Errno
	var perr *os.PathError
	// Anything that is not the operating system refusing (permissions, a full or read-only disk)
	// is bbolt finding the file's content wrong (too small, bad meta pages).
	return !errors.As(err, &errno) && !errors.As(err, &perr)
}

// prepare makes sure both buckets exist, reads the position, and empties a state written by
// another version (or whose meta is unreadable).
func (s *Store) prepare(o Options) error {
	return s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		state := tx.Bucket(stateBucket)
		reason := ""
		var pos uint64
		switch {
		case meta == nil && state == nil:
			// a new file
		case meta == nil:
			reason = "its checkpoint is missing"
		default:
			p, v := meta.Get(keyPosition), meta.Get(keyVersion)
			switch {
			case len(p) != 8 || len(v) != 8:
				reason = "its checkpoint is unreadable"
			case binary.BigEndian.Uint64(v) != o.Version:
				reason = fmt.Sprintf("its format changed (version %d, now %d)", binary.BigEndian.Uint64(v), o.Version)
			default:
				pos = binary.BigEndian.Uint64(p)
			}
		}
		if reason != "" {
			o.Log.Warn("read model emptied: rebuilding it from the start of the store", "file", s.path, "why", reason)
			s.rebuilt = reason
		}
		if reason != "" || meta == nil {
			return resetTx(tx, o.Version)
		}
		if state == nil {
			if _, err := tx.CreateBucket(stateBucket); err != nil {
				return err
			}
		}
		s.pos.Store(pos)
		return nil
	})
}

func resetTx(tx *bolt.Tx, version uint64) error {
	for _, name := range [][]byte{metaBucket, stateBucket} {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
	}
	meta, err := tx.CreateBucket(metaBucket)
	if err != nil {
		return err
	}
	if _, err := tx.CreateBucket(stateBucket); err != nil {
		return err
	}
	if err := meta.Put(keyPosition, u64(0)); err != nil {
		return err
	}
	return meta.Put(keyVersion, u64(version))
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// Path is the file's path.
func (s *Store) Path() string { return s.path }

// Position is the committed position: every event up to it is reflected in the state.
func (s *Store) Position() eventstore.Position { return eventstore.Position(s.pos.Load()) }

// Rebuilt says why the state starts empty ("new file", "its format changed …"), or "" when it
// resumes from a checkpoint.
func (s *Store) Rebuilt() string { return s.rebuilt }

// View runs fn in a read transaction: a consistent snapshot of a committed state and its position.
func (s *Store) View(fn func(tx *Tx) error) (err error) {
	defer recoverPanic(&err)
	return s.db.View(func(btx *bolt.Tx) error {
		return fn(wrap(btx))
	})
}

// Update runs fn in a write transaction and commits it (fsync'd) unless fn fails.
func (s *Store) Update(fn func(tx *Tx) error) error {
	tx, err := s.Begin()
	if err != nil {
		return err
	}
	if err := tx.run(fn); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (s *Store) update(fn func(tx *bolt.Tx) error) (err error) {
	defer recoverPanic(&err)
	return s.db.Update(fn)
}

// Begin starts a write transaction that the caller ends with Commit or Rollback; the bus uses it
// to apply a batch of events in one commit. Only one is open at a time: a second Begin waits.
func (s *Store) Begin() (_ *Tx, err error) {
	defer recoverPanic(&err)
	btx, err := s.db.Begin(true)
	if err != nil {
		return nil, fmt.Errorf("read model %s: begin: %w", s.path, err)
	}
	tx := wrap(btx)
	tx.s = s
	return tx, nil
}

// Reset empties the state and sets the position to 0 (a rebuild from the start of the store).
func (s *Store) Reset(version uint64) error {
	err := s.update(func(tx *bolt.Tx) error { return resetTx(tx, version) })
	if err == nil {
		s.pos.Store(0)
	}
	return err
}

// Close closes the file; transactions in progress must have ended.
func (s *Store) Close() error { return s.db.Close() }

// Tx is a read or write transaction on the model: its state bucket and its position.
type Tx struct {
	tx     *bolt.Tx
	s      *Store // set on write transactions
	state  *bolt.Bucket
	meta   *bolt.Bucket
	newPos uint64
	moved  bool
	// deferred: what handlers keep in memory until the commit (Deferred), in the order first asked.
	deferred     []Deferred
	deferredKeys map[any]Deferred
}

// Deferred is state a write transaction's handlers keep in memory and write to the bucket once, at
// the end of the transaction: Commit calls Flush before it commits. A transaction rolled back drops
// it unwritten, with the rest of its writes.
type Deferred interface {
	Flush(tx *Tx) error
}

// Deferred returns the transaction's Deferred under key, made by mk when first asked for. It is for
// state many events of one transaction change in turn (a session's row, changed by each of its
// messages): written once per transaction instead of once per event. Whatever reads that state in
// the same transaction must read it through the Deferred, which holds the newest version. Write
// transactions only; not safe for concurrent use.
func (t *Tx) Deferred(key any, mk func() Deferred) Deferred {
	if d, ok := t.deferredKeys[key]; ok {
		return d
	}
	if t.deferredKeys == nil {
		t.deferredKeys = map[any]Deferred{}
	}
	d := mk()
	t.deferredKeys[key] = d
	t.deferred = append(t.deferred, d)
	return d
}

// flush writes the deferred state (Commit, before the commit).
func (t *Tx) flush() error {
	for _, d := range t.deferred {
		if err := d.Flush(t); err != nil {
			return err
		}
	}
	t.deferred, t.deferredKeys = nil, nil
	return nil
}

func wrap(btx *bolt.Tx) *Tx {
	return &Tx{tx: btx, state: btx.Bucket(stateBucket), meta: btx.Bucket(metaBucket)}
}

// Bucket is the model's state: keys and values (and nested buckets) are the model's own. It is
// valid until the transaction ends; a byte slice read from it too (copy what you keep).
func (t *Tx) Bucket() *bolt.Bucket { return t.state }

// Position is the position the state reflects in this transaction.
func (t *Tx) Position() eventstore.Position {
	if t.moved {
		return eventstore.Position(t.newPos)
	}
	if p := t.meta.Get(keyPosition); len(p) == 8 {
		return eventstore.Position(binary.BigEndian.Uint64(p))
	}
	return 0
}

// SetPosition records that the state now reflects every event up to p. It never moves back.
func (t *Tx) SetPosition(p eventstore.Position) error {
	if cur := t.Position(); p < cur {
		return fmt.Errorf("read model position would move back from %d to %d", cur, p)
	}
	if err := t.meta.Put(keyPosition, u64(uint64(p))); err != nil {
		return err
	}
	t.newPos, t.moved = uint64(p), true
	return nil
}

// Commit writes the transaction (fsync'd).
func (t *Tx) Commit() (err error) {
	defer recoverPanic(&err)
	if err := t.flush(); err != nil {
		_ = t.tx.Rollback() // nothing of the transaction is written
		return fmt.Errorf("read model %s: write deferred state: %w", t.s.path, err)
	}
	if err := t.tx.Commit(); err != nil {
		return fmt.Errorf("read model %s: commit: %w", t.s.path, err)
	}
	if t.moved {
		t.s.pos.Store(t.newPos)
	}
	return nil
}

// Rollback drops the transaction's writes.
func (t *Tx) Rollback() error {
	err := t.tx.Rollback()
	if errors.Is(err, bolterrors.ErrTxClosed) {
		return nil
	}
	return err
}

// run calls fn with panics turned into errors: a handler bug must not end the process.
func (t *Tx) run(fn func(*Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in read model transaction: %v", r)
		}
	}()
	return fn(t)
}

// recoverPanic turns a panic (bbolt reading a damaged page, or a bug in fn) into an error: a read
// model must never take the process down.
func recoverPanic(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("read model: panic: %v", r)
	}
}
