package embedded

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"unsafe"
)

// The index's file formats. Every record carries a CRC-32C, so a damaged or foreign byte is noticed
// by the reader, never taken for an entry; every decoder checks its ranges and never panics
// (FuzzIndexRecords). All integers are little-endian.
//
//	positions      64-byte header, then one 56-byte record per event in position order (record p-1
//	               for position p): where the event is in the log, its stream (by hash), the
//	               position of the stream's previous event, its revision and time.
//	t-{tenant}     one 12-byte record per event of the tenant: its position, ascending.
//	streams.N      64-byte header, then a hash table of 32-byte slots, one per stream: the stream's
//	               hash, the position of its last event and the log offset of its latest metadata.
//	               Table N has 2^(12+N) slots; a new table is added when the newest is half full
//	               (lookups try the newest first), so no table is ever rehashed. An empty slot is
//	               written out as one (with its checksum), so a block of zeros the disk returns
//	               reads as damage, not as streams that do not exist.
//	checkpoint.0/1 the checkpoint: what the files cover (position, log offset, the covered log's
//	               last record and its checksum) and the stream slots it wrote, so a crash while it
//	               writes them is redone at the next open. The two files alternate; the valid one
//	               with the higher sequence number wins.
const (
	posHeaderSize   = 64
	posRecSize      = 56
	tenantRecSize   = 12
	slotSize        = 32
	tableHeaderSize = 64
	ckptHeaderSize  = 80
	ckptSlotSize    = 4 + 8 + slotSize
	firstTableBits  = 12
	maxTables       = 32

	posMagic   = "crispy-ix-pos-1\n"
	tableMagic = "crispy-ix-str-1\n"
	ckptMagic  = "crispy-ix-ckp-1\n"
)

var errBadRecord = errors.New("bad index record")

// posRec locates one event: the record holding it in the log, and the event's bytes within the
// record's payload. Reads check the record's checksum and then decode only this event.
type posRec struct {
	recOff int64  // offset of the log record's header
	recLen uint32 // payload length of the log record
	evOff  uint32 // offset of the event's bytes in the payload
	evLen  uint32
	h      uint64 // the stream's hash (its identity in the index)
	prev   uint64 // position of the stream's previous event (0: none)
	rev    uint64
	time   int64 // Unix nanoseconds
}

func putPosRec(b []byte, pos uint64, r posRec) {
	binary.LittleEndian.PutUint64(b[0:], uint64(r.recOff))
	binary.LittleEndian.PutUint32(b[8:], r.recLen)
	binary.LittleEndian.PutUint32(b[12:], r.evOff)
	binary.LittleEndian.PutUint32(b[16:], r.evLen)
	binary.LittleEndian.PutUint64(b[20:], r.h)
	binary.LittleEndian.PutUint64(b[28:], r.prev)
	binary.LittleEndian.PutUint64(b[36:], r.rev)
	binary.LittleEndian.PutUint64(b[44:], uint64(r.time))
	binary.LittleEndian.PutUint32(b[52:], posCRC(b[:52], pos))
}

// posCRC covers the record and its position, so a record read from the wrong place fails too.
func posCRC(b []byte, pos uint64) uint32 {
	var p [8]byte
	binary.LittleEndian.PutUint64(p[:], pos)
	return crc32.Update(crc32.Checksum(b, crcTable), crcTable, p[:])
}

// decodePosRec reads the record of position pos from b (at least posRecSize bytes).
func decodePosRec(b []byte, pos uint64) (posRec, error) {
	if len(b) < posRecSize || pos == 0 {
		return posRec{}, errBadRecord
	}
	if posCRC(b[:52], pos) != binary.LittleEndian.Uint32(b[52:]) {
		return posRec{}, errBadRecord
	}
	r := posRec{
		recOff: int64(binary.LittleEndian.Uint64(b[0:])),
		recLen: binary.LittleEndian.Uint32(b[8:]),
		evOff:  binary.LittleEndian.Uint32(b[12:]),
		evLen:  binary.LittleEndian.Uint32(b[16:]),
		h:      binary.LittleEndian.Uint64(b[20:]),
		prev:   binary.LittleEndian.Uint64(b[28:]),
		rev:    binary.LittleEndian.Uint64(b[36:]),
		time:   int64(binary.LittleEndian.Uint64(b[44:])),
	}
	switch {
	case r.recOff < 0, r.recLen > maxRecord, uint64(r.evOff)+uint64(r.evLen) > uint64(r.recLen), r.evLen == 0,
		r.h == 0, r.prev >= pos:
		return posRec{}, errBadRecord
	}
	return r, nil
}

