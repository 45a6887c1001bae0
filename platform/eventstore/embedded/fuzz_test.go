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
				eventstore.EventData{Type: "t.F", Data: []byte(`{"x":"y"}`), RequestID: "r", Actor: "a"})
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
