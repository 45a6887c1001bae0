package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// FuzzDecodeEvent feeds arbitrary bytes to the event decoder: it must never panic, and whatever it
// accepts must encode and decode back to the same event.
func FuzzDecodeEvent(f *testing.F) {
	for _, e := range sampleEvents(f) {
		f.Add(encodeEvent(nil, &e))
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEvent(b)
		if err != nil {
			return
		}
		again, err := decodeEvent(encodeEvent(nil, &e))
		if err != nil {
			t.Fatalf("re-encoded event does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", e, again)
		}
	})
}

// FuzzLogLoad scans arbitrary log files, and valid logs followed by arbitrary bytes. The scan must
// never panic, and must never take damaged bytes for events: either it refuses the log as corrupt,
// or it accepts a prefix made only of whole, checksum-valid records (every event of the valid log
// among them, unchanged) and reports everything after that prefix as a torn tail.
func FuzzLogLoad(f *testing.F) {
	valid, want := validLog(f)
	f.Add([]byte{}, true)
	f.Add([]byte{0x40, 0, 0, 0, 1, 2, 3, 4, 1, 'x', 'y'}, true)
	f.Add(valid, false)
	f.Add(valid[:len(valid)-7], false)
	f.Add(valid[:len(valid)/2], true)
	f.Add(append(bytes.Clone(valid[:20]), valid[30:]...), false)
	flipped := bytes.Clone(valid)
	flipped[len(flipped)-3] ^= 0xff
	f.Add(flipped, false)
	f.Add(make([]byte, 64), true)
	// One folder for every input: a worker runs its inputs one at a time, and a folder per input
	// costs more than the scan.
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, afterValid bool) {
		log := data
		prefix := 0
		if afterValid {
			log = append(bytes.Clone(valid), data...)
			prefix = len(valid)
		}
		if err := os.WriteFile(filepath.Join(dir, logName), log, 0o640); err != nil {
			t.Fatal(err)
		}
		s, err := OpenReadOnly(dir, Options{})
		if err != nil {
			if !errors.Is(err, eventstore.ErrCorrupt) {
				t.Fatalf("a damaged log is refused with %v, want ErrCorrupt", err)
			}
			return
		}
		defer s.Close()
		size := s.Size()
		torn := s.TornTail()
		switch {
		case torn == nil && size != int64(len(log)):
			t.Fatalf("valid prefix %d of a %d-byte log and no torn tail", size, len(log))
		case torn != nil && (torn.Offset != size || torn.Offset+torn.Bytes != int64(len(log))):
			t.Fatalf("torn tail %+v of a %d-byte log with a %d-byte valid prefix", torn, len(log), size)
		case size < int64(prefix):
			t.Fatalf("the scan lost part of the valid log: prefix %d, valid log %d", size, prefix)
		}
		if n := wholeRecords(log[:size]); n < 0 {
			t.Fatalf("the accepted prefix of %d bytes is not a sequence of checksum-valid records", size)
		}
		var evs []eventstore.Event
		for _, tid := range s.tenantIDs() {
			got, err := s.ReadTenant(context.Background(), tid, eventstore.Start, 0)
			if err != nil {
				t.Fatalf("read back tenant %s: %v", tid, err)
			}
			evs = append(evs, got...)
		}
		if afterValid {
			byID := map[string]eventstore.Event{}
			for _, e := range evs {
				byID[e.ID] = e
			}
			for _, w := range want {
				if g, ok := byID[w.ID]; !ok || g.Hash != w.Hash || !bytes.Equal(g.Data, w.Data) {
					t.Fatalf("event %s of the valid log is missing or changed after arbitrary bytes were appended", w.ID)
				}
			}
		}
	})
}

// wholeRecords walks b as records and returns how many it holds, or -1 when b is not exactly a
// sequence of whole, checksum-valid records. It is the test's own reading of the format.
func wholeRecords(b []byte) int {
	n := 0
	for len(b) > 0 {
		if len(b) < headerSize {
			return -1
		}
		l := int(binary.LittleEndian.Uint32(b[0:4]))
		if l > len(b)-headerSize {
			return -1
		}
		c := crc32.Update(0, crcTable, b[8:9])
		if crc32.Update(c, crcTable, b[headerSize:headerSize+l]) != binary.LittleEndian.Uint32(b[4:8]) {
			return -1
		}
		b = b[headerSize+l:]
		n++
	}
	return n
}

// tenantIDs lists the tenants that have events.
func (s *Store) tenantIDs() []tenant.ID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []tenant.ID
	for id := range s.tenants {
		if t, err := tenant.Parse(id); err == nil {
			out = append(out, t)
		}
	}
	return out
}

