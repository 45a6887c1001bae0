package embedded

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/lexical"
)

// The lexical half of a partition: BM25 over the chunks' analysed words, kept as 64-bit term
// hashes (lexical.Hash), never as words. Its files, beside the vectors':
//
//	terms.G      the append-only log of one record per node that has words (node, length, each
//	             term's hash and frequency): what everything else is built from
//	lexrefs.G    per node, where its record is in the log and its length in terms (16 bytes, mapped,
//	             written once per node): read for the pseudo-relevance feedback, a compaction and a
//	             delete, never at open
//	lexseg-N.G   immutable segments of postings (lexseg.go), each the terms of a range of nodes,
//	             memory-mapped; the manifest names them
//
// The nodes after the last segment are a small in-memory inverted index (the memtable). A flush
// writes it as a new segment once it holds flushPostings postings (less stays in the log and is
// read back at open: a bounded replay), a write cuts one once it holds memPostings, and adjacent
// segments of similar size are merged by the flush once it has released the partition (queries and
// writes go on meanwhile; binary-counter style, so a posting is rewritten O(log n) times, never past
// mergeCap). So opening
// a tenant reads a few headers and at most the replayed tail, whatever the corpus; its heap holds
// the memtable only. A deleted node's postings stay until a merge or the next compaction and are
// skipped by its tombstone, as its vector is; the live nodes' total length (BM25's mean) is in the
// manifest. A segment that does not check out at open, or a posting list whose checksum fails at
// query time, has every segment rebuilt from the terms log, with a log line.

// Variables only so that tests can make segments of a few hundred postings.
var (
	// flushPostings: a flush writes the memtable as a segment from this many postings (~0.8 MB of
	// terms log, ~650 chunks of 150 words); below, it is replayed from the log at open.
	flushPostings = 1 << 16
	// memPostings: a write cuts a segment at this many postings (~3 MB of postings, ~6 MB of
	// memtable with its map and slack), so ingest between two flushes does not grow the heap with
	// the batch.
	memPostings = 1 << 18
	// mergeCap: merges stop at segments of this many postings (24 MB, ~0.1 s to write on an idle
	// disk), so one merge never holds up the flushes long. Past it segments accumulate, one per 2M postings
	// (~20k chunks), each a binary search per query term.
	mergeCap int64 = 2 << 20
)

const refSize = 16 // bytes per node in lexrefs.G

// posting is one node's frequency of one term, with the node's length (so scoring a posting list
// reads nothing else).
type posting struct {
	node uint32
	tf   uint32
	dl   uint32
}

// termFreq is one term of a node, as the terms log records it.
type termFreq struct {
	hash uint64
	tf   uint32
}

// lexIndex is a partition's lexical state in memory: the memtable and what the manifest records.
type lexIndex struct {
	log     *slog.Logger
	mem     map[uint64][]posting // postings of nodes memLo and after
	memN    int                  // postings in mem
	memLo   uint32               // the first node not in a segment
	covered int64                // bytes of the terms log the segments hold (nodes before memLo)
	total   int64                // the live nodes' terms
	next    uint64               // the next segment's number
	doomed  []string             // files of segments merged away, removed once a manifest no longer names them
	broken  atomic.Bool          // a posting list failed its check: the next flush rebuilds the segments
	final   atomic.Bool          // the index is closing: its flush writes the memtable however small
	merging bool                 // a merge is being written (mergeLex)
}

func newLexIndex(log *slog.Logger) *lexIndex {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &lexIndex{log: log, mem: map[uint64][]posting{}}
}

// lexManifest is the lexical half's part of the manifest. Absent (an older manifest): the
// postings are built from the terms log at open, once.
type lexManifest struct {
	Segs    []lexSegInfo `json:"segs"`
	MemLo   uint32       `json:"memLo"`
	Covered int64        `json:"covered"`
	Total   int64        `json:"total"`
	Next    uint64       `json:"next"`
}

// lexFiles are a generation's lexical files besides the terms log.
type lexFiles struct {
	refs *region
	segs []*lexSeg
	// reading is held (shared) by a background merge while it reads segments without the
	// partition's lock; whatever closes segments (a rebuild from the terms log, a compaction's or a
	// release's close) takes it exclusively first, so no merge reads an unmapped segment.
	reading sync.RWMutex
}

