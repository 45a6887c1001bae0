package embedded

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"sort"
	"strconv"

	"golang.org/x/sys/unix"
)

// A lexical segment (lexseg-N.G) is an immutable, memory-mapped slice of the postings: every term
// of the nodes in [lo, hi) that were live when it was written, sorted by term hash. Opening one
// reads its 64-byte header; a query binary-searches the dictionary and reads only the postings of
// its terms, so neither open time nor heap grows with the corpus (the page cache holds the rest).
//
//	header      64 bytes: magic, lo, hi, terms, postings, dictionary offset, file size, CRC-32C
//	postings    per term, its postings in node order: node, frequency, node length (uint32s)
//	dictionary  per term, by hash: hash, postings offset, count, and a CRC-32C of those and of
//	            the term's postings, checked on every read (a flipped bit fails that query and has
//	            the segments rebuilt from the terms log, see lexical.go)

const (
	segMagic      = "CRLXSEG1"
	segHeaderSize = 64
	segPostSize   = 12
	segDictSize   = 24
)

var errSegCorrupt = errors.New("lexical segment corrupt")

func segKind(seq uint64) string { return "lexseg-" + strconv.FormatUint(seq, 10) }

// lexSeg is one open segment.
type lexSeg struct {
	seq      uint64
	lo, hi   uint32
	terms    int
	postings int64
	size     int64
	f        *os.File
	b        []byte // the mapped file
	dict     []byte // b's dictionary
}

// lexSegInfo is a segment as the manifest names it.
type lexSegInfo struct {
	Seq      uint64 `json:"seq"`
	Lo       uint32 `json:"lo"`
	Hi       uint32 `json:"hi"`
	Postings int64  `json:"postings"`
	Size     int64  `json:"size"`
}

func (s *lexSeg) info() lexSegInfo {
	return lexSegInfo{Seq: s.seq, Lo: s.lo, Hi: s.hi, Postings: s.postings, Size: s.size}
}

// termSource yields terms in ascending hash order, each with its postings in node order; it stops
// at the first error.
type termSource func(yield func(hash uint64, ps []posting) error) error