var (
	validOnce sync.Once
	validB    []byte
	validEvs  []eventstore.Event
	validErr  error
)

// validLog is a small log written by the store itself (two tenants, several streams, a metadata
// record), and its events.
func validLog(f *testing.F) ([]byte, []eventstore.Event) {
	validOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fuzzlog")
		if err != nil {
			validErr = err
			return
		}
		defer os.RemoveAll(dir)
		s, err := Open(dir, Options{})
		if err != nil {
			validErr = err
			return
		}
		ctx := context.Background()
		for i, st := range []tenant.Stream{
			tenant.MustStream(tenant.MustParse("acme"), "session", "a"),
			tenant.MustStream(tenant.MustParse("acme"), "session", "b"),
			tenant.MustStream(tenant.MustParse("beta"), "session", "a"),
			tenant.MustStream(tenant.MustParse("acme"), "session", "a"),
		} {
			r, err := s.Append(ctx, st, eventstore.Any,
				eventstore.EventData{Type: "t.E", Data: []byte(fmt.Sprintf(`{"i":%d}`, i))},
				eventstore.EventData{Type: "t.F", Data: []byte(`{"x":"y"}`), RequestID: "r", Actor: "a", User: "ann"})
			if err != nil {
				validErr = err
				return
			}
			validEvs = append(validEvs, r.Events...)
		}
		cut := uint64(1)
		if err := s.SetStreamMetadata(ctx, tenant.MustStream(tenant.MustParse("beta"), "session", "a"), eventstore.StreamMetadata{TruncateBefore: &cut}); err != nil {
			validErr = err
			return
		}
		validEvs = append(validEvs[:4], validEvs[5:]...) // beta's first event is now unreadable
		if err := s.Close(); err != nil {
			validErr = err
			return
		}
		validB, validErr = os.ReadFile(filepath.Join(dir, logName))
	})
	if validErr != nil {
		f.Fatal(validErr)
	}
	return validB, validEvs
}

func sampleEvents(f *testing.F) []eventstore.Event {
	_, evs := validLog(f)
	return evs
}

// FuzzIndexRecords feeds arbitrary bytes to the decoders of the index's records (positions,
// tenants, stream slots, file headers, checkpoints): they never panic, and whatever they accept
// encodes back to the very same bytes.
func FuzzIndexRecords(f *testing.F) {
	var pos [posRecSize]byte
	putPosRec(pos[:], 7, posRec{recOff: 100, recLen: 300, evOff: 2, evLen: 200, h: 42, prev: 3, rev: 1, time: 1e18})
	f.Add(pos[:], uint64(7))
	var ten [tenantRecSize]byte
	putTenantRec(ten[:], "acme", 9)
	f.Add(ten[:], uint64(9))
	var sl [slotSize]byte
	putSlot(sl[:], slot{h: 5, last: 9, metaAt: 77})
	f.Add(sl[:], uint64(0))
	putSlot(sl[:], slot{})
	f.Add(sl[:], uint64(0))
	var hdr [posHeaderSize]byte
	putHeader(hdr[:], posMagic, 0)
	f.Add(hdr[:], uint64(0))
	f.Add(encodeCheckpoint(&checkpoint{seq: 3, pos: 10, off: 2000, lastRec: 1900, lastRecCRC: 5, tables: 2, newest: 3, tenantSum: 8,
		slots: []ckptSlot{{table: 1, idx: 4, s: slot{h: 5, last: 9}}, {table: 0, idx: 9, s: slot{h: 6, metaAt: 3}}}}), uint64(0))
	f.Add(make([]byte, 64), uint64(1))
	f.Fuzz(func(t *testing.T, b []byte, n uint64) {
		if r, err := decodePosRec(b, n); err == nil {
			var out [posRecSize]byte
			putPosRec(out[:], n, r)
			if !bytes.Equal(out[:], b[:posRecSize]) {
				t.Fatalf("position record %+v does not encode back to its bytes", r)
			}
		}
		if p, err := decodeTenantRec(b, "acme"); err == nil {
			var out [tenantRecSize]byte
			putTenantRec(out[:], "acme", p)
			if !bytes.Equal(out[:], b[:tenantRecSize]) {
				t.Fatalf("tenant record %d does not encode back to its bytes", p)
			}
		}
		if s, _, err := decodeSlot(b); err == nil {
			var out [slotSize]byte
			putSlot(out[:], s)
			if !bytes.Equal(out[:], b[:slotSize]) {
				t.Fatalf("slot %+v does not encode back to its bytes", s)
			}
		}
		if c, err := decodeCheckpoint(b); err == nil {
			if !bytes.Equal(encodeCheckpoint(c), b) {
				t.Fatalf("checkpoint %+v does not encode back to its bytes", c)
			}
		}
		_ = checkHeader(b, tableMagic, uint32(n))
	})
}

