package embedded

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sync/errgroup"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"

	"github.com/crispy-enigma/crispy/platform/atomicfile"
)

// On disk, a tenant's index is the folder {Dir}/{tenant}.ix holding, for file generation G:
//
//	vectors.G  node i's unit vector: dim float32s at i*dim*4 (mapped; written once per node)
//	codes.G    node i's int8 code and scale (mapped; written once per node)
//	links-S.G  the layer-0 links of the first B nodes (B in the manifest) as they were when it was
//	           written: 1+2M uint32s per node at i*(1+2M)*4, count then ids; read into memory at
//	           open, never changed (a new one, S+1, is written when the log below has grown past
//	           twice its size)
//	linklog-S.G append-only edits of the layer-0 links since links-S.G was written (hnsw.go
//	           setLink: 10 bytes each), one CRC-framed batch per flush, replayed at open
//	chunks.G   append-only chunk records: ids, title, source, URL, metadata, where the text is
//	text.G     append-only chunk texts (as given: retrieval's sealedindex hands ciphertext); a deleted
//	           chunk's text is overwritten with zeros in place
//	tombs.G    append-only deleted node ids
//	terms.G    append-only analysed words of each node that has some, as 64-bit hashes with their
//	           frequencies (lexical.go): what the lexical half is built from
//	lexrefs.G  node i's place in terms.G and length in terms (mapped; written once per node)
//	lexseg-N.G immutable, mapped segments of the lexical postings (lexseg.go), named by the
//	           manifest; the nodes after the last one are replayed from terms.G at open
//	upper-S.G  append-only upper-layer links of the nodes that changed (the last record of a node
//	           wins); rewritten as upper-{S+1}.G when it is mostly superseded records
//	MANIFEST   how many nodes and how many bytes of each log are the index, the graph's entry point,
//	           and the checkpoint; written to a temporary file, fsync'd and renamed
//
// A flush appends what changed since the last one (never rewriting what is on disk), fsyncs the
// files, then writes the manifest: the checkpoint it carries never claims more than the files hold.
// At open, whatever a log holds past the manifest's length is cut off (written after the last
// flush; the retrieval module replays the tenant's document events after the checkpoint). Nothing
// is changed in place but a deleted chunk's text (zeroed) and the mapped records of nodes past the
// manifest's count (which it does not claim). Version 3 changed the layer-0 links in place in a
// mapped links.G, so a flush wrote again every page a new node's links touched (7.8x the vectors'
// size at 100k); its folders are taken over as they are (links.G becomes links-0.G, with an empty
// log), not rebuilt: rebuilding would embed every document again. A compaction (more tombstones than live chunks) or a new dimension writes generation G+1 beside
// G, switches the manifest to it and removes G.

const manifestVersion = 4 // 2: with the codes file; 3: with the terms log; 4: links base and log

// linksVersion3 is the last version that kept the layer-0 links in place in links.G.
const linksVersion3 = 3

type manifest struct {
	Version    int    `json:"version"`
	Tenant     string `json:"tenant"`
	Gen        uint64 `json:"gen"`
	Dim        int    `json:"dim"`
	M          int    `json:"m"`
	EfC        int    `json:"efC"`
	Entry      int32  `json:"entry"`
	MaxLevel   int    `json:"maxLevel"`
	Nodes      int    `json:"nodes"`
	Live       int    `json:"live"`
	Checkpoint uint64 `json:"checkpoint"`
	Chunks     int64  `json:"chunks"`
	Text       int64  `json:"text"`
	Tombs      int64  `json:"tombs"`
	Terms      int64  `json:"terms"`
	Upper      int64  `json:"upper"`
	// UpperSeq numbers the upper-links log (upper-{seq}.G): when the log has grown to several times
	// what it describes, a flush writes the live records to the next one.
	UpperSeq uint64 `json:"upperSeq"`
	// LinkSeq numbers the layer-0 links' base file and log (links-{seq}.G, linklog-{seq}.G);
	// LinkBase is how many nodes' links the base holds, LinkLog the committed bytes of the log.
	LinkSeq  uint64 `json:"linkSeq"`
	LinkBase int    `json:"linkBase"`
	LinkLog  int64  `json:"linkLog"`
	// Lex is the lexical half's segments, live length total and replay point (lexical.go); nil in
	// a manifest written before it (the terms log is then read once at open).
	Lex *lexManifest `json:"lex,omitempty"`
}

const manifestName = "MANIFEST"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// partFiles are one generation's files of a partition.
type partFiles struct {
	vecs, codes                *region
	chunks, text, tombs, upper *appendLog
	terms                      *appendLog
	links                      *appendLog // the layer-0 links' edit log (linklog-S.G)
	lex                        *lexFiles  // the lexical half's refs and segments (lexical.go)
}