// openLexFiles maps lexrefs.G (a manifest without a lexical part committed none of it).
func openLexFiles(dir string, gen uint64, m *manifest) (*lexFiles, error) {
	var committed int64
	if m.Lex != nil {
		committed = int64(m.Nodes) * refSize
	}
	r, err := openRegion(filepath.Join(dir, fileName("lexrefs", gen)), committed)
	if err != nil {
		return nil, err
	}
	return &lexFiles{refs: r}, nil
}

func (f *lexFiles) close() error {
	if f == nil {
		return nil
	}
	f.reading.Lock()
	defer f.reading.Unlock()
	var errs []error
	for _, s := range f.segs {
		errs = append(errs, s.close())
	}
	f.segs = nil
	if f.refs != nil {
		errs = append(errs, f.refs.close())
	}
	return errors.Join(errs...)
}

func (f *lexFiles) sync() error { return f.refs.sync() }

// ref reads node id's place in the terms log and its length.
func (f *lexFiles) ref(id uint32) (off int64, n, dl uint32) {
	o := int(id) * refSize
	if o+refSize > len(f.refs.b) {
		return 0, 0, 0
	}
	b := f.refs.b[o : o+refSize]
	return int64(binary.LittleEndian.Uint64(b)), binary.LittleEndian.Uint32(b[8:]), binary.LittleEndian.Uint32(b[12:])
}

func (f *lexFiles) setRef(id uint32, off int64, n, dl uint32) error {
	o := int(id) * refSize
	if err := f.refs.ensure(o + refSize); err != nil {
		return err
	}
	b := f.refs.b[o : o+refSize]
	binary.LittleEndian.PutUint64(b, uint64(off))
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint32(b[12:], dl)
	return nil
}

// termCounts folds analysed words into (hash, frequency) pairs, sorted by hash, and the length.
func termCounts(terms []string) ([]termFreq, uint32) {
	if len(terms) == 0 {
		return nil, 0
	}
	m := make(map[uint64]uint32, len(terms))
	for _, t := range terms {
		m[lexical.Hash(t)]++
	}
	out := make([]termFreq, 0, len(m))
	for h, n := range m {
		out = append(out, termFreq{h, n})
	}
	slices.SortFunc(out, func(a, b termFreq) int { return cmp.Compare(a.hash, b.hash) })
	return out, uint32(len(terms))
}

// appendTerms appends node id's terms record to the log (none without words); undo takes it back
// when the rest of the node's writes fail, so the next node's record takes its place instead of
// leaving a second record of the same node id.
func (p *partition) appendTerms(id uint32, tfs []termFreq, dl uint32) (off int64, n uint32, undo func(), err error) {
	if len(tfs) == 0 {
		return 0, 0, func() {}, nil
	}
	rec := encodeTerms(id, tfs, dl)
	if off, err = p.files.terms.append(rec); err != nil {
		return 0, 0, nil, err
	}
	return off, uint32(len(rec)), func() { p.files.terms.size = off }, nil
}

// setTermsRef records where node id's terms are (before the node is added: it can fail).
func (p *partition) setTermsRef(id uint32, off int64, n, dl uint32) error {
	return p.files.lex.setRef(id, off, n, dl)
}

// addTerms puts node id's postings in the memtable (the node is the newest one), and cuts a
// segment when the memtable has grown to memPostings.
func (p *partition) addTerms(id uint32, tfs []termFreq, dl uint32) error {
	x := p.lex
	for _, t := range tfs {
		x.mem[t.hash] = append(x.mem[t.hash], posting{id, t.tf, dl})
	}
	x.memN += len(tfs)
	x.total += int64(dl)
	if x.memN >= memPostings && p.dir != "" {
		return p.cutSeg(id+1, p.files.terms.size)
	}
	return nil
}

// removeTerms takes a deleted node's length out of the live total (its postings are skipped by the
// tombstone).
func (p *partition) removeTerms(id uint32) {
	_, _, dl := p.files.lex.ref(id)
	p.lex.total -= int64(dl)
}

