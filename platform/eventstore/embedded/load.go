package embedded

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"github.com/crispy-enigma/crispy/platform/eventstore"

	"github.com/crispy-enigma/crispy/platform/atomicfile"
)

// TornTail is a damaged end of the log with nothing valid after it: what a crash during a write
// leaves. The events before it are intact; the bytes from Offset on were never acknowledged whole.
type TornTail struct {
	Offset int64  // where the valid prefix ends
	Bytes  int64  // how many bytes follow it
	Reason string // what is wrong with the first of them
}

func (t *TornTail) String() string {
	return fmt.Sprintf("%d bytes at offset %d (%s)", t.Bytes, t.Offset, t.Reason)
}

// scanResult is what a scan of the log found.
type scanResult struct {
	end     int64     // where the valid prefix ends
	lastRec int64     // offset of its last record (-1: none)
	lastCRC uint32    // that record's checksum
	torn    *TornTail // a damaged end with nothing valid after it
	events  int       // events in the records scanned
}

// scan reads the log from offset from (a record boundary) to its end and checks every record's
// checksum; it never changes the file. fn gets each valid record at or after applyFrom, in order
// (records before it are only checked). A damaged record with nothing valid after it is the torn
// tail, returned for the caller to cut or report; a damaged record followed by a valid one is
// corruption (ErrCorrupt), and the store must not open. lastRec is the last record before from
// (-1: none), for a scan that finds nothing.
//
// For a read-only open beside a live writer, a record that extends past the end, or a file that
// shrinks while it is read, is a write in flight: the scan stops before it and reports nothing. And
// a damaged record is read a second time, afresh, before it is judged: the writer rewrites the bytes
// past its acknowledged size when it cuts a failed write and appends again after healing, so bytes
// buffered before that and read after it can make a record that never was. The second read is
// consistent unless a whole further fault and heal (a heal interval at least) falls within it.
func (s *Store) scan(from, applyFrom, lastRec int64, lastCRC uint32, fn func(kind byte, payload []byte, recOff int64, crc uint32) error) (scanResult, error) {
	res := scanResult{lastRec: lastRec, lastCRC: lastCRC}
	fileSize := func() (int64, error) {
		st, err := s.f.Stat()
		if err != nil {
			return 0, fmt.Errorf("stat %s: %w", s.f.Name(), err)
		}
		return st.Size(), nil
	}
	size, err := fileSize()
	if err != nil {
		return res, err
	}
	if from > size {
		return res, fmt.Errorf("%w: %s is %d bytes, shorter than its indexed %d", eventstore.ErrCorrupt, s.f.Name(), size, from)
	}
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, from, size-from), int(min(size-from+1, 1<<20)))
	off := from
	var hdr [headerSize]byte
	var payload []byte
	reread := false // the record at off is being read a second time
	for off < size {
		bad := ""
		if size-off < headerSize {
			bad = "partial record header"
		} else if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if !s.live || !errors.Is(err, io.ErrUnexpectedEOF) {
				return res, fmt.Errorf("read %s at %d: %w", s.f.Name(), off, err)
			}
			bad = "record being written" // the writer cut a failed write while we read
		}
		var n int64
		if bad == "" {
			n = int64(binary.LittleEndian.Uint32(hdr[0:4]))
			switch {
			case n > maxRecord || off+headerSize+n > size:
				bad = "record extends past the end of the file"
			default:
				if cap(payload) < int(n) {
					payload = make([]byte, n)
				}
				payload = payload[:n]
				if _, err := io.ReadFull(r, payload); err != nil {
					if !s.live || !errors.Is(err, io.ErrUnexpectedEOF) {
						return res, fmt.Errorf("read %s at %d: %w", s.f.Name(), off, err)
					}
					bad = "record being written"
					break
				}
				c := crc32.Update(0, crcTable, hdr[8:9])
				if crc32.Update(c, crcTable, payload) != binary.LittleEndian.Uint32(hdr[4:8]) {
					bad = "checksum mismatch"
				}
			}
		}
		if bad != "" && s.live && !reread {
			reread = true
			if size, err = fileSize(); err != nil {
				return res, err
			}
			r.Reset(io.NewSectionReader(s.f, off, max(size-off, 0)))
			continue
		}
		if bad != "" {
			if next := s.findValidRecord(off+1, size); next >= 0 {
				return res, fmt.Errorf("%w: %s: %s at offset %d, but a valid record follows at %d; refusing to open: the record was damaged after it was written (restore the data folder from a backup)",
					eventstore.ErrCorrupt, s.f.Name(), bad, off, next)
			}
			res.torn = &TornTail{Offset: off, Bytes: size - off, Reason: bad}
			break
		}
		reread = false
		if hdr[8] == kindEvents {
			d := decoder{b: payload}
			res.events += int(d.uvarint())
		}
		if off >= applyFrom {
			// fn says ErrCorrupt itself for a record whose content is wrong; its other errors
			// (writing the index) are the storage's.
			if err := fn(hdr[8], payload, off, binary.LittleEndian.Uint32(hdr[4:8])); err != nil {
				return res, err
			}
		}
		res.lastRec, res.lastCRC = off, binary.LittleEndian.Uint32(hdr[4:8])
		off += headerSize + n
	}
	res.end = off
	return res, nil
}

