package auditlog

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/merkle/proof"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Fault names the first place where the store no longer holds what a checkpoint committed to.
type Fault struct {
	// LeafIndex is the 0-based place in the tenant's log (its events in global order); absent when it
	// cannot be told (the stored tree no longer matches the checkpoint either).
	LeafIndex *uint64 `json:"leafIndex,omitempty" doc:"0-based place in the tenant's log of the first event at fault, when it can be told"`
	EventID   string  `json:"eventId,omitempty" doc:"The event now at that place, if any"`
	Stream    string  `json:"stream,omitempty"`
	Revision  *uint64 `json:"revision,omitempty"`
	Position  uint64  `json:"position,omitempty" doc:"The store position of the event now at that place"`
	Reason    string  `json:"reason"`
}

func (f *Fault) String() string {
	at := "position unknown"
	if f.LeafIndex != nil {
		at = fmt.Sprintf("log entry %d", *f.LeafIndex)
		if f.EventID != "" {
			at += fmt.Sprintf(" (event %s, %s@%d, store position %d)", f.EventID, f.Stream, *f.Revision, f.Position)
		}
	}
	return at + ": " + f.Reason
}

// Report is the outcome of Verify.
type Report struct {
	OK             bool   `json:"ok"`
	Tenant         string `json:"tenant"`
	CheckpointSize uint64 `json:"checkpointSize" doc:"Events the checkpoint committed to"`
	StoreSize      uint64 `json:"storeSize" doc:"Events of the tenant the store holds now"`
	EventsChecked  uint64 `json:"eventsChecked"`
	RootHash       string `json:"rootHash,omitempty" doc:"Root recomputed from the stored events at the checkpoint's size, base64"`
	StoreRootHash  string `json:"storeRootHash,omitempty" doc:"Root recomputed over every stored event, base64"`
	// ConsistencyProof proves that the tree of StoreSize extends the checkpoint's (RFC 6962); given
	// when verification succeeds and the stored tree agrees with the recomputed one.
	ConsistencyProof []string `json:"consistencyProof,omitempty" doc:"RFC 6962 consistency proof from checkpointSize to storeSize, base64 hashes"`
	Fault            *Fault   `json:"fault,omitempty"`
}

// StoredTree is what Verify may consult to name the first position at fault and to give a
// consistency proof: the projection's tree of the tenant (nil: none).
type StoredTree interface {
	Size() uint64
	Root(size uint64) ([]byte, error)
	Leaf(index uint64) ([]byte, error)
	Consistency(size1, size2 uint64) ([][]byte, error)
}

// VerifyOptions are Verify's inputs besides the store.
type VerifyOptions struct {
	Checkpoint Checkpoint
	PublicKey  ed25519.PublicKey
	Tenant     tenant.ID
	Now        time.Time
	// Tree, when set, is the stored tree (see StoredTree).
	Tree func() (StoredTree, error)
	// Progress, when set, gets the count checked so far every ProgressEvery events.
	Progress func(n uint64)
}

// ProgressEvery is how many events pass between progress callbacks.
const ProgressEvery = 10000