func (f *partFiles) close() error {
	var errs []error
	for _, r := range []*region{f.vecs, f.codes} {
		if r != nil {
			errs = append(errs, r.close())
		}
	}
	for _, l := range []*appendLog{f.chunks, f.text, f.tombs, f.upper, f.terms, f.links} {
		if l != nil {
			errs = append(errs, l.close())
		}
	}
	errs = append(errs, f.lex.close())
	return errors.Join(errs...)
}

func (f *partFiles) sync() error {
	var errs []error
	for _, r := range []*region{f.vecs, f.codes} {
		errs = append(errs, r.sync())
	}
	for _, l := range []*appendLog{f.chunks, f.text, f.tombs, f.upper, f.terms, f.links} {
		errs = append(errs, l.sync())
	}
	errs = append(errs, f.lex.sync())
	return errors.Join(errs...)
}

func fileName(kind string, gen uint64) string { return kind + "." + strconv.FormatUint(gen, 10) }

func upperKind(seq uint64) string { return "upper-" + strconv.FormatUint(seq, 10) }

func linksKind(seq uint64) string { return "links-" + strconv.FormatUint(seq, 10) }

func linkLogKind(seq uint64) string { return "linklog-" + strconv.FormatUint(seq, 10) }

// genKinds are the files a new generation starts with.
var genKinds = []string{"vectors", "codes", "chunks", "text", "tombs", "upper-0", "terms", "linklog-0", "lexrefs"}

func (ix *Index) partDir(t tenant.ID) string { return filepath.Join(ix.cfg.Dir, t.String()+".ix") }

// newPartition makes an empty partition with fresh files of generation gen (memory only without a
// folder).
func (ix *Index) newPartition(t tenant.ID, dim int, gen uint64) (*partition, error) {
	p := &partition{t: t, gen: gen, ids: newIDs(), lex: newLexIndex(ix.cfg.Log)}
	f := &partFiles{vecs: &region{}, codes: &region{}, chunks: &appendLog{}, text: &appendLog{}, tombs: &appendLog{}, upper: &appendLog{}, terms: &appendLog{}, links: &appendLog{}, lex: &lexFiles{refs: &region{}}}
	if ix.cfg.Dir != "" {
		p.dir = ix.partDir(t)
		if err := os.MkdirAll(p.dir, 0o700); err != nil {
			return nil, err
		}
		var err error
		if f, err = createFiles(p.dir, gen); err != nil {
			return nil, err
		}
	}
	p.files = f
	p.g = newGraph(dim, ix.cfg.M, ix.cfg.EfConstruction, ix.seed(t, 0), f.vecs, f.codes)
	p.g.workers = ix.cfg.InsertWorkers
	p.g.logLinks = p.dir != ""
	return p, nil
}

func createFiles(dir string, gen uint64) (*partFiles, error) {
	f := &partFiles{}
	for _, kind := range append(genKinds, "links-0") {
		if err := os.Remove(filepath.Join(dir, fileName(kind, gen))); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
	}
	return f, f.open(dir, gen, &manifest{})
}

// open opens generation gen's files as m describes them; on an error the files opened are closed.
func (f *partFiles) open(dir string, gen uint64, m *manifest) error {
	path := func(kind string) string { return filepath.Join(dir, fileName(kind, gen)) }
	var err error
	if f.vecs, err = openRegion(path("vectors"), int64(m.Nodes)*int64(m.Dim)*4); err == nil {
		if f.codes, err = openRegion(path("codes"), int64(m.Nodes)*int64(codeSize(m.Dim))); err == nil {
			f.links, err = openLog(path(linkLogKind(m.LinkSeq)), m.LinkLog)
		}
		if err == nil {
			if f.chunks, err = openLog(path("chunks"), m.Chunks); err == nil {
				if f.text, err = openLog(path("text"), m.Text); err == nil {
					if f.tombs, err = openLog(path("tombs"), m.Tombs); err == nil {
						if f.upper, err = openLog(path(upperKind(m.UpperSeq)), m.Upper); err == nil {
							if f.terms, err = openLog(path("terms"), m.Terms); err == nil {
								f.lex, err = openLexFiles(dir, gen, m)
							}
						}
					}
				}
			}
		}
	}
	if err != nil {
		_ = f.close()
	}
	return err
}