// cutSeg writes the memtable's postings of live nodes as a segment of nodes [memLo, hi) (hi: the
// node after the last one in it; covered: the terms log's size up to there). Merging is the
// flush's, outside the lock (mergeLex).
func (p *partition) cutSeg(hi uint32, covered int64) error {
	x := p.lex
	hashes := make([]uint64, 0, len(x.mem))
	for h := range x.mem {
		hashes = append(hashes, h)
	}
	slices.Sort(hashes)
	var ps []posting
	src := func(yield func(uint64, []posting) error) error {
		for _, h := range hashes {
			ps = ps[:0]
			for _, q := range x.mem[h] {
				if !p.deleted[q.node] {
					ps = append(ps, q)
				}
			}
			if err := yield(h, ps); err != nil {
				return err
			}
		}
		return nil
	}
	seq := x.next
	s, err := writeSeg(filepath.Join(p.dir, fileName(segKind(seq), p.gen)), seq, x.memLo, hi, src)
	if err != nil {
		return err
	}
	x.next++
	if s != nil {
		p.files.lex.segs = append(p.files.lex.segs, s)
	}
	x.mem, x.memN, x.memLo, x.covered = map[uint64][]posting{}, 0, hi, covered
	return nil
}

// A merge is chosen under the partition's lock, written outside it (queries and writes go on; the
// segments it reads are immutable), and swapped in under the lock if its two segments are still
// there; the next flush's manifest names the result. Policy: the newest adjacent pair where the
// older is at most twice the newer and the result stays under mergeCap (binary-counter style: a
// posting is rewritten O(log n) times).
type mergePlan struct {
	f    *lexFiles
	a, b *lexSeg
	gen  uint64
	seq  uint64
	dead []bool // the pair's nodes deleted when it was chosen (later deletes stay tombstones)
}

// planMerge picks the next merge, if any (the caller holds p.mu for writing).
func (p *partition) planMerge() *mergePlan {
	x, f := p.lex, p.files.lex
	if p.dir == "" || p.gone || x.merging || x.final.Load() {
		return nil
	}
	for i := len(f.segs) - 1; i >= 1; i-- {
		a, b := f.segs[i-1], f.segs[i]
		if a.postings <= 2*b.postings && a.postings+b.postings <= mergeCap {
			seq := x.next
			x.next++
			x.merging = true
			return &mergePlan{f: f, a: a, b: b, gen: p.gen, seq: seq, dead: slices.Clone(p.deleted[a.lo:b.hi])}
		}
	}
	return nil
}

// mergeLex runs the merges the policy asks for, one at a time, each written without the
// partition's lock. Called by Flush after it released the partition.
func (p *partition) mergeLex() error {
	for {
		p.mu.Lock()
		plan := p.planMerge()
		p.mu.Unlock()
		if plan == nil {
			return nil
		}
		if err := p.runMerge(plan); err != nil {
			return fmt.Errorf("merge lexical segments: %w", err)
		}
	}
}

func (p *partition) runMerge(plan *mergePlan) error {
	path := filepath.Join(p.dir, fileName(segKind(plan.seq), plan.gen))
	lo := plan.a.lo
	plan.f.reading.RLock()
	var m *lexSeg
	var err error
	if plan.a.b != nil && plan.b.b != nil { // not closed before the merge began
		m, err = writeSeg(path, plan.seq, lo, plan.b.hi, mergeSource([]*lexSeg{plan.a, plan.b}, func(id uint32) bool { return id >= lo && int(id-lo) < len(plan.dead) && plan.dead[id-lo] }))
	}
	plan.f.reading.RUnlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lex.merging = false
	if errors.Is(err, errSegCorrupt) {
		p.lex.broken.Store(true)
	}
	if err != nil {
		return err
	}
	f := p.files.lex
	i := slices.Index(f.segs, plan.a)
	if p.gone || f != plan.f || p.gen != plan.gen || i < 0 || i+1 >= len(f.segs) || f.segs[i+1] != plan.b {
		// A compaction, a rebuild or a release replaced the pair meanwhile: the merge is moot.
		if m != nil {
			_ = m.close()
			_ = os.Remove(path)
		}
		return nil
	}
	if m != nil {
		f.segs = slices.Replace(f.segs, i, i+2, m)
	} else {
		f.segs = slices.Delete(f.segs, i, i+2)
	}
	for _, s := range []*lexSeg{plan.a, plan.b} {
		p.lex.doomed = append(p.lex.doomed, s.f.Name())
		_ = s.close()
	}
	p.dirty = true
	return nil
}

