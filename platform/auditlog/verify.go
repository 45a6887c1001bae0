package auditlog

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
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
	// The first n leaves are kept (32 bytes each) to name the first one at fault when the root
	// differs; the rest are only folded into the running range.
	leaves := make([]byte, 0, 32*min(n, 1<<22))
	r := rangeFactory.NewEmptyRange(0)
	var atN []byte
	if n == 0 {
		atN = Hasher.EmptyRoot()
	}
	var firstChain *Fault
	err := scan(ctx, s, o.Tenant, func(e *eventstore.Event, leaf []byte, chainErr string) error {
		idx := rep.EventsChecked
		if chainErr != "" && firstChain == nil {
			firstChain = faultAt(idx, e, "hash chain: "+chainErr)
		}
		if idx < n {
			leaves = append(leaves, leaf...)
		}
		if err := r.Append(leaf, nil); err != nil {
			return err
		}
		rep.EventsChecked++
		if rep.EventsChecked == n {
			root, err := r.GetRootHash(nil)
			if err != nil {
				return err
			}
			atN = root
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
	if root, err := r.GetRootHash(nil); err == nil {
		rep.StoreRootHash = b64(root)
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
		rep.Fault = locate(ctx, s, o.Tenant, stored, treeErr, want, n, leaves,
			fmt.Sprintf("the store holds %d events of the tenant, the checkpoint committed to %d: events were removed, or the data folder was rolled back to an older copy", rep.StoreSize, n))
	case !bytes.Equal(atN, want):
		rep.Fault = locate(ctx, s, o.Tenant, stored, treeErr, want, n, leaves,
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
// (or the first missing one) is the place.
func locate(ctx context.Context, s eventstore.Store, t tenant.ID, stored StoredTree, treeErr error, want []byte, n uint64, leaves []byte, reason string) *Fault {
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
	have := uint64(len(leaves) / 32)
	for i := uint64(0); i < n; i++ {
		orig, err := stored.Leaf(i)
		if err != nil {
			return f
		}
		if i < have && bytes.Equal(orig, leaves[32*i:32*i+32]) {
			continue
		}
		f.LeafIndex = &i
		if i < have {
			f.Reason = "not the event the checkpoint committed to there (forged, edited, inserted, removed or reordered)"
			if have < n {
				f.Reason += fmt.Sprintf("; the store holds %d of the checkpoint's %d events", have, n)
			}
		} else {
			f.Reason = fmt.Sprintf("missing: the store holds %d events of the tenant, the checkpoint committed to %d (events removed, or the data folder rolled back)", have, n)
		}
		if e, ok := nth(ctx, s, t, i); ok {
			f.EventID, f.Stream, f.Revision, f.Position = e.ID, e.Stream, &e.Revision, uint64(e.Position)
		}
		return f
	}
	return f
}

// nth reads the tenant's i-th event (0-based) for a fault's message.
func nth(ctx context.Context, s eventstore.Store, t tenant.ID, i uint64) (eventstore.Event, bool) {
	var out eventstore.Event
	var k uint64
	found := false
	_ = eachPage(ctx, s, t, func(page []eventstore.Event) error {
		if k+uint64(len(page)) <= i {
			k += uint64(len(page))
			return nil
		}
		out, found = page[i-k], true
		return errStop
	})
	return out, found
}

func faultAt(idx uint64, e *eventstore.Event, reason string) *Fault {
	i, rev := idx, e.Revision
	return &Fault{LeafIndex: &i, EventID: e.ID, Stream: e.Stream, Revision: &rev, Position: uint64(e.Position), Reason: reason}
}

var errStop = errors.New("stop")

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// pageSize bounds one store read.
const pageSize = 8192

type pageResult struct {
	events []eventstore.Event
	err    error
}

// eachPage calls fn with t's events in global order, a page at a time, reading the next page while
// fn runs. errStop from fn ends it without error.
func eachPage(ctx context.Context, s eventstore.Store, t tenant.ID, fn func([]eventstore.Event) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan pageResult, 2)
	go func() {
		defer close(pages)
		next := eventstore.Start
		for {
			page, err := s.ReadTenant(ctx, t, next, pageSize)
			if err != nil {
				err = fmt.Errorf("read events of %s from %d: %w", t, next, err)
			}
			select {
			case pages <- pageResult{page, err}:
			case <-ctx.Done():
				return
			}
			if err != nil || len(page) < pageSize {
				return
			}
			next = page[len(page)-1].Position + 1
		}
	}()
	for p := range pages {
		if p.err != nil {
			return p.err
		}
		if err := fn(p.events); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
	}
	return ctx.Err()
}

// Compute reads t's events and returns the size and RFC 6962 root of its log, after checking every
// event's hash and its stream's links (a broken chain is an error: never sign over one).
func Compute(ctx context.Context, s eventstore.Store, t tenant.ID) (uint64, []byte, error) {
	r := rangeFactory.NewEmptyRange(0)
	err := scan(ctx, s, t, func(e *eventstore.Event, leaf []byte, chainErr string) error {
		if chainErr != "" {
			return &eventstore.ChainError{EventID: e.ID, Stream: e.Stream, Revision: e.Revision, Reason: chainErr}
		}
		return r.Append(leaf, nil)
	})
	if err != nil {
		return 0, nil, fmt.Errorf("audit log of %s: %w", t, err)
	}
	if r.End() == 0 {
		return 0, Hasher.EmptyRoot(), nil
	}
	root, err := r.GetRootHash(nil)
	return r.End(), root, err
}

// scan reads t's events in global order and calls fn with each, its leaf hash and what is wrong
// with its hash chain ("" when nothing): the event's own hash recomputed from its stored bytes, its
// revision and its link to its stream's previous event. The hashing, which dominates, runs on every
// core a page at a time; fn runs in order on the calling goroutine. A stream's first event may
// follow truncated ones (its prev is then taken on trust, as eventstore.ChainVerifier does).
func scan(ctx context.Context, s eventstore.Store, t tenant.ID, fn func(e *eventstore.Event, leaf []byte, chainErr string) error) error {
	type link struct {
		rev  uint64
		hash string
	}
	last := map[string]link{}
	workers := max(1, runtime.GOMAXPROCS(0))
	hashers := make([]*eventstore.FastHasher, workers)
	for i := range hashers {
		hashers[i] = eventstore.NewFastHasher()
	}
	var leaves []byte
	var errs []string
	return eachPage(ctx, s, t, func(page []eventstore.Event) error {
		// Fresh leaves each page: fn may keep them (a compact range holds its hashes).
		leaves = make([]byte, 32*len(page))
		if cap(errs) < len(page) {
			errs = make([]string, len(page))
		}
		errs = errs[:len(page)]
		chunk := (len(page) + workers - 1) / workers
		var wg sync.WaitGroup
		for w := range workers {
			lo, hi := w*chunk, min((w+1)*chunk, len(page))
			if lo >= hi {
				break
			}
			wg.Add(1)
			x := hashers[w]
			go func() {
				defer wg.Done()
				for i := lo; i < hi; i++ {
					e := &page[i]
					errs[i] = ""
					want, err := x.Check(e)
					switch {
					case err != nil:
						errs[i] = err.Error()
					case want != e.Hash:
						errs[i] = "hash does not match the event's contents"
					}
					leaf, err := LeafHash(e.Hash)
					if err != nil {
						leaf = Hasher.HashLeaf([]byte(e.Hash)) // a damaged hash still takes its place
					}
					copy(leaves[32*i:], leaf)
				}
			}()
		}
		wg.Wait()
		for i := range page {
			e := &page[i]
			why := errs[i]
			prev, seen := last[e.Stream]
			switch {
			case why != "":
			case !seen && e.Revision == 0 && e.Prev != "":
				why = "first event of the stream has a prev hash"
			case seen && e.Revision != prev.rev+1:
				why = fmt.Sprintf("revision gap after %d", prev.rev)
			case seen && e.Prev != prev.hash:
				why = "prev does not match the previous event's hash"
			}
			last[e.Stream] = link{rev: e.Revision, hash: e.Hash}
			if err := fn(e, leaves[32*i:32*i+32:32*i+32], why); err != nil {
				return err
			}
		}
		return nil
	})
}