// Flush writes what changed in every partition since its last flush, and its manifest.
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
		p.mu.Lock()
		ix.mu.RLock()
		current := ix.parts[t] == p
		ix.mu.RUnlock()
		if current && !p.gone {
			if err := p.flush(); err != nil {
				errs = append(errs, fmt.Errorf("flush the index of %s: %w", t, err))
			}
		}
		p.mu.Unlock()
		// Lexical segment merges, written without the partition's lock (lexical.go).
		if err := p.mergeLex(); err != nil {
			errs = append(errs, fmt.Errorf("flush the index of %s: %w", t, err))
		}
	}
	return errors.Join(errs...)
}

// flush appends the changed upper links, fsyncs the files and writes the manifest. The caller holds
// p.mu for writing: the manifest's content and checkpoint are of one moment. It costs a few fsyncs,
// not a rewrite of the index.
func (p *partition) flush() (err error) {
	if !p.dirty && !p.lexNeedsFlush() {
		return nil
	}
	if p.dir == "" {
		clear(p.g.dirtyUp)
		p.g.linkEdits = p.g.linkEdits[:0]
		p.dirty = false
		return nil
	}
	defer func() {
		if err != nil && p.oldLinks != nil {
			// Keep appending to the base and log the manifest on disk names.
			p.undoLinksRewrite()
		}
	}()
	var oldUpper *appendLog
	if live := upperBytes(p.g.upper); p.files.upper.size > 4*live+(64<<10) {
		// Mostly superseded records: the live ones go to the next log, which the manifest below
		// switches to (a crash before it leaves the old log, still whole, in use).
		next, rerr := p.rewriteUpper()
		if rerr != nil {
			return rerr
		}
		oldUpper, p.files.upper = p.files.upper, next
		p.upperSeq++
		defer func() {
			if err == nil {
				_ = oldUpper.close()
				_ = os.Remove(filepath.Join(p.dir, fileName(upperKind(p.upperSeq-1), p.gen)))
				return
			}
			// Keep appending to the log the manifest on disk names.
			_ = p.files.upper.close()
			_ = os.Remove(filepath.Join(p.dir, fileName(upperKind(p.upperSeq), p.gen)))
			p.files.upper = oldUpper
			p.upperSeq--
		}()
	} else if len(p.g.dirtyUp) > 0 {
		ids := make([]uint32, 0, len(p.g.dirtyUp))
		for id := range p.g.dirtyUp {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		var buf []byte
		for _, id := range ids {
			buf = appendUpper(buf, id, p.g.upper[id])
		}
		if _, err := p.files.upper.append(buf); err != nil {
			return err
		}
	}
	if err := p.flushLinks(); err != nil {
		return err
	}
	if err := p.flushLex(); err != nil {
		return err
	}
	if err := p.files.sync(); err != nil {
		return err
	}
	m := manifest{Version: manifestVersion, Tenant: p.t.String(), Gen: p.gen, Dim: p.g.dim, M: p.g.m, EfC: p.g.efC,
		Entry: p.g.entry, MaxLevel: p.g.maxLevel, Nodes: p.g.len(), Live: p.live, Checkpoint: p.cp,
		Chunks: p.files.chunks.size, Text: p.files.text.size, Tombs: p.files.tombs.size, Upper: p.files.upper.size, Terms: p.files.terms.size,
		UpperSeq: p.upperSeq, LinkSeq: p.linkSeq, LinkBase: p.linkBase, LinkLog: p.files.links.size, Lex: p.lexManifest()}
	if err := writeManifest(p.dir, &m); err != nil {
		return err
	}
	p.lexCommitted()
	if p.oldLinks != nil {
		// The manifest names the new base and log: the old ones go.
		_ = p.oldLinks.log.close()
		p.oldLinks = nil
		_ = os.Remove(filepath.Join(p.dir, fileName(linksKind(p.linkSeq-1), p.gen)))
		_ = os.Remove(filepath.Join(p.dir, fileName(linkLogKind(p.linkSeq-1), p.gen)))
	}
	// What inserts touched of the float vectors is on disk now; searches read them with pread.
	p.files.vecs.dropResident()
	clear(p.g.dirtyUp)
	p.dirty = false
	return nil
}

// flushLinks appends the layer-0 link edits since the last flush to the links log as one framed
// batch (length, CRC-32C, edits), or, once the log would outgrow twice the links themselves (or
// 4 MiB), writes every node's links to the next base file and starts an empty log: replaying the
// log at open stays short, and the base is written about once per twice its size of edits. The
// manifest written after it switches to the new pair; until then the old pair is kept (oldLinks)
// and put back if the flush fails.
func (p *partition) flushLinks() error {
	edits := p.g.linkEdits
	if len(edits) == 0 && !p.linksLost {
		return nil
	}
	rec := int64(1+p.g.m0) * 4
	if p.linksLost || p.files.links.size+int64(len(edits))+8 > max(2*rec*int64(p.g.len()), linksLogFloor) {
		if err := p.rewriteLinks(); err != nil {
			return err
		}
		p.g.linkEdits, p.linksLost = edits[:0], false
		return nil
	}
	frame := make([]byte, 8, 8+len(edits))
	binary.LittleEndian.PutUint32(frame, uint32(len(edits)))
	binary.LittleEndian.PutUint32(frame[4:], crc32.Checksum(edits, castagnoli))
	if _, err := p.files.links.append(append(frame, edits...)); err != nil {
		return err
	}
	p.g.linkEdits = edits[:0]
	return nil
}

// linksLogFloor is the size the links log may always reach before a new base is written (a var
// for the tests that make it small).
var linksLogFloor int64 = 4 << 20

// rewriteLinks writes every node's layer-0 links to links-{S+1}.G (fsync'd) and opens an empty
// linklog-{S+1}.G in place of the current log, which is kept in p.oldLinks until the manifest
// names the new pair.
func (p *partition) rewriteLinks() error {
	seq := p.linkSeq + 1
	base := filepath.Join(p.dir, fileName(linksKind(seq), p.gen))
	logPath := filepath.Join(p.dir, fileName(linkLogKind(seq), p.gen))
	n := p.g.len()
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(p.g.lk))), n*(1+p.g.m0)*4)
	if err := writeSynced(base, raw); err != nil {
		return fmt.Errorf("links base: %w", err)
	}
	_ = os.Remove(logPath)
	l, err := openLog(logPath, 0)
	if err != nil {
		_ = os.Remove(base)
		return err
	}
	p.oldLinks = &linksState{log: p.files.links, seq: p.linkSeq, base: p.linkBase}
	p.files.links, p.linkSeq, p.linkBase = l, seq, n
	return nil
}