// flushLex runs in a flush before the files are synced: it writes the memtable as a segment once
// it is large enough, and rebuilds the segments from the terms log if a query found one corrupt.
func (p *partition) flushLex() error {
	x := p.lex
	if x.broken.Load() {
		x.log.Warn("embedded index: a lexical segment was corrupt; the postings are rebuilt from the terms log", "tenant", p.t.String())
		if err := p.relex(); err != nil {
			return fmt.Errorf("rebuild the lexical segments: %w", err)
		}
		x.broken.Store(false)
	}
	if x.memN >= flushPostings || (x.final.Load() && x.memN > 0) {
		return p.cutSeg(uint32(p.g.len()), p.files.terms.size)
	}
	return nil
}

// lexNeedsFlush: a flush has lexical work even if nothing changed (a corrupt segment to rebuild, or
// the memtable to write on Close). The caller holds p.mu.
func (p *partition) lexNeedsFlush() bool {
	return p.lex.broken.Load() || (p.lex.final.Load() && p.lex.memN > 0)
}

// lexFinal runs first in Close: its flush writes every memtable as a segment, so a start after a
// clean stop replays nothing from the terms log (after a crash, at most flushPostings per tenant).
func (ix *Index) lexFinal() {
	for _, p := range ix.partitionList() {
		p.lex.final.Store(true)
	}
}

// lexManifest is what the manifest written by this flush records of the lexical half.
func (p *partition) lexManifest() *lexManifest {
	x := p.lex
	m := &lexManifest{MemLo: x.memLo, Covered: x.covered, Total: x.total, Next: x.next, Segs: []lexSegInfo{}}
	for _, s := range p.files.lex.segs {
		m.Segs = append(m.Segs, s.info())
	}
	return m
}

// lexCommitted runs after a manifest was written: the segments it no longer names go, and the refs
// pages writes touched leave the process's memory (they are on disk).
func (p *partition) lexCommitted() {
	for _, name := range p.lex.doomed {
		_ = os.Remove(name)
	}
	p.lex.doomed = nil
	p.files.lex.refs.dropResident()
}

// openLex opens the lexical half as manifest m describes it: the segments it names (their headers),
// and the terms log past them into the memtable. Without a lexical part in m (an older manifest),
// or with a segment that does not check out, the postings are built from the whole terms log
// instead (and written as segments by the next flush).
func (p *partition) openLex(m *manifest) error {
	x, f := p.lex, p.files.lex
	removeStraySegs(p.dir, p.gen, m.Lex)
	if m.Lex == nil {
		x.log.Info("embedded index: lexical segments built from the terms log (index written by an older version)", "tenant", p.t.String())
		return p.relex()
	}
	l := m.Lex
	err := func() error {
		if l.MemLo > uint32(m.Nodes) || l.Covered > m.Terms || l.Covered < 0 || l.Total < 0 {
			return fmt.Errorf("%w: lexical manifest out of range", errSegCorrupt)
		}
		var prev uint32
		for _, si := range l.Segs {
			if si.Lo < prev || si.Hi < si.Lo || si.Hi > l.MemLo || si.Seq >= l.Next {
				return fmt.Errorf("%w: segment %d covers nodes %d-%d out of order", errSegCorrupt, si.Seq, si.Lo, si.Hi)
			}
			prev = si.Hi
			s, err := openSeg(filepath.Join(p.dir, fileName(segKind(si.Seq), p.gen)), si)
			if err != nil {
				return err
			}
			f.segs = append(f.segs, s)
		}
		return nil
	}()
	if err != nil {
		x.log.Warn("embedded index: lexical segments unusable; the postings are rebuilt from the terms log", "tenant", p.t.String(), "error", err)
		return p.relex()
	}
	x.memLo, x.covered, x.total, x.next = l.MemLo, l.Covered, l.Total, l.Next
	return p.readTerms(l.Covered, m.Terms, false)
}

// removeStraySegs deletes segment files of gen that l does not name (written by a flush or a merge
// whose manifest a crash prevented).
func removeStraySegs(dir string, gen uint64, l *lexManifest) {
	if dir == "" {
		return
	}
	named := map[string]bool{}
	if l != nil {
		for _, s := range l.Segs {
			named[fileName(segKind(s.Seq), gen)] = true
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, "lexseg-") && !named[n] {
			_ = os.Remove(filepath.Join(dir, n))
		}
	}
}

