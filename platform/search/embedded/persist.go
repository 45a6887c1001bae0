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

	"golang.org/x/sync/errgroup"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"

	"github.com/crispy-enigma/crispy/platform/atomicfile"
)

// On disk, a tenant's index is the folder {Dir}/{tenant}.ix holding, for file generation G:
//
//	vectors.G  node i's unit vector: dim float32s at i*dim*4 (mapped; written once per node)
//	links.G    node i's layer-0 links: 1+2M uint32s at i*(1+2M)*4, count then ids (mapped; changed
//	           in place as later nodes link to it)
//	chunks.G   append-only chunk records: ids, title, source, URL, metadata, where the text is
//	text.G     append-only chunk texts (as given: retrieval's sealedindex hands ciphertext); a deleted
//	           chunk's text is overwritten with zeros in place
//	tombs.G    append-only deleted node ids
//	terms.G    append-only analysed words of each node that has some, as 64-bit hashes with their
//	           frequencies (lexical.go): the postings of the lexical half are rebuilt from it at open
//	upper-S.G  append-only upper-layer links of the nodes that changed (the last record of a node
//	           wins); rewritten as upper-{S+1}.G when it is mostly superseded records
//	MANIFEST   how many nodes and how many bytes of each log are the index, the graph's entry point,
//	           and the checkpoint; written to a temporary file, fsync'd and renamed
//
// A flush appends what changed since the last one (never rewriting what is on disk), fsyncs the
// files, then writes the manifest: the checkpoint it carries never claims more than the files hold.
// At open, whatever a log holds past the manifest's length is cut off (written after the last
// flush; the retrieval module replays the tenant's document events after the checkpoint). Links are
// changed in place, so after a crash a link may name a node the manifest no longer counts: searches
// skip those (a link only guides the search; which chunks exist and are deleted lives in the logs).
// A compaction (more tombstones than live chunks) or a new dimension writes generation G+1 beside
// G, switches the manifest to it and removes G.

const manifestVersion = 3 // 2: with the codes file; 3: with the terms log

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
}

const manifestName = "MANIFEST"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// partFiles are one generation's files of a partition.
type partFiles struct {
	vecs, links, codes         *region
	chunks, text, tombs, upper *appendLog
	terms                      *appendLog
}

func (f *partFiles) close() error {
	var errs []error
	for _, r := range []*region{f.vecs, f.links, f.codes} {
		if r != nil {
			errs = append(errs, r.close())
		}
	}
	for _, l := range []*appendLog{f.chunks, f.text, f.tombs, f.upper, f.terms} {
		if l != nil {
			errs = append(errs, l.close())
		}
	}
	return errors.Join(errs...)
}

func (f *partFiles) sync() error {
	var errs []error
	for _, r := range []*region{f.vecs, f.links, f.codes} {
		errs = append(errs, r.sync())
	}
	for _, l := range []*appendLog{f.chunks, f.text, f.tombs, f.upper, f.terms} {
		errs = append(errs, l.sync())
	}
	return errors.Join(errs...)
}

func fileName(kind string, gen uint64) string { return kind + "." + strconv.FormatUint(gen, 10) }

func upperKind(seq uint64) string { return "upper-" + strconv.FormatUint(seq, 10) }

func (ix *Index) partDir(t tenant.ID) string { return filepath.Join(ix.cfg.Dir, t.String()+".ix") }

// newPartition makes an empty partition with fresh files of generation gen (memory only without a
// folder).
func (ix *Index) newPartition(t tenant.ID, dim int, gen uint64) (*partition, error) {
	p := &partition{t: t, gen: gen, ids: newIDs(0), lex: newLexIndex()}
	f := &partFiles{vecs: &region{}, links: &region{}, codes: &region{}, chunks: &appendLog{}, text: &appendLog{}, tombs: &appendLog{}, upper: &appendLog{}, terms: &appendLog{}}
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
	p.g = newGraph(dim, ix.cfg.M, ix.cfg.EfConstruction, ix.seed(t, 0), f.vecs, f.links, f.codes)
	return p, nil
}