// linksState is the links base and log a rewrite replaced, until the manifest names the new pair.
type linksState struct {
	log  *appendLog
	seq  uint64
	base int
}

// undoLinksRewrite goes back to the links base and log the manifest on disk names, after a flush
// that rewrote them failed. The edits of that flush are gone from memory (they were folded into
// the base that is now dropped), so the graph's links are written whole to the next flush's base.
func (p *partition) undoLinksRewrite() {
	o := p.oldLinks
	_ = p.files.links.close()
	_ = os.Remove(filepath.Join(p.dir, fileName(linksKind(p.linkSeq), p.gen)))
	_ = os.Remove(filepath.Join(p.dir, fileName(linkLogKind(p.linkSeq), p.gen)))
	p.files.links, p.linkSeq, p.linkBase, p.oldLinks = o.log, o.seq, o.base, nil
	p.linksLost, p.dirty = true, true
}

// writeSynced writes b to a new file at path and fsyncs it.
func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
	}
	return err
}

// upperBytes is the size of one record per node with upper links.
func upperBytes(upper map[uint32][][]uint32) int64 {
	var n int64
	for _, layers := range upper {
		n += 16 + 4*int64(len(layers))
		for _, ls := range layers {
			n += 4 * int64(len(ls))
		}
	}
	return n
}

// rewriteUpper writes every node's upper links to a fresh log, the next in sequence, fsync'd.
func (p *partition) rewriteUpper() (*appendLog, error) {
	path := filepath.Join(p.dir, fileName(upperKind(p.upperSeq+1), p.gen))
	_ = os.Remove(path)
	l, err := openLog(path, 0)
	if err != nil {
		return nil, err
	}
	ids := make([]uint32, 0, len(p.g.upper))
	for id := range p.g.upper {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var buf []byte
	for _, id := range ids {
		buf = appendUpper(buf, id, p.g.upper[id])
	}
	if _, err := l.append(buf); err == nil {
		err = l.sync()
	}
	if err != nil {
		_ = l.close()
		_ = os.Remove(path)
		return nil, err
	}
	return l, nil
}

func writeManifest(dir string, m *manifest) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	body = binary.LittleEndian.AppendUint32(body, crc32.Checksum(body, castagnoli))
	return atomicfile.Write(filepath.Join(dir, manifestName), body, 0o600)
}

func readManifest(dir string) (*manifest, error) {
	raw, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, err
	}
	if len(raw) < 4 {
		return nil, errors.New("manifest cut short")
	}
	body := raw[:len(raw)-4]
	if binary.LittleEndian.Uint32(raw[len(raw)-4:]) != crc32.Checksum(body, castagnoli) {
		return nil, errors.New("manifest checksum mismatch")
	}
	var m manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if m.Version != manifestVersion && m.Version != linksVersion3 {
		return nil, fmt.Errorf("manifest version %d, this build reads %d", m.Version, manifestVersion)
	}
	return &m, nil
}