// relex rebuilds the lexical half from the terms log alone: the refs, the live total and the
// postings (cut into segments as the memtable fills, so the heap stays bounded). The segments it
// replaces are removed once the next manifest no longer names them.
func (p *partition) relex() error {
	x, f := p.lex, p.files.lex
	f.reading.Lock() // a merge may be reading them
	for _, s := range f.segs {
		if s.f != nil {
			x.doomed = append(x.doomed, s.f.Name())
		}
		_ = s.close()
	}
	f.segs = nil
	f.reading.Unlock()
	x.mem, x.memN, x.memLo, x.covered, x.total = map[uint64][]posting{}, 0, 0, 0, 0
	n := p.g.len() * refSize
	if err := f.refs.ensure(n); err != nil {
		return err
	}
	clear(f.refs.b[:n])
	p.dirty = true
	return p.readTerms(0, p.files.terms.size, true)
}

// readTerms reads the terms log's records in [from, to) into the memtable (the nodes' refs too;
// all: also their lengths into the live total, and segments cut as the memtable fills). Records
// are in node order, each node once.
func (p *partition) readTerms(from, to int64, all bool) error {
	r := bufio.NewReaderSize(io.NewSectionReader(p.terms(), from, to-from), 1<<20)
	next := p.lex.memLo
	var head [8]byte
	var rec []byte
	for off := from; off < to; {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return fmt.Errorf("terms record at %d: %w", off, err)
		}
		n := int64(binary.LittleEndian.Uint32(head[:]))
		if n > to-off-8 {
			return fmt.Errorf("terms record at %d: length %d past the end", off, n)
		}
		rec = slices.Grow(rec[:0], int(8+n))[:8+n]
		copy(rec, head[:])
		if _, err := io.ReadFull(r, rec[8:]); err != nil {
			return fmt.Errorf("terms record at %d: %w", off, err)
		}
		id, tfs, dl, _, err := decodeTerms(rec)
		if err != nil {
			return fmt.Errorf("terms record at %d: %w", off, err)
		}
		if id < next || int(id) >= p.g.len() {
			return fmt.Errorf("terms record at %d: node %d out of place (next %d of %d)", off, id, next, p.g.len())
		}
		next = id + 1
		if err := p.setTermsRef(id, off, uint32(8+n), dl); err != nil {
			return err
		}
		off += 8 + n
		if p.deleted[id] {
			continue
		}
		x := p.lex
		for _, t := range tfs {
			x.mem[t.hash] = append(x.mem[t.hash], posting{id, t.tf, dl})
		}
		x.memN += len(tfs)
		if all {
			x.total += int64(dl)
			if x.memN >= memPostings && p.dir != "" {
				if err := p.cutSeg(id+1, off); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// terms is the terms log as a ReaderAt (its file, or its bytes without a folder).
func (p *partition) terms() io.ReaderAt {
	if l := p.files.terms; l.f != nil {
		return l.f
	}
	return bytes.NewReader(p.files.terms.buf)
}

// encodeTerms is a terms record: length and CRC-32C of the rest, node id, length in terms, count,
// then per term its hash and frequency.
func encodeTerms(id uint32, tfs []termFreq, dl uint32) []byte {
	b := make([]byte, 8, 8+12+12*len(tfs))
	b = binary.LittleEndian.AppendUint32(b, id)
	b = binary.LittleEndian.AppendUint32(b, dl)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(tfs)))
	for _, t := range tfs {
		b = binary.LittleEndian.AppendUint64(b, t.hash)
		b = binary.LittleEndian.AppendUint32(b, t.tf)
	}
	binary.LittleEndian.PutUint32(b[0:], uint32(len(b)-8))
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], castagnoli))
	return b
}

var errTerms = errors.New("malformed terms record")

