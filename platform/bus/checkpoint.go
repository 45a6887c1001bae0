package bus

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"

	"github.com/crispy-enigma/crispy/platform/atomicfile"
)

// forwarderCheckpoint is the forwarder's progress: the position of the last event it published.
type forwarderCheckpoint struct {
	Position  eventstore.Position `json:"position"`
	UpdatedAt time.Time           `json:"updatedAt"`
}

const forwarderFile = "forwarder.json"

// readForwarderCheckpoint returns the saved position, or Start when there is none yet.
func readForwarderCheckpoint(dir string) (eventstore.Position, error) {
	path := filepath.Join(dir, forwarderFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return eventstore.Start, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read forwarder checkpoint: %w", err)
	}
	var cp forwarderCheckpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		// Written by rename, so a broken file is not a torn write but someone else's edit: refuse
		// rather than silently replaying (or skipping) everything.
		return 0, fmt.Errorf("forwarder checkpoint %s is unreadable: %w", path, err)
	}
	return cp.Position, nil
}

// writeForwarderCheckpoint replaces the checkpoint atomically: temp file, fsync, rename, fsync dir.
func writeForwarderCheckpoint(dir string, pos eventstore.Position, now time.Time) error {
	b, err := json.Marshal(forwarderCheckpoint{Position: pos, UpdatedAt: now.UTC()})
	if err != nil {
		return fmt.Errorf("encode forwarder checkpoint: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, forwarderFile), append(b, '\n'), 0o640); err != nil {
		return fmt.Errorf("write forwarder checkpoint: %w", err)
	}
	return nil
}

// slotFile keeps one handler's position in a 32-byte file of two 16-byte slots written in place in
// turn. A write is one pwrite, cheap enough to follow every handled event (so a process crash never
// loses a finished handler's progress); fsync is batched. A write torn by a power cut damages only
// the slot being written, and the other slot still holds the previous position.
type slotFile struct {
	mu    sync.Mutex
	f     *os.File
	next  int64 // slot to write next (the older one)
	pos   uint64
	dirty bool
}

const (
	slotSize  = 16
	slotMagic = 0x31504b43 // "CKP1"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// openSlotFile opens (creating) the file and returns the saved position; found is false for a new
// file or one whose slots are both unreadable.
func openSlotFile(path string) (*slotFile, uint64, bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, 0, false, fmt.Errorf("open handler checkpoint: %w", err)
	}
	buf := make([]byte, 2*slotSize)
	n, _ := f.ReadAt(buf, 0)
	var pos [2]uint64
	var ok [2]bool
	for i := range 2 {
		if n >= (i+1)*slotSize {
			pos[i], ok[i] = decodeSlot(buf[i*slotSize : (i+1)*slotSize])
		}
	}
	s := &slotFile{f: f}
	var best uint64
	found := ok[0] || ok[1]
	switch {
	case ok[0] && ok[1]:
		best = max(pos[0], pos[1])
		if pos[0] > pos[1] {
			s.next = 1
		}
	case ok[0]:
		best, s.next = pos[0], 1
	case ok[1]:
		best, s.next = pos[1], 0
	}
	s.pos = best
	return s, best, found, nil
}

func decodeSlot(b []byte) (uint64, bool) {
	if binary.LittleEndian.Uint32(b[12:16]) != slotMagic {
		return 0, false
	}
	if crc32.Checksum(b[0:8], castagnoli) != binary.LittleEndian.Uint32(b[8:12]) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[0:8]), true
}

// set records pos (no fsync).
func (s *slotFile) set(pos uint64) error {
	var b [slotSize]byte
	binary.LittleEndian.PutUint64(b[0:8], pos)
	binary.LittleEndian.PutUint32(b[8:12], crc32.Checksum(b[0:8], castagnoli))
	binary.LittleEndian.PutUint32(b[12:16], slotMagic)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.f.WriteAt(b[:], s.next*slotSize); err != nil {
		return fmt.Errorf("write handler checkpoint %s: %w", s.f.Name(), err)
	}
	s.next = 1 - s.next
	s.pos, s.dirty = pos, true
	return nil
}

// sync fsyncs the file if it moved since the last sync.
func (s *slotFile) sync() error {
	s.mu.Lock()
	dirty := s.dirty
	s.dirty = false
	s.mu.Unlock()
	if !dirty {
		return nil
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("fsync handler checkpoint %s: %w", s.f.Name(), err)
	}
	return nil
}

func (s *slotFile) close() error {
	err := s.sync()
	if cerr := s.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close handler checkpoint: %w", cerr)
	}
	return err
}

// safeName turns a handler name into a file and broker-safe token that stays readable; the hash
// keeps two names that differ only in replaced characters apart.
func safeName(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("%s-%08x", b.String(), h.Sum32())
}