// rebuild replaces p's content by a fresh graph of dimension dim holding p's live chunks, in the
// next file generation: compaction, or a new dimension once nothing live is left. The new
// generation is flushed before the old one is removed, so a crash leaves one whole generation.
func (ix *Index) rebuild(p *partition, dim int) error {
	np, err := ix.newPartition(p.t, dim, p.gen+1)
	if err != nil {
		return fmt.Errorf("rebuild the index of %s: %w", p.t, err)
	}
	fail := func(err error) error {
		_ = np.files.close()
		if np.dir != "" {
			removeOtherGens(np.dir, p.gen, p.upperSeq, p.linkSeq)
		}
		return fmt.Errorf("rebuild the index of %s: %w", p.t, err)
	}
	np.cp = p.cp
	if dim == p.g.dim && p.live > 0 {
		if err := np.g.reserve(p.live); err != nil {
			return fail(err)
		}
		for id := range p.g.len() {
			if p.deleted[id] {
				continue
			}
			c, err := p.chunk(uint32(id))
			if err != nil {
				return fail(err)
			}
			text, err := p.text(uint32(id))
			if err != nil {
				return fail(err)
			}
			tfs, dl, err := p.nodeTerms(uint32(id))
			if err != nil {
				return fail(err)
			}
			if err := np.add(c, p.g.vec(uint32(id)), text, tfs, dl); err != nil {
				return fail(err)
			}
		}
		np.g.linkPending()
	}
	np.dirty = true
	if err := np.flush(); err != nil {
		return fail(err)
	}
	old := p.files
	p.gen, p.upperSeq, p.g, p.files, p.refs, p.deleted, p.ids, p.lex, p.live, p.dirty =
		np.gen, np.upperSeq, np.g, np.files, np.refs, np.deleted, np.ids, np.lex, np.live, false
	p.linkSeq, p.linkBase, p.linksLost = np.linkSeq, np.linkBase, false
	_ = old.close()
	if p.dir != "" {
		removeOtherGens(p.dir, p.gen, p.upperSeq, p.linkSeq)
	}
	return nil
}

// removeOtherGens deletes files of generations other than gen (an old one after a compaction, or
// a new one a crash left half written), and of gen the upper-links logs and links files other
// than the manifest's (upperSeq, linkSeq).
func removeOtherGens(dir string, gen, upperSeq, linkSeq uint64) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	keep := "." + strconv.FormatUint(gen, 10)
	current := func(name string) bool {
		switch {
		case strings.HasPrefix(name, "upper-"):
			return name == fileName(upperKind(upperSeq), gen)
		case strings.HasPrefix(name, "linklog-"):
			return name == fileName(linkLogKind(linkSeq), gen)
		case strings.HasPrefix(name, "links"):
			return name == fileName(linksKind(linkSeq), gen)
		}
		return true
	}
	for _, e := range ents {
		name := e.Name()
		if name == manifestName || (strings.HasSuffix(name, keep) && current(name)) {
			continue
		}
		_ = os.Remove(filepath.Join(dir, name))
	}
}

// load opens every tenant's folder, several at once. A tenant whose files cannot be used is
// removed (its text must not linger either) and starts empty with checkpoint 0: the retrieval
// module rebuilds it from the log instead of the start failing.
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
		path := filepath.Join(ix.cfg.Dir, name)
		switch {
		case strings.HasSuffix(name, ".hnsw") || strings.HasSuffix(name, ".dirty") || strings.HasSuffix(name, ".corrupt") || strings.HasPrefix(name, ".snap-"):
			// The older whole-file snapshots: their tenants are rebuilt from the log into the
			// folder format. Removed, not kept: they hold the texts of deleted documents.
			ix.cfg.Log.Warn("embedded index: snapshot of the older whole-file format removed; the tenant is rebuilt from the event log", "file", name)
			_ = os.Remove(path)
		case e.IsDir() && strings.HasSuffix(name, ".ix"):
			t, err := tenant.Parse(strings.TrimSuffix(name, ".ix"))
			if err != nil {
				continue
			}
			g.Go(func() error {
				p, err := ix.openPartition(t, path)
				if err != nil {
					ix.cfg.Log.Error("embedded index: unreadable index files removed; the tenant is rebuilt from the event log", "tenant", t.String(), "error", err)
					if err := os.RemoveAll(path); err != nil {
						return fmt.Errorf("embedded index: remove the unreadable files of %s: %w", t, err)
					}
					return nil
				}
				if p != nil {
					mu.Lock()
					ix.parts[t] = p
					mu.Unlock()
				}
				return nil
			})
		}
	}
	return g.Wait()
}