func createFiles(dir string, gen uint64) (*partFiles, error) {
	f := &partFiles{}
	for _, kind := range []string{"vectors", "links", "codes", "chunks", "text", "tombs", "upper-0", "terms"} {
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
		if f.links, err = openRegion(path("links"), int64(m.Nodes)*int64(1+2*m.M)*4); err == nil {
			f.codes, err = openRegion(path("codes"), int64(m.Nodes)*int64(codeSize(m.Dim)))
		}
		if err == nil {
			if f.chunks, err = openLog(path("chunks"), m.Chunks); err == nil {
				if f.text, err = openLog(path("text"), m.Text); err == nil {
					if f.tombs, err = openLog(path("tombs"), m.Tombs); err == nil {
						if f.upper, err = openLog(path(upperKind(m.UpperSeq)), m.Upper); err == nil {
							f.terms, err = openLog(path("terms"), m.Terms)
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
	}
	return errors.Join(errs...)
}

// flush appends the changed upper links, fsyncs the files and writes the manifest. The caller holds
// p.mu for writing: the manifest's content and checkpoint are of one moment. It costs a few fsyncs,
// not a rewrite of the index.
func (p *partition) flush() (err error) {
	if !p.dirty {
		return nil
	}
	if p.dir == "" {
		clear(p.g.dirtyUp)
		p.dirty = false
		return nil
	}
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
	if err := p.files.sync(); err != nil {
		return err
	}
	m := manifest{Version: manifestVersion, Tenant: p.t.String(), Gen: p.gen, Dim: p.g.dim, M: p.g.m, EfC: p.g.efC,
		Entry: p.g.entry, MaxLevel: p.g.maxLevel, Nodes: p.g.len(), Live: p.live, Checkpoint: p.cp,
		Chunks: p.files.chunks.size, Text: p.files.text.size, Tombs: p.files.tombs.size, Upper: p.files.upper.size, Terms: p.files.terms.size,
		UpperSeq: p.upperSeq}
	if err := writeManifest(p.dir, &m); err != nil {
		return err
	}
	// What inserts touched of the float vectors is on disk now; searches read them with pread.
	p.files.vecs.dropResident()
	clear(p.g.dirtyUp)
	p.dirty = false
	return nil
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
	if m.Version != manifestVersion {
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
			for _, kind := range []string{"vectors", "links", "codes", "chunks", "text", "tombs", "upper-0", "terms"} {
				_ = os.Remove(filepath.Join(np.dir, fileName(kind, np.gen)))
			}
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
	}
	np.dirty = true
	if err := np.flush(); err != nil {
		return fail(err)
	}
	old := p.files
	p.gen, p.upperSeq, p.g, p.files, p.refs, p.deleted, p.ids, p.lex, p.live, p.dirty =
		np.gen, np.upperSeq, np.g, np.files, np.refs, np.deleted, np.ids, np.lex, np.live, false
	_ = old.close()
	if p.dir != "" {
		removeOtherGens(p.dir, p.gen, p.upperSeq)
	}
	return nil
}

// removeOtherGens deletes files of generations other than gen (an old one after a compaction, or
// a new one a crash left half written).
func removeOtherGens(dir string, gen, upperSeq uint64) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	keep := "." + strconv.FormatUint(gen, 10)
	for _, e := range ents {
		name := e.Name()
		if name == manifestName || (strings.HasSuffix(name, keep) && (!strings.HasPrefix(name, "upper-") || name == fileName(upperKind(upperSeq), gen))) {
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
	removeOtherGens(dir, m.Gen, m.UpperSeq)
	f := &partFiles{}
	if err := f.open(dir, m.Gen, m); err != nil {
		return nil, err
	}
	p := &partition{t: t, dir: dir, gen: m.Gen, upperSeq: m.UpperSeq, files: f, cp: m.Checkpoint, live: m.Live,
		ids: newIDs(m.Live), lex: newLexIndex()}
	p.g = newGraph(m.Dim, m.M, m.EfC, ix.seed(t, m.Nodes), f.vecs, f.links, f.codes)
	p.g.n, p.g.entry, p.g.maxLevel = m.Nodes, m.Entry, m.MaxLevel
	if m.Nodes == 0 {
		p.g.entry = -1
	}
	if err := p.loadLogs(m); err != nil {
		_ = f.close()
		return nil, err
	}
	return p, nil
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
			p.ids.addChunk(p.ids.hashBytes(chunkID), id)
			p.ids.addDoc(p.ids.hashBytes(docID), id)
		}
		off += 8 + int64(n)
	}
	if len(p.refs) != m.Nodes {
		return fmt.Errorf("%d chunk records for %d nodes", len(p.refs), m.Nodes)
	}
	if err := p.loadTerms(m.Terms); err != nil {
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
// length, and the chunk's ids, title, source, URL and metadata (uvarint-prefixed strings).
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