// writeSeg writes a segment of nodes [lo, hi) from src to path, fsync'd, and opens it. Terms whose
// postings are all filtered out by the source are simply absent. A segment with no terms is not
// written (nil, nil).
func writeSeg(path string, seq uint64, lo, hi uint32, src termSource) (*lexSeg, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*lexSeg, error) {
		_ = f.Close()
		_ = os.Remove(path)
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := w.Write(make([]byte, segHeaderSize)); err != nil {
		return fail(err)
	}
	off := int64(segHeaderSize)
	var dict []byte
	var nPost int64
	var buf []byte
	err = src(func(hash uint64, ps []posting) error {
		if len(ps) == 0 {
			return nil
		}
		buf = buf[:0]
		for _, p := range ps {
			buf = binary.LittleEndian.AppendUint32(buf, p.node)
			buf = binary.LittleEndian.AppendUint32(buf, p.tf)
			buf = binary.LittleEndian.AppendUint32(buf, p.dl)
		}
		e := len(dict)
		dict = binary.LittleEndian.AppendUint64(dict, hash)
		dict = binary.LittleEndian.AppendUint64(dict, uint64(off))
		dict = binary.LittleEndian.AppendUint32(dict, uint32(len(ps)))
		crc := crc32.Update(crc32.Checksum(dict[e:e+20], castagnoli), castagnoli, buf)
		dict = binary.LittleEndian.AppendUint32(dict, crc)
		if _, err := w.Write(buf); err != nil {
			return err
		}
		off += int64(len(buf))
		nPost += int64(len(ps))
		return nil
	})
	if err != nil {
		return fail(err)
	}
	if len(dict) == 0 {
		_ = f.Close()
		_ = os.Remove(path)
		return nil, nil
	}
	pad := (8 - off%8) % 8 // the dictionary starts 8-aligned
	if _, err := w.Write(make([]byte, pad)); err != nil {
		return fail(err)
	}
	dictOff := off + pad
	if _, err := w.Write(dict); err != nil {
		return fail(err)
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	size := dictOff + int64(len(dict))
	h := segHeader(lo, hi, len(dict)/segDictSize, nPost, dictOff, size)
	if _, err := f.WriteAt(h, 0); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	s := &lexSeg{seq: seq, f: f}
	if err := s.mapAndCheck(lexSegInfo{Seq: seq, Lo: lo, Hi: hi, Postings: nPost, Size: size}); err != nil {
		return fail(err)
	}
	return s, nil
}

func segHeader(lo, hi uint32, terms int, postings, dictOff, size int64) []byte {
	h := make([]byte, 0, segHeaderSize)
	h = append(h, segMagic...)
	h = binary.LittleEndian.AppendUint32(h, lo)
	h = binary.LittleEndian.AppendUint32(h, hi)
	h = binary.LittleEndian.AppendUint64(h, uint64(terms))
	h = binary.LittleEndian.AppendUint64(h, uint64(postings))
	h = binary.LittleEndian.AppendUint64(h, uint64(dictOff))
	h = binary.LittleEndian.AppendUint64(h, uint64(size))
	h = append(h, make([]byte, segHeaderSize-4-len(h))...)
	return binary.LittleEndian.AppendUint32(h, crc32.Checksum(h, castagnoli))
}

// openSeg opens and maps the segment the manifest names as want. A file that is missing, shorter
// or longer than named, or whose header does not check out is an error (the caller rebuilds the
// segments from the terms log).
func openSeg(path string, want lexSegInfo) (*lexSeg, error) {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	s := &lexSeg{seq: want.Seq, f: f}
	if err := s.mapAndCheck(want); err != nil {
		_ = s.close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func (s *lexSeg) mapAndCheck(want lexSegInfo) error {
	st, err := s.f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != want.Size || st.Size() < segHeaderSize {
		return fmt.Errorf("%w: %d bytes, the manifest says %d (torn or truncated)", errSegCorrupt, st.Size(), want.Size)
	}
	b, err := unix.Mmap(int(s.f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	// Queries read a dictionary entry or two per term and that term's postings: read-ahead would
	// only fill memory with postings no query asked for.
	_ = unix.Madvise(b, unix.MADV_RANDOM)
	s.b = b
	h := b[:segHeaderSize]
	if string(h[:8]) != segMagic || binary.LittleEndian.Uint32(h[60:]) != crc32.Checksum(h[:60], castagnoli) {
		return fmt.Errorf("%w: bad header", errSegCorrupt)
	}
	s.lo, s.hi = binary.LittleEndian.Uint32(h[8:]), binary.LittleEndian.Uint32(h[12:])
	terms, postings := binary.LittleEndian.Uint64(h[16:]), binary.LittleEndian.Uint64(h[24:])
	dictOff, size := binary.LittleEndian.Uint64(h[32:]), binary.LittleEndian.Uint64(h[40:])
	if s.lo != want.Lo || s.hi != want.Hi || int64(postings) != want.Postings || int64(size) != want.Size ||
		s.lo > s.hi || dictOff%8 != 0 || dictOff > size || postings > size/segPostSize || dictOff < segHeaderSize+postings*segPostSize ||
		terms > (size-dictOff)/segDictSize || dictOff+terms*segDictSize != size {
		return fmt.Errorf("%w: header does not match the manifest", errSegCorrupt)
	}
	s.terms, s.postings, s.size = int(terms), int64(postings), int64(size)
	s.dict = b[dictOff:size]
	return nil
}

// entry returns dictionary entry i's hash.
func (s *lexSeg) hashAt(i int) uint64 { return binary.LittleEndian.Uint64(s.dict[i*segDictSize:]) }

// postingsAt returns entry i's postings (checked against its CRC), a view into the mapping.
func (s *lexSeg) postingsAt(i int) ([]byte, error) {
	e := s.dict[i*segDictSize : (i+1)*segDictSize]
	off, n := binary.LittleEndian.Uint64(e[8:]), uint64(binary.LittleEndian.Uint32(e[16:]))
	end := off + n*segPostSize
	if off < segHeaderSize || end < off || end > uint64(len(s.b)) {
		return nil, fmt.Errorf("%w: %s entry %d out of place", errSegCorrupt, segKind(s.seq), i)
	}
	raw := s.b[off:end]
	if crc32.Update(crc32.Checksum(e[:20], castagnoli), castagnoli, raw) != binary.LittleEndian.Uint32(e[20:]) {
		return nil, fmt.Errorf("%w: %s checksum mismatch at entry %d", errSegCorrupt, segKind(s.seq), i)
	}
	return raw, nil
}

// lookup returns the postings of hash in this segment (nil when it has none).
func (s *lexSeg) lookup(hash uint64) ([]byte, error) {
	i := sort.Search(s.terms, func(i int) bool { return s.hashAt(i) >= hash })
	if i == s.terms || s.hashAt(i) != hash {
		return nil, nil
	}
	return s.postingsAt(i)
}

// postingAt decodes posting i of raw postings.
func postingAt(raw []byte, i int) posting {
	o := i * segPostSize
	return posting{binary.LittleEndian.Uint32(raw[o:]), binary.LittleEndian.Uint32(raw[o+4:]), binary.LittleEndian.Uint32(raw[o+8:])}
}

// mergeSource yields the terms of adjacent segments (in node order) as one, without the postings
// of nodes dead reports deleted.
func mergeSource(segs []*lexSeg, dead func(uint32) bool) termSource {
	return func(yield func(uint64, []posting) error) error {
		pos := make([]int, len(segs))
		var ps []posting
		for {
			var h uint64
			found := false
			for i, s := range segs {
				if pos[i] < s.terms {
					if x := s.hashAt(pos[i]); !found || x < h {
						h, found = x, true
					}
				}
			}
			if !found {
				return nil
			}
			ps = ps[:0]
			for i, s := range segs {
				if pos[i] >= s.terms || s.hashAt(pos[i]) != h {
					continue
				}
				raw, err := s.postingsAt(pos[i])
				if err != nil {
					return err
				}
				for j := range len(raw) / segPostSize {
					if p := postingAt(raw, j); !dead(p.node) {
						ps = append(ps, p)
					}
				}
				pos[i]++
			}
			if err := yield(h, ps); err != nil {
				return err
			}
		}
	}
}

func (s *lexSeg) close() error {
	var err error
	if s.b != nil {
		err = unix.Munmap(s.b)
		s.b, s.dict = nil, nil
	}
	if s.f != nil {
		if cerr := s.f.Close(); err == nil {
			err = cerr
		}
		s.f = nil
	}
	return err
}