// openPartition opens one tenant's folder: the manifest, the mappings (nothing read) and the
// chunk records' ids (for upserts and deletes by id). nil, nil: a folder with no manifest yet (a
// crash before its first flush: nothing in it was part of the index).
func (ix *Index) openPartition(t tenant.ID, dir string) (*partition, error) {
	m, err := readManifest(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, os.RemoveAll(dir)
	}
	if err != nil {
		return nil, err
	}
	if m.Tenant != t.String() || m.Dim < 0 || m.M < 2 || m.Nodes < 0 || (m.Dim == 0 && m.Nodes > 0) ||
		int(m.Entry) >= m.Nodes || (m.Nodes > 0 && m.Entry < 0) || m.Live > m.Nodes || m.Live < 0 || m.Tombs%4 != 0 {
		return nil, errors.New("inconsistent manifest")
	}
	if m.Version == linksVersion3 {
		// Its links.G holds every node's links: the base of sequence 0, with an empty log.
		if err := os.Rename(filepath.Join(dir, fileName("links", m.Gen)), filepath.Join(dir, fileName(linksKind(0), m.Gen))); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		m.LinkSeq, m.LinkBase, m.LinkLog = 0, m.Nodes, 0
	}
	if m.LinkBase < 0 || m.LinkBase > m.Nodes || m.LinkLog < 0 {
		return nil, errors.New("inconsistent manifest")
	}
	removeOtherGens(dir, m.Gen, m.UpperSeq, m.LinkSeq)
	f := &partFiles{}
	if err := f.open(dir, m.Gen, m); err != nil {
		return nil, err
	}
	p := &partition{t: t, dir: dir, gen: m.Gen, upperSeq: m.UpperSeq, linkSeq: m.LinkSeq, linkBase: m.LinkBase,
		files: f, cp: m.Checkpoint, live: m.Live, ids: newIDs(), lex: newLexIndex(ix.cfg.Log)}
	p.g = newGraph(m.Dim, m.M, m.EfC, ix.seed(t, m.Nodes), f.vecs, f.codes)
	p.g.workers = ix.cfg.InsertWorkers
	p.g.logLinks = true
	p.g.n, p.g.entry, p.g.maxLevel = m.Nodes, m.Entry, m.MaxLevel
	if m.Nodes == 0 {
		p.g.entry = -1
	}
	err = p.loadLinks(m)
	if err == nil {
		err = p.loadLogs(m)
	}
	if err != nil {
		_ = f.close()
		return nil, err
	}
	if m.Version == linksVersion3 {
		// The next flush writes a version 4 manifest.
		p.dirty = true
	}
	return p, nil
}

// loadLinks reads the layer-0 links: the base file's nodes, then the log's edits replayed.
// Version 3's links were changed in place, so they may name nodes a crash lost: those links are
// dropped; from version 4 on such a link means damaged files.
func (p *partition) loadLinks(m *manifest) error {
	rec := 1 + p.g.m0
	p.g.lk = make([]uint32, m.Nodes*rec)
	if m.LinkBase > 0 {
		f, err := os.Open(filepath.Join(p.dir, fileName(linksKind(m.LinkSeq), m.Gen)))
		if err != nil {
			return fmt.Errorf("links: %w", err)
		}
		raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(p.g.lk))), m.LinkBase*rec*4)
		_, err = f.ReadAt(raw, 0)
		f.Close()
		if err != nil {
			return fmt.Errorf("links: %w", err)
		}
		for i := range m.LinkBase {
			o := i * rec
			c := int(p.g.lk[o])
			if c > p.g.m0 {
				return fmt.Errorf("links of node %d: %d of at most %d", i, c, p.g.m0)
			}
			ls := p.g.lk[o+1 : o+1+c]
			kept := 0
			for _, x := range ls {
				if int(x) < m.Nodes {
					ls[kept] = x
					kept++
				} else if m.Version != linksVersion3 {
					return fmt.Errorf("links of node %d: node %d of %d", i, x, m.Nodes)
				}
			}
			p.g.lk[o] = uint32(kept)
		}
	}
	b := make([]byte, m.LinkLog)
	if err := p.files.links.readAt(b, 0); err != nil {
		return fmt.Errorf("links log: %w", err)
	}
	for off := 0; off < len(b); {
		if len(b)-off < 8 {
			return fmt.Errorf("links log at %d: cut short", off)
		}
		n := int(binary.LittleEndian.Uint32(b[off:]))
		if n > len(b)-off-8 {
			return fmt.Errorf("links log at %d: length %d past the end", off, n)
		}
		body := b[off+8 : off+8+n]
		if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[off+4:]) {
			return fmt.Errorf("links log at %d: checksum mismatch", off)
		}
		if err := p.g.applyLinkEdits(body, m.Nodes); err != nil {
			return fmt.Errorf("links log at %d: %w", off, err)
		}
		off += 8 + n
	}
	return nil
}