// cutTail copies the torn tail to a side file next to the log (events.log.torn-OFFSET-TIME), then
// truncates the log to its valid prefix and fsyncs. The copy keeps the evidence: a damaged last
// record may have been acknowledged once (a bit flip after the fact looks like a torn write). With
// mustKeep (an operator's repair) a failed copy stops the cut; on a writer's open, where the cut is
// the routine recovery from a crash, it is logged and the cut goes on.
func (s *Store) cutTail(t *TornTail, mustKeep bool) (kept string, err error) {
	kept, err = s.keepTail(t)
	if err != nil {
		if mustKeep {
			return "", err
		}
		s.opts.Logger.Error("event store: could not keep a copy of the torn tail", "error", err)
	}
	s.opts.Logger.Warn("event store: truncating torn tail", "file", s.f.Name(), "offset", t.Offset, "droppedBytes", t.Bytes, "reason", t.Reason, "copy", kept)
	if err := s.f.Truncate(t.Offset); err != nil {
		return kept, fmt.Errorf("truncate torn tail of %s at %d: %w", s.f.Name(), t.Offset, err)
	}
	if err := s.f.Sync(); err != nil {
		return kept, fmt.Errorf("fsync %s: %w", s.f.Name(), err)
	}
	return kept, nil
}

// keepTail copies the torn tail's bytes to a new file next to the log and returns its path.
func (s *Store) keepTail(t *TornTail) (string, error) {
	path := fmt.Sprintf("%s.torn-%d-%s", s.f.Name(), t.Offset, s.opts.Now().UTC().Format("20060102T150405.000000000Z"))
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return "", fmt.Errorf("keep the torn tail of %s: %w", s.f.Name(), err)
	}
	_, err = io.Copy(out, io.NewSectionReader(s.f, t.Offset, t.Bytes))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = atomicfile.SyncDir(s.dir)
	}
	if err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("keep the torn tail of %s in %s: %w", s.f.Name(), path, err)
	}
	return path, nil
}

// findValidRecord looks for a checksum-valid record starting anywhere in [from, size). It decides
// whether a bad record is the torn tail (nothing valid after it) or corruption in the middle.
func (s *Store) findValidRecord(from, size int64) int64 {
	const window = 4 << 20
	for start := from; start < size; start += window {
		end := min(start+window+headerSize+maxRecord, size)
		buf := make([]byte, end-start)
		if _, err := s.f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
			return -1
		}
		for i := 0; i < len(buf)-headerSize && int64(i) < window; i++ {
			kind := buf[i+8]
			if kind != kindEvents && kind != kindMetadata {
				continue
			}
			n := int(binary.LittleEndian.Uint32(buf[i : i+4]))
			if n == 0 || i+headerSize+n > len(buf) {
				continue
			}
			c := crc32.Update(0, crcTable, buf[i+8:i+9])
			if crc32.Update(c, crcTable, buf[i+headerSize:i+headerSize+n]) == binary.LittleEndian.Uint32(buf[i+4:i+8]) {
				return start + int64(i)
			}
		}
	}
	return -1
}