func putTenantRec(b []byte, tenant string, pos uint64) {
	binary.LittleEndian.PutUint64(b[0:], pos)
	binary.LittleEndian.PutUint32(b[8:], tenantCRC(b[:8], tenant))
}

// tenantCRC covers the position and the tenant, so a record copied into another tenant's file fails.
func tenantCRC(b []byte, tenant string) uint32 {
	// The tenant's bytes are read in place (crc32 only reads them): a tenant read checks one record
	// per event, and a []byte copy of the id was an allocation each.
	return crc32.Update(crc32.Checksum(b, crcTable), crcTable, unsafe.Slice(unsafe.StringData(tenant), len(tenant)))
}

func decodeTenantRec(b []byte, tenant string) (uint64, error) {
	if len(b) < tenantRecSize {
		return 0, errBadRecord
	}
	if tenantCRC(b[:8], tenant) != binary.LittleEndian.Uint32(b[8:]) {
		return 0, errBadRecord
	}
	pos := binary.LittleEndian.Uint64(b)
	if pos == 0 {
		return 0, errBadRecord
	}
	return pos, nil
}

// slot is a stream's entry in a table; the zero slot is an empty one.
type slot struct {
	h      uint64
	last   uint64 // position of the stream's last event (0: it has only metadata)
	metaAt int64  // 1 + the log offset of the record of its latest metadata (0: none)
}

func putSlot(b []byte, s slot) {
	binary.LittleEndian.PutUint64(b[0:], s.h)
	binary.LittleEndian.PutUint64(b[8:], s.last)
	binary.LittleEndian.PutUint64(b[16:], uint64(s.metaAt))
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[:24], crcTable))
	binary.LittleEndian.PutUint32(b[28:], 0)
}

// decodeSlot returns the slot in b; empty is true for an empty slot.
func decodeSlot(b []byte) (s slot, empty bool, err error) {
	if len(b) < slotSize {
		return slot{}, false, errBadRecord
	}
	if crc32.Checksum(b[:24], crcTable) != binary.LittleEndian.Uint32(b[24:]) || binary.LittleEndian.Uint32(b[28:]) != 0 {
		return slot{}, false, errBadRecord
	}
	s = slot{h: binary.LittleEndian.Uint64(b[0:]), last: binary.LittleEndian.Uint64(b[8:]), metaAt: int64(binary.LittleEndian.Uint64(b[16:]))}
	if s == (slot{}) {
		return slot{}, true, nil
	}
	if s.h == 0 || s.metaAt < 0 || (s.last == 0 && s.metaAt == 0) {
		return slot{}, false, errBadRecord
	}
	return s, false, nil
}

// header is the first bytes of the positions file and of each table: a magic string and, for a
// table, its number.
func putHeader(b []byte, magic string, n uint32) {
	copy(b, magic)
	binary.LittleEndian.PutUint32(b[16:], n)
	binary.LittleEndian.PutUint32(b[20:], crc32.Checksum(b[:20], crcTable))
}

func checkHeader(b []byte, magic string, n uint32) bool {
	return len(b) >= 24 && string(b[:16]) == magic && binary.LittleEndian.Uint32(b[16:]) == n &&
		crc32.Checksum(b[:20], crcTable) == binary.LittleEndian.Uint32(b[20:])
}

// checkpoint is what the index files cover, durably.
type checkpoint struct {
	seq        uint64
	pos        uint64 // every event up to this position is in the files
	off        int64  // the log offset they cover: the end of the record holding pos (or of a later metadata record)
	lastRec    int64  // offset of the covered log's last record (-1: the log is empty)
	lastRecCRC uint32 // its checksum, as in its header: the covered log must still have it
	tables     uint32 // how many stream tables exist
	newest     uint64 // slots used in the newest table
	tenantSum  uint32 // tenantsSum of the tenants' record counts it covers
	slots      []ckptSlot
}

