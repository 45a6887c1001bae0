package embedded

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"unsafe"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/lexical"
)

// The lexical half of a partition: BM25 over the chunks' analysed words, kept as 64-bit term
// hashes (lexical.Hash), never as words. In memory an inverted index (term -> node, frequency);
// on disk the append-only log terms.G of one record per node that has words, written with the
// node and read back at open to rebuild the postings. A deleted node's postings stay until the
// next compaction and are skipped by its tombstone, as its vector is.

// posting is one node's frequency of one term.
type posting struct {
	node uint32
	tf   uint32
}

// termFreq is one term of a node, as the terms log records it.
type termFreq struct {
	hash uint64
	tf   uint32
}

// lexIndex is a partition's inverted index.
type lexIndex struct {
	post  map[uint64][]posting
	dl    []uint32 // terms per node, by node id (0: no words)
	total int64    // the live nodes' terms
}

func newLexIndex() *lexIndex { return &lexIndex{post: map[uint64][]posting{}} }

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

// add records node id's terms (the node is the next one: ids grow by one).
func (x *lexIndex) add(id uint32, tfs []termFreq, dl uint32) {
	for uint32(len(x.dl)) < id {
		x.dl = append(x.dl, 0)
	}
	x.dl = append(x.dl, dl)
	x.total += int64(dl)
	for _, t := range tfs {
		x.post[t.hash] = append(x.post[t.hash], posting{id, t.tf})
	}
}

// remove takes a deleted node's length out of the live total (its postings are skipped by the
// tombstone).
func (x *lexIndex) remove(id uint32) {
	if int(id) < len(x.dl) {
		x.total -= int64(x.dl[id])
	}
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

// nodeTerms reads node id's terms back from the log (a compaction copies them).
func (p *partition) nodeTerms(id uint32) ([]termFreq, uint32, error) {
	r := p.refs[id]
	if r.termsLen == 0 {
		return nil, 0, nil
	}
	b := make([]byte, r.termsLen)
	if err := p.files.terms.readAt(b, r.terms); err != nil {
		return nil, 0, fmt.Errorf("terms of node %d: %w", id, err)
	}
	nid, tfs, dl, _, err := decodeTerms(b)
	if err != nil || nid != id {
		return nil, 0, fmt.Errorf("terms of node %d: %w", id, errTerms)
	}
	return tfs, dl, nil
}

// loadTerms rebuilds the postings from the first size bytes of the terms log.
func (p *partition) loadTerms(size int64) error {
	b := make([]byte, size)
	if err := p.files.terms.readAt(b, 0); err != nil {
		return fmt.Errorf("terms: %w", err)
	}
	var off int64
	for len(b) > 0 {
		id, tfs, dl, rest, err := decodeTerms(b)
		if err != nil {
			return fmt.Errorf("terms record at %d: %w", off, err)
		}
		if int(id) >= len(p.refs) {
			return fmt.Errorf("terms record at %d: node %d of %d", off, id, len(p.refs))
		}
		n := int64(len(b) - len(rest))
		p.refs[id].terms, p.refs[id].termsLen = off, uint32(n)
		if !p.deleted[id] {
			p.lex.add(id, tfs, dl)
		}
		off += n
		b = rest
	}
	return nil
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
// (every term saturated), which normalises a score into [0, 1).
func (p *partition) lexScores(q []qterm) ([]float32, []uint32, float64) {
	if len(q) == 0 || p.live == 0 {
		return nil, nil, 0
	}
	n := p.live
	avg := float64(p.lex.total) / float64(n)
	scores := make([]float32, p.g.len())
	var touched []uint32
	var best float64
	for _, t := range q {
		ps := p.lex.post[t.hash]
		df := 0
		for _, x := range ps {
			if !p.deleted[x.node] {
				df++
			}
		}
		idf := lexical.IDF(n, df)
		best += t.w * idf * (lexical.K1 + 1)
		if df == 0 {
			continue
		}
		for _, x := range ps {
			if p.deleted[x.node] {
				continue
			}
			if scores[x.node] == 0 {
				touched = append(touched, x.node)
			}
			scores[x.node] += float32(t.w * idf * lexical.TF(float64(x.tf), float64(p.lex.dl[x.node]), avg))
		}
	}
	return scores, touched, best
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
	cs := make([]cand, 0, len(touched))
	for _, id := range touched {
		cs = append(cs, cand{id, scores[id]})
	}
	slices.SortFunc(cs, func(a, b cand) int {
		if c := cmp.Compare(b.sim, a.sim); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	if f.IsZero() {
		return cs[:min(k, len(cs))], nil
	}
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