// FuzzIndexFiles damages one file of a valid store's index (replaced by, or overwritten with,
// arbitrary bytes) and opens the store. The open must succeed (a damaged index is rebuilt, never a
// reason to stop), and every read must return exactly the log's events or fail with
// ErrIndexDamaged: an index, however damaged, never makes the store serve a wrong or a foreign
// event, or panic. (It may hide events of a stream whose slot it names wrongly: the fuzzer can copy
// a valid slot; the disk's own damage, a flipped bit or a block of zeros, fails the checksums.)
func FuzzIndexFiles(f *testing.F) {
	src, files, truth := validIndexedStore(f)
	for i := range files {
		f.Add(uint8(i), uint16(0), []byte{}, true)
		f.Add(uint8(i), uint16(70), []byte{0xff, 0, 1}, false)
	}
	f.Add(uint8(0), uint16(0), make([]byte, 200), true)
	work := filepath.Join(f.TempDir(), "store")
	f.Fuzz(func(t *testing.T, which uint8, off uint16, data []byte, replace bool) {
		if err := os.RemoveAll(work); err != nil {
			t.Fatal(err)
		}
		if err := os.CopyFS(work, os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(work, indexDirName, files[int(which)%len(files)])
		if replace {
			if err := os.WriteFile(p, data, 0o640); err != nil {
				t.Fatal(err)
			}
		} else {
			fh, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = fh.WriteAt(data, int64(off))
			fh.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
		s, err := Open(work, Options{})
		if err != nil {
			t.Fatalf("open with a damaged %s: %v", filepath.Base(p), err)
		}
		defer s.Close()
		ctx := context.Background()
		for tid, want := range truth.tenants {
			got, err := s.ReadTenant(ctx, tid, eventstore.Start, 0)
			if err != nil {
				if !errors.Is(err, ErrIndexDamaged) {
					t.Fatalf("read of tenant %s: %v, want its events or ErrIndexDamaged", tid, err)
				}
				continue
			}
			sameEvents(t, "tenant "+tid.String(), got, want)
		}
		for name, want := range truth.streams {
			st, _ := tenant.ParseStream(name)
			got, err := s.ReadStream(ctx, st, 0, 0)
			if err != nil {
				if !errors.Is(err, ErrIndexDamaged) {
					t.Fatalf("read of %s: %v, want its events or ErrIndexDamaged", name, err)
				}
				continue
			}
			if len(got) > 0 { // hidden: see above
				sameEvents(t, "stream "+name, got, want)
			}
		}
	})
}

// indexTruth is what the store behind validIndexedStore reads.
type indexTruth struct {
	tenants map[tenant.ID][]eventstore.Event
	streams map[string][]eventstore.Event
}

// validIndexedStore is a closed store with a checkpointed index (streams, tenants, metadata, two
// checkpoints), the names of its index files and what it reads.
func validIndexedStore(f *testing.F) (string, []string, indexTruth) {
	dir := f.TempDir()
	s, err := Open(dir, Options{CheckpointInterval: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	h := newHistory()
	h.write(f, s, "s", 6, 3)
	if err := s.checkpoint(); err != nil {
		f.Fatal(err)
	}
	h.write(f, s, "s", 6, 1)
	cut := uint64(2)
	if err := s.SetStreamMetadata(ctx, tenant.MustStream(tenant.MustParse("beta"), "session", "s1"), eventstore.StreamMetadata{TruncateBefore: &cut}); err != nil {
		f.Fatal(err)
	}
	truth := indexTruth{tenants: map[tenant.ID][]eventstore.Event{}, streams: map[string][]eventstore.Event{}}
	for _, tid := range []tenant.ID{tenant.MustParse("acme"), tenant.MustParse("beta")} {
		if truth.tenants[tid], err = s.ReadTenant(ctx, tid, eventstore.Start, 0); err != nil {
			f.Fatal(err)
		}
	}
	for _, name := range h.order {
		st, _ := tenant.ParseStream(name)
		if truth.streams[name], err = s.ReadStream(ctx, st, 0, 0); err != nil {
			f.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(dir, indexDirName))
	if err != nil {
		f.Fatal(err)
	}
	var files []string
	for _, e := range ents {
		if e.Name() != "checkpoint.lock" {
			files = append(files, e.Name())
		}
	}
	if err := os.Remove(filepath.Join(dir, "LOCK")); err != nil {
		f.Fatal(err)
	}
	return dir, files, truth
}