// loadLogs reads the chunk records (ids only are kept), tombstones and upper links.
func (p *partition) loadLogs(m *manifest) error {
	p.refs = make([]chunkRef, 0, m.Nodes)
	p.deleted = make([]bool, m.Nodes)
	// Tombstones first: only live nodes go into the id maps.
	tombs := make([]byte, m.Tombs)
	if err := p.files.tombs.readAt(tombs, 0); err != nil {
		return fmt.Errorf("tombstones: %w", err)
	}
	dead := 0
	for i := 0; i < len(tombs); i += 4 {
		id := binary.LittleEndian.Uint32(tombs[i:])
		if int(id) >= m.Nodes {
			return fmt.Errorf("tombstone of node %d of %d", id, m.Nodes)
		}
		if !p.deleted[id] {
			p.deleted[id] = true
			dead++
		}
	}
	if m.Nodes-dead != m.Live {
		return fmt.Errorf("%d live chunks, the manifest says %d", m.Nodes-dead, m.Live)
	}
	p.ids.expect(m.Live)
	r := bufio.NewReaderSize(io.NewSectionReader(p.files.chunks.f, 0, m.Chunks), 1<<20)
	var off int64
	var head [8]byte
	var body []byte
	for off < m.Chunks {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return fmt.Errorf("chunk record at %d: %w", off, err)
		}
		n := binary.LittleEndian.Uint32(head[:4])
		if int64(n) > m.Chunks-off-8 {
			return fmt.Errorf("chunk record at %d: length %d past the end", off, n)
		}
		body = slices.Grow(body[:0], int(n))[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return fmt.Errorf("chunk record at %d: %w", off, err)
		}
		if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(head[4:]) {
			return fmt.Errorf("chunk record at %d: checksum mismatch", off)
		}
		id, toff, tlen, docID, chunkID, err := decodeChunkIDs(body)
		if err != nil {
			return fmt.Errorf("chunk record at %d: %w", off, err)
		}
		if int(id) != len(p.refs) || int(id) >= m.Nodes || toff+int64(tlen) > m.Text {
			return fmt.Errorf("chunk record at %d: node %d, text %d+%d out of place", off, id, toff, tlen)
		}
		p.refs = append(p.refs, chunkRef{rec: off, recLen: 8 + n, textLen: tlen, text: toff})
		if !p.deleted[id] {
			p.ids.opening(p.ids.hashBytes(chunkID), p.ids.hashBytes(docID), id)
		}
		off += 8 + int64(n)
	}
	if len(p.refs) != m.Nodes {
		return fmt.Errorf("%d chunk records for %d nodes", len(p.refs), m.Nodes)
	}
	if err := p.openLex(m); err != nil {
		return err
	}
	up := make([]byte, m.Upper)
	if err := p.files.upper.readAt(up, 0); err != nil {
		return fmt.Errorf("upper links: %w", err)
	}
	for len(up) > 0 {
		id, layers, rest, err := decodeUpper(up, m.Nodes)
		if err != nil {
			return fmt.Errorf("upper links: %w", err)
		}
		p.g.upper[id] = layers
		up = rest
	}
	if m.Nodes > 0 && len(p.g.upper[uint32(m.Entry)]) < m.MaxLevel {
		return fmt.Errorf("entry point %d has %d upper layers, the graph %d", m.Entry, len(p.g.upper[uint32(m.Entry)]), m.MaxLevel)
	}
	return nil
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// encodeChunk is a chunk record: length and CRC-32C of the rest, then node id, text offset and
// length, and the chunk's ids, title, source, URL, metadata and embed key (uvarint-prefixed
// strings; records written before the embed key end after the metadata).
func encodeChunk(id uint32, textOff int64, textLen uint32, c *search.Chunk) []byte {
	b := make([]byte, 8, 64+len(c.DocID)+len(c.ChunkID)+len(c.Title)+len(c.Source)+len(c.URL))
	b = binary.LittleEndian.AppendUint32(b, id)
	b = binary.LittleEndian.AppendUint64(b, uint64(textOff))
	b = binary.LittleEndian.AppendUint32(b, textLen)
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	str(c.DocID)
	str(c.ChunkID)
	str(c.Title)
	str(c.Source)
	str(c.URL)
	keys := make([]string, 0, len(c.Metadata))
	for k := range c.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		str(k)
		str(c.Metadata[k])
	}
	str(c.EmbedKey)
	binary.LittleEndian.PutUint32(b[0:], uint32(len(b)-8))
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], castagnoli))
	return b
}

