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
	"strings"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// A snapshot file is magic, a gob of snapshot, then the SHA-256 of everything before it. It is
// written to a temporary file, fsync'd and renamed over the old one, so a crash leaves either the old
// or the new snapshot, never half of one. A {tenant}.dirty marker exists from the first change after
// a snapshot until the next snapshot is on disk.
var magic = []byte("CRISPY-HNSW-1\n")

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
}

func (ix *Index) snapPath(t tenant.ID) string  { return filepath.Join(ix.cfg.Dir, t.String()+".hnsw") }
func (ix *Index) dirtyPath(t tenant.ID) string { return filepath.Join(ix.cfg.Dir, t.String()+".dirty") }

// markDirty records on disk, before the first change after a snapshot, that the snapshot is about to
// be stale. Called with p.mu held for writing.
func (ix *Index) markDirty(t tenant.ID, p *partition) error {
	p.dirty = true
	if ix.cfg.Dir == "" || p.marked {
		return nil
	}
	f, err := os.OpenFile(ix.dirtyPath(t), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("mark %s index dirty: %w", t, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("mark %s index dirty: %w", t, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("mark %s index dirty: %w", t, err)
	}
	p.marked = true
	return syncDir(ix.cfg.Dir)
}

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
	// Hold the write lock: the snapshot and the marker's removal must see the same state. Searches
	// wait for the length of one write (about a second per 100,000 chunks).
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
		Vecs: p.g.vecs, Links: p.g.links, Chunks: p.chunks, Deleted: p.deleted, Live: p.live}
	if err := writeAtomic(ix.cfg.Dir, ix.snapPath(t), func(w io.Writer) error { return gob.NewEncoder(w).Encode(&s) }); err != nil {
		return fmt.Errorf("snapshot %s index: %w", t, err)
	}
	if err := os.Remove(ix.dirtyPath(t)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("snapshot %s index: %w", t, err)
	}
	p.dirty, p.marked = false, false
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

// load reads every snapshot; failures mark the tenant for rebuild instead of failing the start.
func (ix *Index) load() error {
	ents, err := os.ReadDir(ix.cfg.Dir)
	if err != nil {
		return fmt.Errorf("embedded index: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".dirty"):
			if t, err := tenant.Parse(strings.TrimSuffix(name, ".dirty")); err == nil {
				ix.stale[t] = true
				ix.cfg.Log.Warn("embedded index: snapshot older than the last change; the tenant will be reindexed", "tenant", t.String())
			}
		case strings.HasSuffix(name, ".hnsw"):
			t, err := tenant.Parse(strings.TrimSuffix(name, ".hnsw"))
			if err != nil {
				continue
			}
			p, err := ix.readSnapshot(t)
			if err != nil {
				ix.stale[t] = true
				ix.cfg.Log.Error("embedded index: unreadable snapshot set aside; the tenant will be reindexed", "tenant", t.String(), "error", err)
				_ = os.Rename(ix.snapPath(t), ix.snapPath(t)+".corrupt")
				continue
			}
			ix.parts[t] = p
		}
	}
	for t := range ix.stale {
		if p := ix.parts[t]; p != nil {
			p.marked = true // the marker is on disk already
			p.dirty = true
		}
	}
	return nil
}

func (ix *Index) readSnapshot(t tenant.ID) (*partition, error) {
	b, err := os.ReadFile(ix.snapPath(t))
	if err != nil {
		return nil, err
	}
	if len(b) < len(magic)+sha256.Size || !bytes.HasPrefix(b, magic) {
		return nil, errors.New("not a snapshot (bad header or truncated)")
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if h := sha256.Sum256(body); !bytes.Equal(h[:], sum) {
		return nil, errors.New("checksum mismatch")
	}
	var s snapshot
	if err := gob.NewDecoder(bytes.NewReader(body[len(magic):])).Decode(&s); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	n := len(s.Links)
	if s.Tenant != t.String() || s.Dim <= 0 || len(s.Vecs) != n*s.Dim || len(s.Chunks) != n || len(s.Deleted) != n || int(s.Entry) >= n {
		return nil, errors.New("inconsistent snapshot")
	}
	p := ix.newPartition(s.Dim, t)
	p.g.m, p.g.m0, p.g.efC = s.M, 2*s.M, s.EfC
	p.g.entry, p.g.maxLevel, p.g.vecs, p.g.links = s.Entry, s.MaxLevel, s.Vecs, s.Links
	p.chunks, p.deleted, p.live = s.Chunks, s.Deleted, s.Live
	for id, c := range s.Chunks {
		if !s.Deleted[id] {
			p.byChunk[c.ChunkID] = uint32(id)
		}
	}
	return p, nil
}
