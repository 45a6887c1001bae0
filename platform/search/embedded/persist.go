package embedded

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// A snapshot file is magic, a gob of snapshot, then the SHA-256 of everything before it. It is
// written to a temporary file, fsync'd and renamed over the old one, so a crash leaves either the old
// or the new snapshot, never half of one. Changes after a snapshot are not on disk until the next
// one: the snapshot's Checkpoint says up to which event-log position it is complete, and the
// retrieval module replays the tenant's document events after it at start. (Version 1 snapshots
// had no checkpoint and relied on a {tenant}.dirty marker; they are ignored, and rebuilt.)
var (
	magic   = []byte("CRISPY-HNSW-2\n")
	magicV1 = []byte("CRISPY-HNSW-1\n")
)

type snapshot struct {
	Tenant   string
	Dim, M   int
	EfC      int
	Entry    int32
	MaxLevel int
	Vecs     []float32
	Links    [][][]uint32
	Chunks   []search.Chunk
	Deleted  []bool
	Live     int
	// Checkpoint: every document whose last event is at or below this log position is as the log
	// says (search.Index).
	Checkpoint uint64
}

func (ix *Index) snapPath(t tenant.ID) string { return filepath.Join(ix.cfg.Dir, t.String()+".hnsw") }

// Flush writes the snapshot of every partition changed since its last one.
func (ix *Index) Flush(ctx context.Context) error {
	if ix.cfg.Dir == "" {
		return nil
	}
	ix.mu.RLock()
	if ix.closed {
		ix.mu.RUnlock()
		return nil
	}
	parts := make(map[tenant.ID]*partition, len(ix.parts))
	for t, p := range ix.parts {
		parts[t] = p
	}
	ix.mu.RUnlock()
	var errs []error
	for t, p := range parts {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := ix.flushOne(t, p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (ix *Index) flushOne(t tenant.ID, p *partition) error {
	// Hold the write lock: the content and the checkpoint must be of the same moment. Searches wait
	// for the length of one write (about a second per 100,000 chunks).
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.dirty {
		return nil
	}
	ix.mu.RLock()
	current := ix.parts[t] == p
	ix.mu.RUnlock()
	if !current { // replaced by DeleteTenant
		return nil
	}
	s := snapshot{Tenant: t.String(), Dim: p.g.dim, M: p.g.m, EfC: p.g.efC, Entry: p.g.entry, MaxLevel: p.g.maxLevel,
		Vecs: p.g.vecs, Links: p.g.links, Chunks: p.chunks, Deleted: p.deleted, Live: p.live, Checkpoint: p.cp}
	if err := writeAtomic(ix.cfg.Dir, ix.snapPath(t), func(w io.Writer) error { return gob.NewEncoder(w).Encode(&s) }); err != nil {
		return fmt.Errorf("snapshot %s index: %w", t, err)
	}
	p.dirty = false
	return nil
}

func writeAtomic(dir, path string, encode func(io.Writer) error) error {
	f, err := os.CreateTemp(dir, ".snap-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	h := sha256.New()
	bw := bufio.NewWriterSize(f, 1<<20)
	mw := io.MultiWriter(bw, h)
	if _, err := mw.Write(magic); err != nil {
		f.Close()
		return err
	}
	if err := encode(mw); err != nil {
		f.Close()
		return err
	}
	if _, err := bw.Write(h.Sum(nil)); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// errOldFormat marks a version 1 snapshot.
var errOldFormat = errors.New("snapshot of an older format (no checkpoint)")

// load reads every snapshot, several tenants at once (decoding is CPU-bound: at 1M events the
// snapshots of a few tenants took 3.2 s one after the other). A tenant whose snapshot cannot be used
// starts empty with checkpoint 0 (rebuilt from the log by retrieval) instead of failing the start.
func (ix *Index) load() error {
	ents, err := os.ReadDir(ix.cfg.Dir)
	if err != nil {
		return fmt.Errorf("embedded index: %w", err)
	}
	var (
		mu sync.Mutex
		g  errgroup.Group
	)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".dirty"):
			// A version 1 marker; the checkpoint in version 2 snapshots replaces it.
			_ = os.Remove(filepath.Join(ix.cfg.Dir, name))
		case strings.HasSuffix(name, ".hnsw"):
			t, err := tenant.Parse(strings.TrimSuffix(name, ".hnsw"))
			if err != nil {
				continue
			}
			g.Go(func() error {
				p, err := ix.readSnapshot(t)
				switch {
				case errors.Is(err, errOldFormat):
					ix.cfg.Log.Warn("embedded index: snapshot of an older format; the tenant is rebuilt from the event log", "tenant", t.String())
					return nil // overwritten by the tenant's next snapshot
				case err != nil:
					ix.cfg.Log.Error("embedded index: unreadable snapshot set aside; the tenant is rebuilt from the event log", "tenant", t.String(), "error", err)
					_ = os.Rename(ix.snapPath(t), ix.snapPath(t)+".corrupt")
					return nil
				}
				mu.Lock()
				ix.parts[t] = p
				mu.Unlock()
				return nil
			})
		}
	}
	return g.Wait()
}

func (ix *Index) readSnapshot(t tenant.ID) (*partition, error) {
	// Streamed through the decoder and the hash together: holding the file whole beside what it
	// decodes to doubled the start's peak memory.
	f, err := os.Open(ix.snapPath(t))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	head := make([]byte, len(magic))
	if _, err := io.ReadFull(f, head); err != nil || st.Size() < int64(len(magic)+sha256.Size) {
		return nil, errors.New("not a snapshot (bad header or truncated)")
	}
	if bytes.Equal(head, magicV1) {
		return nil, errOldFormat
	}
	if !bytes.Equal(head, magic) {
		return nil, errors.New("not a snapshot (bad header or truncated)")
	}
	h := sha256.New()
	h.Write(head)
	body := io.TeeReader(io.LimitReader(f, st.Size()-int64(len(magic)+sha256.Size)), h)
	var s snapshot
	decErr := gob.NewDecoder(bufio.NewReaderSize(body, 1<<20)).Decode(&s)
	if _, err := io.Copy(io.Discard, body); err != nil { // what the decoder did not read still counts
		return nil, err
	}
	sum := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, sum); err != nil {
		return nil, errors.New("not a snapshot (bad header or truncated)")
	}
	if !bytes.Equal(h.Sum(nil), sum) {
		return nil, errors.New("checksum mismatch")
	}
	if decErr != nil {
		return nil, fmt.Errorf("decode: %w", decErr)
	}
	n := len(s.Links)
	if s.Tenant != t.String() || s.Dim < 0 || (s.Dim == 0 && n > 0) || len(s.Vecs) != n*s.Dim || len(s.Chunks) != n || len(s.Deleted) != n || int(s.Entry) >= n {
		return nil, errors.New("inconsistent snapshot")
	}
	p := ix.newPartition(s.Dim, t)
	p.g.m, p.g.m0, p.g.efC = s.M, 2*s.M, s.EfC
	p.g.entry, p.g.maxLevel, p.g.vecs, p.g.links = s.Entry, s.MaxLevel, s.Vecs, s.Links
	p.chunks, p.deleted, p.live, p.cp = s.Chunks, s.Deleted, s.Live, s.Checkpoint
	for id, c := range s.Chunks {
		if !s.Deleted[id] {
			p.byChunk[c.ChunkID] = uint32(id)
			p.byDoc[c.DocID] = append(p.byDoc[c.DocID], uint32(id))
		}
	}
	return p, nil
}