// decodeTerms reads one record from b: the node, its terms and length, and what follows.
func decodeTerms(b []byte) (uint32, []termFreq, uint32, []byte, error) {
	if len(b) < 20 {
		return 0, nil, 0, nil, errTerms
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n < 12 || n > len(b)-8 {
		return 0, nil, 0, nil, errTerms
	}
	body := b[8 : 8+n]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return 0, nil, 0, nil, errors.New("terms record checksum mismatch")
	}
	id, dl, c := binary.LittleEndian.Uint32(body), binary.LittleEndian.Uint32(body[4:]), int(binary.LittleEndian.Uint32(body[8:]))
	if c != (n-12)/12 || (n-12)%12 != 0 {
		return 0, nil, 0, nil, errTerms
	}
	tfs := make([]termFreq, c)
	for i := range tfs {
		o := 12 + 12*i
		tfs[i] = termFreq{binary.LittleEndian.Uint64(body[o:]), binary.LittleEndian.Uint32(body[o+8:])}
	}
	return id, tfs, dl, b[8+n:], nil
}

// nodeTerms reads node id's terms back from the log (the feedback and a compaction read them).
func (p *partition) nodeTerms(id uint32) ([]termFreq, uint32, error) {
	off, n, _ := p.files.lex.ref(id)
	if n == 0 {
		return nil, 0, nil
	}
	b := make([]byte, n)
	if err := p.files.terms.readAt(b, off); err != nil {
		return nil, 0, fmt.Errorf("terms of node %d: %w", id, err)
	}
	nid, tfs, dl, _, err := decodeTerms(b)
	if err != nil || nid != id {
		return nil, 0, fmt.Errorf("terms of node %d: %w", id, errTerms)
	}
	return tfs, dl, nil
}

// qterm is one term of a query with its weight (1 per occurrence typed; the feedback's weights
// for an expanded query).
type qterm struct {
	hash uint64
	w    float64
}

func queryTerms(terms []string) []qterm {
	out := make([]qterm, len(terms))
	for i, t := range terms {
		out[i] = qterm{lexical.Hash(t), 1}
	}
	return out
}

// lexScores scores every live node matching q by BM25 (raw, each term's part times its weight),
// and returns the scores (by node, dense), the nodes that scored, and the most a node could score
// (every term saturated), which normalises a score into [0, 1). A term's postings are read from
// each segment (oldest nodes first) and then the memtable, so nodes are visited in id order as
// with a single list.
func (p *partition) lexScores(q []qterm) ([]float32, []uint32, float64, error) {
	if len(q) == 0 || p.live == 0 {
		return nil, nil, 0, nil
	}
	n := p.live
	avg := float64(p.lex.total) / float64(n)
	scores := make([]float32, p.g.len())
	var touched []uint32
	var best float64
	segs := p.files.lex.segs
	raws := make([][]byte, len(segs))
	for _, t := range q {
		df := 0
		for i, s := range segs {
			raw, err := s.lookup(t.hash)
			if err != nil {
				if p.lex.broken.CompareAndSwap(false, true) {
					p.lex.log.Error("embedded index: lexical segment corrupt; it is rebuilt from the terms log at the next flush", "tenant", p.t.String(), "error", err)
				}
				return nil, nil, 0, err
			}
			raws[i] = raw
			for j := range len(raw) / segPostSize {
				if !p.deleted[binary.LittleEndian.Uint32(raw[j*segPostSize:])] {
					df++
				}
			}
		}
		mem := p.lex.mem[t.hash]
		for _, x := range mem {
			if !p.deleted[x.node] {
				df++
			}
		}
		idf := lexical.IDF(n, df)
		best += t.w * idf * (lexical.K1 + 1)
		if df == 0 {
			continue
		}
		score := func(x posting) {
			if p.deleted[x.node] {
				return
			}
			if scores[x.node] == 0 {
				touched = append(touched, x.node)
			}
			scores[x.node] += float32(t.w * idf * lexical.TF(float64(x.tf), float64(x.dl), avg))
		}
		for _, raw := range raws {
			for j := range len(raw) / segPostSize {
				score(postingAt(raw, j))
			}
		}
		for _, x := range mem {
			score(x)
		}
	}
	return scores, touched, best, nil
}

// Pseudo-relevance feedback, with the published defaults rather than values fitted to any
// collection: RM3 as Anserini runs it (the 10 best passages of the first lexical pass, their 10
// heaviest terms, the original query keeping half the weight), and Rocchio for the vector half
// (alpha 1, beta 0.75: Manning, Raghavan and Schütze, Introduction to Information Retrieval §9.1.1)
// over the same passages' float vectors.
const (
	feedbackDocs  = 10
	feedbackTerms = 10
	feedbackOrig  = 0.5
	rocchioBeta   = 0.75
)