// Verify checks that the store holds exactly the log cp committed to, plus only appends: it checks
// the checkpoint (signature, tenant, time: an error wrapping ErrBadCheckpoint), then recomputes
// every event's hash from its stored bytes, the per-stream links, and the RFC 6962 tree of the
// tenant's events in global order, and compares the root at the checkpoint's size. A store that no
// longer matches is Report{OK: false, Fault}; an error is a store that could not be read.
func Verify(ctx context.Context, s eventstore.Store, o VerifyOptions) (Report, error) {
	cp := o.Checkpoint
	if err := cp.Check(o.PublicKey, o.Tenant, o.Now); err != nil {
		return Report{}, err
	}
	want, _ := cp.Root()
	rep := Report{Tenant: o.Tenant.String(), CheckpointSize: cp.Size}
	n := cp.Size
	// One pass folds every leaf into a running root (a hash per level, not a hash per event); the
	// leaves are not kept: only when the root differs does a second pass compare them with the
	// stored tree's to name the first one at fault (see locate).
	var r folder
	var atN []byte
	if n == 0 {
		atN = Hasher.EmptyRoot()
	}
	var firstChain *Fault
	err := scan(ctx, s, o.Tenant, func(e *eventstore.Event, leaf *[32]byte, chainErr string) error {
		idx := rep.EventsChecked
		if chainErr != "" && firstChain == nil {
			firstChain = faultAt(idx, e, "hash chain: "+chainErr)
		}
		r.append(leaf)
		rep.EventsChecked++
		if rep.EventsChecked == n {
			atN = r.root()
		}
		if o.Progress != nil && rep.EventsChecked%ProgressEvery == 0 {
			o.Progress(rep.EventsChecked)
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("verify %s against checkpoint %d: %w", o.Tenant, cp.Size, err)
	}
	if o.Progress != nil {
		o.Progress(rep.EventsChecked)
	}
	rep.StoreSize = rep.EventsChecked
	if rep.StoreSize > 0 {
		rep.StoreRootHash = b64(r.root())
	}
	if atN != nil {
		rep.RootHash = b64(atN)
	}
	var stored StoredTree
	var treeErr error
	if o.Tree != nil {
		// The stored tree is only a help: without it the fault has no place, and no more.
		if stored, treeErr = o.Tree(); treeErr != nil {
			stored = nil
		}
	}
	switch {
	case rep.StoreSize < n:
		rep.Fault = locate(ctx, s, o.Tenant, stored, treeErr, want, n, rep.StoreSize,
			fmt.Sprintf("the store holds %d events of the tenant, the checkpoint committed to %d: events were removed, or the data folder was rolled back to an older copy", rep.StoreSize, n))
	case !bytes.Equal(atN, want):
		rep.Fault = locate(ctx, s, o.Tenant, stored, treeErr, want, n, rep.StoreSize,
			"the stored events do not hash to the checkpoint's root: an event before the checkpoint was forged, edited, removed, inserted or reordered")
	}
	if firstChain != nil && (rep.Fault == nil || rep.Fault.LeafIndex == nil || *firstChain.LeafIndex <= *rep.Fault.LeafIndex) {
		rep.Fault = firstChain
	}
	if rep.Fault != nil {
		return rep, nil
	}
	rep.OK = true
	if stored != nil && stored.Size() >= rep.StoreSize {
		if sr, err := stored.Root(rep.StoreSize); err == nil && b64(sr) == rep.StoreRootHash {
			if p, err := stored.Consistency(n, rep.StoreSize); err == nil {
				full, _ := base64.StdEncoding.DecodeString(rep.StoreRootHash)
				if proof.VerifyConsistency(Hasher, n, rep.StoreSize, p, want, full) == nil {
					for _, h := range p {
						rep.ConsistencyProof = append(rep.ConsistencyProof, b64(h))
					}
				}
			}
		}
	}
	return rep, nil
}

// locate names the first leaf at fault: when the stored tree still has the checkpoint's root at its
// size, its leaves are what the checkpoint committed to, and the first recomputed leaf that differs
// (or the first missing one) is the place. The leaves are recomputed by a second read of the store
// (verification keeps none, so its memory does not grow with the log); the first pass found the
// store holding storeSize events.
func locate(ctx context.Context, s eventstore.Store, t tenant.ID, stored StoredTree, treeErr error, want []byte, n, storeSize uint64, reason string) *Fault {
	f := &Fault{Reason: reason}
	if treeErr != nil {
		f.Reason += fmt.Sprintf(" (the first position at fault cannot be told: %v)", treeErr)
		return f
	}
	if stored == nil || stored.Size() < n {
		f.Reason += " (the first position at fault cannot be told: the stored audit tree does not reach the checkpoint)"
		return f
	}
	if root, err := stored.Root(n); err != nil || !bytes.Equal(root, want) {
		f.Reason += " (the first position at fault cannot be told: the stored audit tree was rebuilt from the altered store)"
		return f
	}
	have := min(storeSize, n)
	var i uint64
	found, unreadable := false, false
	err := scan(ctx, s, t, func(e *eventstore.Event, leaf *[32]byte, _ string) error {
		if i >= n {
			return errStop
		}
		orig, err := stored.Leaf(i)
		if err != nil {
			unreadable = true
			return errStop
		}
		if !bytes.Equal(orig, leaf[:]) {
			found = true
			f.LeafIndex = &i
			f.Reason = "not the event the checkpoint committed to there (forged, edited, inserted, removed or reordered)"
			if have < n {
				f.Reason += fmt.Sprintf("; the store holds %d of the checkpoint's %d events", have, n)
			}
			rev := e.Revision
			f.EventID, f.Stream, f.Revision, f.Position = e.ID, e.Stream, &rev, uint64(e.Position)
			return errStop
		}
		i++
		return nil
	})
	if found || unreadable || err != nil || i >= n {
		return f
	}
	// Every leaf the store still has matches: the first missing one is the place.
	if _, err := stored.Leaf(i); err != nil {
		return f
	}
	f.LeafIndex = &i
	f.Reason = fmt.Sprintf("missing: the store holds %d events of the tenant, the checkpoint committed to %d (events removed, or the data folder rolled back)", i, n)
	return f
}

func faultAt(idx uint64, e *eventstore.Event, reason string) *Fault {
	i, rev := idx, e.Revision
	return &Fault{LeafIndex: &i, EventID: e.ID, Stream: e.Stream, Revision: &rev, Position: uint64(e.Position), Reason: reason}
}

var errStop = errors.New("stop")

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// pageSize bounds one store read; a few pages are in flight at once (read, hashed, folded), so it
// also bounds verification's memory, whatever the log's size.
const pageSize = 4096

// page is one store read on its way through scan's pipeline: read, then hashed, then folded.
type page struct {
	events []eventstore.Event
	leaves [][32]byte // filled by the hashing stage
	errs   []string   // what is wrong with each event's own hash ("" when nothing)
	err    error
}

// eachPage sends t's events in global order to out, a page at a time, reading ahead while the
// receiver works, and closes out at the end (or at the first error, which ends the last page).
func eachPage(ctx context.Context, s eventstore.Store, t tenant.ID, out chan<- *page) {
	defer close(out)
	next := eventstore.Start
	for {
		evs, err := s.ReadTenant(ctx, t, next, pageSize)
		if err != nil {
			err = fmt.Errorf("read events of %s from %d: %w", t, next, err)
		}
		select {
		case out <- &page{events: evs, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil || len(evs) < pageSize {
			return
		}
		next = evs[len(evs)-1].Position + 1
	}
}

// Compute reads t's events and returns the size and RFC 6962 root of its log, after checking every
// event's hash and its stream's links (a broken chain is an error: never sign over one).
func Compute(ctx context.Context, s eventstore.Store, t tenant.ID) (uint64, []byte, error) {
	var r folder
	err := scan(ctx, s, t, func(e *eventstore.Event, leaf *[32]byte, chainErr string) error {
		if chainErr != "" {
			return &eventstore.ChainError{EventID: e.ID, Stream: e.Stream, Revision: e.Revision, Reason: chainErr}
		}
		r.append(leaf)
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("audit log of %s: %w", t, err)
	}
	if r.size == 0 {
		return 0, Hasher.EmptyRoot(), nil
	}
	return r.size, r.root(), nil
}

// scan reads t's events in global order and calls fn with each, its leaf hash and what is wrong
// with its hash chain ("" when nothing): the event's own hash recomputed from its stored bytes, its
// revision and its link to its stream's previous event. fn must not keep leaf or e past its call.
// Reading, hashing and folding are a pipeline: the store reads the next page while the previous one
// is hashed on every core, a page at a time, and the one before that goes through fn in order on
// the calling goroutine. A stream's first event may follow truncated ones (its prev is then taken on
// trust, as eventstore.ChainVerifier does). The per-stream state is the last revision and hash of
// each stream: memory grows with the number of streams, not of events.
func scan(ctx context.Context, s eventstore.Store, t tenant.ID, fn func(e *eventstore.Event, leaf *[32]byte, chainErr string) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	read := make(chan *page, 1)
	hashed := make(chan *page, 1)
	go eachPage(ctx, s, t, read)
	go hashPages(ctx, read, hashed)

	// A stream's last revision and hash, the hash's text held in the value itself: the event's hash
	// string shares one allocation with its other ids (the store's decoding), which a map of
	// strings would keep alive for every stream.
	type link struct {
		rev  uint64
		n    int
		hash [64]byte
		long string // a (damaged) hash longer than 64 bytes
	}
	last := map[string]link{}
	for p := range hashed {
		if p.err != nil {
			return p.err
		}
		for i := range p.events {
			e := &p.events[i]
			why := p.errs[i]
			prev, seen := last[e.Stream]
			switch {
			case why != "":
			case !seen && e.Revision == 0 && e.Prev != "":
				why = "first event of the stream has a prev hash"
			case seen && e.Revision != prev.rev+1:
				why = fmt.Sprintf("revision gap after %d", prev.rev)
			case seen && prev.long == "" && e.Prev != string(prev.hash[:prev.n]), seen && prev.long != "" && e.Prev != prev.long:
				why = "prev does not match the previous event's hash"
			}
			l := link{rev: e.Revision, n: len(e.Hash)}
			if l.n > len(l.hash) {
				l.n, l.long = 0, strings.Clone(e.Hash)
			}
			copy(l.hash[:], e.Hash[:l.n])
			last[e.Stream] = l
			if err := fn(e, &p.leaves[i], why); err != nil {
				if errors.Is(err, errStop) {
					return nil
				}
				return err
			}
		}
	}
	return ctx.Err()
}

// hashPages is scan's middle stage: each page's events get their hash recomputed and their leaf
// hash, split between one goroutine per core, then the page goes on to out.
func hashPages(ctx context.Context, in <-chan *page, out chan<- *page) {
	defer close(out)
	workers := max(1, runtime.GOMAXPROCS(0))
	hashers := make([]*eventstore.FastHasher, workers)
	for i := range hashers {
		hashers[i] = eventstore.NewFastHasher()
	}
	for p := range in {
		if p.err == nil {
			p.leaves = make([][32]byte, len(p.events))
			p.errs = make([]string, len(p.events))
			chunk := (len(p.events) + workers - 1) / workers
			var wg sync.WaitGroup
			for w := range workers {
				lo, hi := w*chunk, min((w+1)*chunk, len(p.events))
				if lo >= hi {
					break
				}
				wg.Add(1)
				go func(x *eventstore.FastHasher) {
					defer wg.Done()
					for i := lo; i < hi; i++ {
						p.errs[i], p.leaves[i] = checkEvent(x, &p.events[i])
					}
				}(hashers[w])
			}
			wg.Wait()
		}
		select {
		case out <- p:
		case <-ctx.Done():
			return
		}
	}
}

// checkEvent recomputes e's hash and returns what is wrong with it ("" when nothing) and e's leaf.
func checkEvent(x *eventstore.FastHasher, e *eventstore.Event) (string, [32]byte) {
	var why string
	switch ok, err := x.Matches(e); {
	case err != nil:
		why = err.Error()
	case !ok:
		why = "hash does not match the event's contents"
	}
	return why, leafOf(e.Hash)
}

// leafOf is LeafHash without allocating; a damaged hash (not 64 hex digits) still takes its place,
// as the leaf of its text.
func leafOf(hexHash string) [32]byte {
	var in [1 + 32]byte // 0x00 || the stored hash
	if decodeHex32(in[1:], hexHash) {
		return sha256.Sum256(in[:])
	}
	l := Hasher.HashLeaf([]byte(hexHash))
	return [32]byte(l)
}

// folder is the RFC 6962 root of a log grown one leaf at a time from the start: the roots of its
// perfect subtrees, largest first (the compact range [0, size) of transparency-dev/merkle's
// compact package, with the same hashes; TestFolderMatchesCompactRange), kept as values so that an
// append allocates nothing and the state is at most 64 hashes, whatever the size.
type folder struct {
	size  uint64
	nodes [][32]byte
	buf   [1 + 32 + 32]byte // 0x01 || left || right
}

func (f *folder) node(l, r *[32]byte) [32]byte {
	f.buf[0] = 1
	copy(f.buf[1:33], l[:])
	copy(f.buf[33:], r[:])
	return sha256.Sum256(f.buf[:])
}

// append adds the next leaf: the subtrees it completes (one per trailing 1 bit of the size) merge.
func (f *folder) append(leaf *[32]byte) {
	f.nodes = append(f.nodes, *leaf)
	for s := f.size; s&1 == 1; s >>= 1 {
		k := len(f.nodes)
		f.nodes[k-2] = f.node(&f.nodes[k-2], &f.nodes[k-1])
		f.nodes = f.nodes[:k-1]
	}
	f.size++
}

// root is the tree's root hash (size > 0): the subtrees folded from the smallest, right to left.
func (f *folder) root() []byte {
	k := len(f.nodes)
	acc := f.nodes[k-1]
	for i := k - 2; i >= 0; i-- {
		acc = f.node(&f.nodes[i], &acc)
	}
	return acc[:]
}

// decodeHex32 decodes 64 hex digits (either case, as encoding/hex) into dst without the []byte
// copy of the string that hex.Decode would need; false when s is not that.
func decodeHex32(dst []byte, s string) bool {
	if len(s) != 64 || len(dst) < 32 {
		return false
	}
	bad := byte(0)
	for i := range 32 {
		hi, lo := unhex[s[2*i]], unhex[s[2*i+1]]
		bad |= hi | lo
		dst[i] = hi<<4 | lo&0x0f
	}
	return bad&0x10 == 0
}

// unhex maps a hex digit to its value and anything else to 0x10.
var unhex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0x10
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c-'a') + 10
		t[c-'a'+'A'] = byte(c-'a') + 10
	}
	return t
}()