var errRecord = errors.New("malformed chunk record")

type recReader struct {
	b   []byte
	err error
}

func (r *recReader) str() string {
	n, k := binary.Uvarint(r.b)
	if k <= 0 || n > uint64(len(r.b)-k) {
		r.err = errRecord
		return ""
	}
	s := string(r.b[k : k+int(n)])
	r.b = r.b[k+int(n):]
	return s
}

// decodeChunkIDs reads a chunk record's node, text place and ids (views into body, not copies).
func decodeChunkIDs(body []byte) (id uint32, textOff int64, textLen uint32, docID, chunkID []byte, err error) {
	if len(body) < 16 {
		return 0, 0, 0, nil, nil, errRecord
	}
	rest := body[16:]
	field := func() []byte {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			err = errRecord
			return nil
		}
		f := rest[k : k+int(n)]
		rest = rest[k+int(n):]
		return f
	}
	docID = field()
	if err == nil {
		chunkID = field()
	}
	return binary.LittleEndian.Uint32(body), int64(binary.LittleEndian.Uint64(body[4:])), binary.LittleEndian.Uint32(body[12:]), docID, chunkID, err
}

// chunk reads node id's chunk record (without its text).
func (p *partition) chunk(id uint32) (search.Chunk, error) {
	ref := p.refs[id]
	raw := make([]byte, ref.recLen)
	if err := p.files.chunks.readAt(raw, ref.rec); err != nil {
		return search.Chunk{}, fmt.Errorf("chunk record of node %d: %w", id, err)
	}
	body := raw[8:]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(raw[4:]) || len(body) < 16 {
		return search.Chunk{}, fmt.Errorf("chunk record of node %d: checksum mismatch", id)
	}
	r := recReader{b: body[16:]}
	c := search.Chunk{DocID: r.str(), ChunkID: r.str(), Title: r.str(), Source: r.str(), URL: r.str()}
	n, k := binary.Uvarint(r.b)
	if k <= 0 || n > uint64(len(r.b)) {
		return search.Chunk{}, fmt.Errorf("chunk record of node %d: %w", id, errRecord)
	}
	r.b = r.b[k:]
	if n > 0 {
		c.Metadata = make(map[string]string, n)
		for range n {
			k := r.str()
			c.Metadata[k] = r.str()
		}
	}
	if len(r.b) > 0 {
		c.EmbedKey = r.str()
	}
	if r.err != nil {
		return search.Chunk{}, fmt.Errorf("chunk record of node %d: %w", id, r.err)
	}
	return c, nil
}

// text reads node id's stored text.
func (p *partition) text(id uint32) ([]byte, error) {
	ref := p.refs[id]
	b := make([]byte, ref.textLen)
	if err := p.files.text.readAt(b, ref.text); err != nil {
		return nil, fmt.Errorf("text of node %d: %w", id, err)
	}
	return b, nil
}

// appendUpper appends a record of node id's upper links: length and CRC-32C of the rest, node id,
// layer count, then per layer the link count and the links.
func appendUpper(b []byte, id uint32, layers [][]uint32) []byte {
	start := len(b)
	b = append(b, make([]byte, 8)...)
	b = binary.LittleEndian.AppendUint32(b, id)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(layers)))
	for _, ls := range layers {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(ls)))
		for _, x := range ls {
			b = binary.LittleEndian.AppendUint32(b, x)
		}
	}
	binary.LittleEndian.PutUint32(b[start:], uint32(len(b)-start-8))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(b[start+8:], castagnoli))
	return b
}

func decodeUpper(b []byte, nodes int) (uint32, [][]uint32, []byte, error) {
	bad := errors.New("malformed upper-links record")
	if len(b) < 16 {
		return 0, nil, nil, bad
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > len(b)-8 || n < 8 {
		return 0, nil, nil, bad
	}
	body := b[8 : 8+n]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return 0, nil, nil, errors.New("upper-links record checksum mismatch")
	}
	id := binary.LittleEndian.Uint32(body)
	nl := int(binary.LittleEndian.Uint32(body[4:]))
	if int(id) >= nodes || nl > 64 {
		return 0, nil, nil, bad
	}
	body = body[8:]
	layers := make([][]uint32, nl)
	for l := range layers {
		if len(body) < 4 {
			return 0, nil, nil, bad
		}
		c := int(binary.LittleEndian.Uint32(body))
		body = body[4:]
		if c > len(body)/4 {
			return 0, nil, nil, bad
		}
		ls := make([]uint32, c)
		for i := range ls {
			ls[i] = binary.LittleEndian.Uint32(body[4*i:])
		}
		layers[l] = ls
		body = body[4*c:]
	}
	return id, layers, b[8+n:], nil
}