// rm3 expands q with the heaviest terms of the feedback nodes fb (scored by the first pass).
func (p *partition) rm3(q []qterm, fb []cand) ([]qterm, error) {
	rel := map[uint64]float64{}
	for _, c := range fb {
		tfs, dl, err := p.nodeTerms(c.id)
		if err != nil {
			return nil, err
		}
		if dl == 0 {
			continue
		}
		for _, t := range tfs {
			rel[t.hash] += float64(c.sim) * float64(t.tf) / float64(dl)
		}
	}
	if len(rel) == 0 {
		return q, nil
	}
	exp := make([]qterm, 0, len(rel))
	for h, w := range rel {
		exp = append(exp, qterm{h, w})
	}
	slices.SortFunc(exp, func(a, b qterm) int {
		if c := cmp.Compare(b.w, a.w); c != 0 {
			return c
		}
		return cmp.Compare(a.hash, b.hash)
	})
	exp = exp[:min(feedbackTerms, len(exp))]
	var sum float64
	for _, t := range exp {
		sum += t.w
	}
	out := make([]qterm, 0, len(q)+len(exp))
	for _, t := range q {
		out = append(out, qterm{t.hash, feedbackOrig * t.w / float64(len(q))})
	}
	for _, t := range exp {
		out = append(out, qterm{t.hash, (1 - feedbackOrig) * t.w / sum})
	}
	return out, nil
}

// rocchio moves the unit query vector v towards the mean of the feedback nodes' vectors.
func (p *partition) rocchio(v []float32, fb []cand) ([]float32, error) {
	if len(fb) == 0 {
		return v, nil
	}
	out := slices.Clone(v)
	buf := make([]float32, p.g.dim)
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(buf))), len(buf)*4)
	w := float32(rocchioBeta / float64(len(fb)))
	for _, c := range fb {
		if err := p.g.vecs.readAt(raw, int64(c.id)*int64(len(raw))); err != nil {
			return nil, fmt.Errorf("vector of node %d: %w", c.id, err)
		}
		for i, x := range buf {
			out[i] += w * x
		}
	}
	return normalized(out), nil
}

// lexTop returns the k best of the scored nodes that pass f, best first (ties by node id: the
// older chunk first).
func (p *partition) lexTop(scores []float32, touched []uint32, k int, f search.Filter) ([]cand, error) {
	order := func(a, b cand) int {
		if c := cmp.Compare(b.sim, a.sim); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	}
	if f.IsZero() {
		// The k best by a bounded heap (worst of them at the root) instead of sorting every node
		// that scored: common words touch most of the partition, and the sort was half a query's
		// CPU. The order is total (ties by id), so the k chosen are those a sort would give.
		h := make([]cand, 0, min(k, len(touched)))
		worse := func(i, j int) bool { return order(h[i], h[j]) > 0 }
		down := func(i int) {
			for {
				w := i
				if l := 2*i + 1; l < len(h) && worse(l, w) {
					w = l
				}
				if r := 2*i + 2; r < len(h) && worse(r, w) {
					w = r
				}
				if w == i {
					return
				}
				h[i], h[w] = h[w], h[i]
				i = w
			}
		}
		for _, id := range touched {
			c := cand{id, scores[id]}
			switch {
			case len(h) < k:
				h = append(h, c)
				for i := len(h) - 1; i > 0 && worse(i, (i-1)/2); i = (i - 1) / 2 {
					h[i], h[(i-1)/2] = h[(i-1)/2], h[i]
				}
			case k > 0 && order(c, h[0]) < 0:
				h[0] = c
				down(0)
			}
		}
		slices.SortFunc(h, order)
		return h, nil
	}
	cs := make([]cand, 0, len(touched))
	for _, id := range touched {
		cs = append(cs, cand{id, scores[id]})
	}
	slices.SortFunc(cs, order)
	out := cs[:0]
	for _, c := range cs {
		if len(out) == k {
			break
		}
		ch, err := p.chunk(c.id)
		if err != nil {
			return nil, err
		}
		if f.Matches(&ch) {
			out = append(out, c)
		}
	}
	return out, nil
}