// tenantsSum sums a checksum of every tenant's id and record count: an open checks the tenant
// files against it, so a lost or cut tenant file is noticed, not read as a tenant with fewer events.
func tenantsSum(counts map[string]uint64) uint32 {
	var sum uint32
	var n [8]byte
	for id, c := range counts {
		binary.LittleEndian.PutUint64(n[:], c)
		sum += crc32.Update(crc32.Checksum([]byte(id), crcTable), crcTable, n[:])
	}
	return sum
}

// ckptSlot is one slot write of a checkpoint.
type ckptSlot struct {
	table uint32
	idx   uint64
	s     slot
}

func encodeCheckpoint(c *checkpoint) []byte {
	b := make([]byte, ckptHeaderSize+len(c.slots)*ckptSlotSize+4)
	copy(b, ckptMagic)
	binary.LittleEndian.PutUint64(b[16:], c.seq)
	binary.LittleEndian.PutUint64(b[24:], c.pos)
	binary.LittleEndian.PutUint64(b[32:], uint64(c.off))
	binary.LittleEndian.PutUint64(b[40:], uint64(c.lastRec))
	binary.LittleEndian.PutUint32(b[48:], c.lastRecCRC)
	binary.LittleEndian.PutUint32(b[52:], c.tables)
	binary.LittleEndian.PutUint64(b[56:], c.newest)
	binary.LittleEndian.PutUint64(b[64:], uint64(len(c.slots)))
	binary.LittleEndian.PutUint32(b[72:], c.tenantSum)
	p := b[ckptHeaderSize:]
	for _, s := range c.slots {
		binary.LittleEndian.PutUint32(p[0:], s.table)
		binary.LittleEndian.PutUint64(p[4:], s.idx)
		putSlot(p[12:], s.s)
		p = p[ckptSlotSize:]
	}
	binary.LittleEndian.PutUint32(p, crc32.Checksum(b[:len(b)-4], crcTable))
	return b
}

func decodeCheckpoint(b []byte) (*checkpoint, error) {
	if len(b) < ckptHeaderSize+4 || string(b[:16]) != ckptMagic {
		return nil, errBadRecord
	}
	n := binary.LittleEndian.Uint64(b[64:])
	if n > uint64(len(b)) || uint64(len(b)) != ckptHeaderSize+n*ckptSlotSize+4 {
		return nil, errBadRecord
	}
	if crc32.Checksum(b[:len(b)-4], crcTable) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, errBadRecord
	}
	c := &checkpoint{
		seq:        binary.LittleEndian.Uint64(b[16:]),
		pos:        binary.LittleEndian.Uint64(b[24:]),
		off:        int64(binary.LittleEndian.Uint64(b[32:])),
		lastRec:    int64(binary.LittleEndian.Uint64(b[40:])),
		lastRecCRC: binary.LittleEndian.Uint32(b[48:]),
		tables:     binary.LittleEndian.Uint32(b[52:]),
		newest:     binary.LittleEndian.Uint64(b[56:]),
		tenantSum:  binary.LittleEndian.Uint32(b[72:]),
	}
	if c.off < 0 || c.lastRec < -1 || c.lastRec >= c.off && c.off > 0 || c.lastRec >= 0 && c.off == 0 ||
		c.tables == 0 || c.tables > maxTables || c.newest > tableCap(c.tables-1) || c.pos > uint64(c.off) {
		return nil, errBadRecord
	}
	p := b[ckptHeaderSize:]
	c.slots = make([]ckptSlot, n)
	for i := range c.slots {
		s := &c.slots[i]
		s.table = binary.LittleEndian.Uint32(p[0:])
		s.idx = binary.LittleEndian.Uint64(p[4:])
		sl, empty, err := decodeSlot(p[12 : 12+slotSize])
		if err != nil || empty || s.table >= c.tables || s.idx >= tableCap(s.table) {
			return nil, errBadRecord
		}
		s.s = sl
		p = p[ckptSlotSize:]
	}
	return c, nil
}

// tableCap is how many slots table n has.
func tableCap(n uint32) uint64 { return 1 << (firstTableBits + n) }
