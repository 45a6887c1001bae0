package auditlog

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

var (
	acme = tenant.MustParse("acme")
	beta = tenant.MustParse("beta")
)

// seed appends to a new embedded store in dir: acme's streams s1 (4 events), s2 (3) and s3 (2)
// interleaved with beta's, so acme's log is 9 events in global order.
func seed(t *testing.T, dir string) {
	t.Helper()
	s, err := embedded.Open(dir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	app := func(tid tenant.ID, id string, n int) {
		ed, _ := eventstore.NewEventData("test.Happened", map[string]any{"n": n, "stream": id})
		if _, err := s.Append(ctx, tenant.MustStream(tid, "session", id), eventstore.Any, ed); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 {
		app(acme, "s1", i)
		app(beta, "b1", i)
		if i < 3 {
			app(acme, "s2", i)
		}
		if i < 2 {
			app(acme, "s3", i)
		}
	}
}

// readAll returns every event of the store file in dir, in order (read raw from the log).
func readLog(t *testing.T, dir string) []eventstore.Event {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "events.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []eventstore.Event
	for len(b) > 0 {
		n := binary.LittleEndian.Uint32(b[0:4])
		kind, payload := b[8], b[9:9+n]
		b = b[9+n:]
		if kind != 1 {
			t.Fatalf("unexpected record kind %d", kind)
		}
		d := rawDecoder{b: payload}
		for range d.uvarint() {
			l := d.uvarint()
			ev := rawDecoder{b: d.b[:l]}
			d.b = d.b[l:]
			var e eventstore.Event
			e.ID, e.Type, e.Stream = ev.str(), ev.str(), ev.str()
			e.Revision, e.Position = ev.uvarint(), eventstore.Position(ev.uvarint())
			e.Time = time.Unix(0, int64(ev.uvarint())).UTC()
			e.RequestID, e.Actor, e.CausationID, e.CorrelationID = ev.str(), ev.str(), ev.str(), ev.str()
			e.Data = json.RawMessage(ev.str())
			e.Prev, e.Hash = ev.str(), ev.str()
			st, _ := tenant.ParseStream(e.Stream)
			e.Tenant = st.Tenant()
			out = append(out, e)
		}
	}
	return out
}

type rawDecoder struct{ b []byte }

func (d *rawDecoder) uvarint() uint64 { v, n := binary.Uvarint(d.b); d.b = d.b[n:]; return v }
func (d *rawDecoder) str() string     { n := d.uvarint(); s := string(d.b[:n]); d.b = d.b[n:]; return s }

// writeLog replaces the store in dir with evs, each its own record, positions renumbered 1..n as a
// careful forger would (the store refuses gaps), and drops the index so the store rebuilds it.
func writeLog(t *testing.T, dir string, evs []eventstore.Event) {
	t.Helper()
	var out []byte
	tab := crc32.MakeTable(crc32.Castagnoli)
	for i := range evs {
		e := &evs[i]
		e.Position = eventstore.Position(i + 1)
		var p []byte
		str := func(s string) { p = binary.AppendUvarint(p, uint64(len(s))); p = append(p, s...) }
		str(e.ID)
		str(e.Type)
		str(e.Stream)
		p = binary.AppendUvarint(p, e.Revision)
		p = binary.AppendUvarint(p, uint64(e.Position))
		p = binary.AppendUvarint(p, uint64(e.Time.UnixNano()))
		str(e.RequestID)
		str(e.Actor)
		str(e.CausationID)
		str(e.CorrelationID)
		str(string(e.Data))
		str(e.Prev)
		str(e.Hash)
		payload := binary.AppendUvarint(nil, 1)
		payload = binary.AppendUvarint(payload, uint64(len(p)))
		payload = append(payload, p...)
		var h [9]byte
		binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
		c := crc32.Update(0, tab, []byte{1})
		binary.LittleEndian.PutUint32(h[4:8], crc32.Update(c, tab, payload))
		h[8] = 1
		out = append(append(out, h[:]...), payload...)
	}
	if err := os.WriteFile(filepath.Join(dir, "events.log"), out, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}
}

// reseal renumbers each stream's revisions from 0 and recomputes its hash chain: the forger's best
// effort, so per-stream verification alone passes and only the tenant-wide tree can tell.
func reseal(t *testing.T, evs []eventstore.Event) {
	t.Helper()
	prev, rev := map[string]string{}, map[string]uint64{}
	for i := range evs {
		e := &evs[i]
		e.Revision = rev[e.Stream]
		rev[e.Stream]++
		if err := eventstore.Seal(prev[e.Stream], e); err != nil {
			t.Fatal(err)
		}
		prev[e.Stream] = e.Hash
	}
}

// storedTree builds the projection's tree of the store in dir into a bbolt file, as the server's
// projection would have before the tamper.
func storedTree(t *testing.T, evs []eventstore.Event) func() (StoredTree, error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "tree.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a := newAppender()
	if err := db.Update(func(tx *bolt.Tx) error {
		st, err := tx.CreateBucketIfNotExists([]byte("state"))
		if err != nil {
			return err
		}
		for _, e := range evs {
			if err := a.Append(st, e.Tenant, e.ID, uint64(e.Position), e.Hash); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return func() (StoredTree, error) {
		tx, err := db.Begin(false)
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { tx.Rollback() })
		return Open(tx.Bucket([]byte("state")), acme), nil
	}
}

func ofTenant(evs []eventstore.Event, tid tenant.ID) []eventstore.Event {
	var out []eventstore.Event
	for _, e := range evs {
		if e.Tenant == tid {
			out = append(out, e)
		}
	}
	return out
}

func verifyDir(t *testing.T, dir string, o VerifyOptions) (Report, error) {
	t.Helper()
	s, err := embedded.OpenReadOnly(dir, embedded.Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return Verify(context.Background(), s, o)
}

func checkpointOf(t *testing.T, dir string, key ed25519.PrivateKey, tid tenant.ID, now time.Time) Checkpoint {
	t.Helper()
	s, err := embedded.OpenReadOnly(dir, embedded.Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	size, root, err := Compute(context.Background(), s, tid)
	if err != nil {
		t.Fatal(err)
	}
	return Sign(key, tid, size, root, now)
}

func newKey(t *testing.T) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

func idxOf(evs []eventstore.Event, id string) uint64 {
	for i, e := range ofTenant(evs, acme) {
		if e.ID == id {
			return uint64(i)
		}
	}
	return 1 << 62
}

// TestTamperingBeforeACheckpointFailsVerification is the tamper suite over the embedded store file:
// each scenario alters the folder after a checkpoint was taken, the way someone who can write the
// data folder would (hashes recomputed, positions and revisions renumbered, the index dropped), and
// verification against the checkpoint must fail, naming the first position at fault where the
// stored tree still matches the checkpoint.
func TestTamperingBeforeACheckpointFailsVerification(t *testing.T) {
	t.Parallel()
	now := time.Now()
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	base := t.TempDir()
	seed(t, base)
	orig := readLog(t, base)
	acmeEvs := ofTenant(orig, acme)
	cp := checkpointOf(t, base, key, acme, now)
	if cp.Size != 9 {
		t.Fatalf("checkpoint of %d events, want 9", cp.Size)
	}
	// The untouched store verifies, and so does one with appends after the checkpoint.
	if rep, err := verifyDir(t, base, VerifyOptions{Checkpoint: cp, PublicKey: pub, Tenant: acme, Now: now, Tree: storedTree(t, orig)}); err != nil || !rep.OK || rep.EventsChecked != 9 {
		t.Fatalf("clean store: %+v %v", rep, err)
	}
	// An older copy of the folder, for the roll-back scenario.
	older := t.TempDir()
	{
		tmp := t.TempDir()
		seed(t, tmp)
		evs := readLog(t, tmp)
		writeLog(t, older, append([]eventstore.Event(nil), orig[:len(evs)/2]...))
	}
	s1 := acmeEvs[0].Stream

	type scenario struct {
		name   string
		tamper func(evs []eventstore.Event) []eventstore.Event // nil: see dir
		dir    func(t *testing.T) string
		at     *uint64 // the leaf index the fault must name (nil: any, or none)
		key    ed25519.PublicKey
		refuse error // Verify must return this error (the checkpoint itself is refused)
	}
	u := func(v uint64) *uint64 { return &v }
	scenarios := []scenario{
		{name: "forged event appended to a stream with a recomputed hash, before the checkpoint's end", at: u(4), tamper: func(evs []eventstore.Event) []eventstore.Event {
			// Insert after acme's 4th event a forged event in s1's stream.
			k := 0
			for i, e := range evs {
				if e.Tenant == acme {
					k++
					if k == 4 {
						forged := evs[i]
						forged.ID, forged.Stream, forged.Data = "01900000-0000-7000-8000-000000000001", s1, json.RawMessage(`{"forged":true}`)
						out := append(append(append([]eventstore.Event(nil), evs[:i+1]...), forged), evs[i+1:]...)
						reseal(t, out)
						return out
					}
				}
			}
			return nil
		}},
		{name: "an event's data edited and its stream resealed", at: u(2), tamper: func(evs []eventstore.Event) []eventstore.Event {
			for i := range evs {
				if evs[i].ID == acmeEvs[2].ID {
					evs[i].Data = json.RawMessage(`{"n":999}`)
				}
			}
			reseal(t, evs)
			return evs
		}},
		{name: "an event's data edited, hash left alone", at: u(2), tamper: func(evs []eventstore.Event) []eventstore.Event {
			for i := range evs {
				if evs[i].ID == acmeEvs[2].ID {
					evs[i].Data = json.RawMessage(`{"n":999}`)
				}
			}
			return evs
		}},
		{name: "a whole stream rewritten", at: u(idxOf(orig, acmeEvs[2].ID)), tamper: func(evs []eventstore.Event) []eventstore.Event {
			for i := range evs {
				if evs[i].Stream == acmeEvs[2].Stream {
					evs[i].Data = json.RawMessage(fmt.Sprintf(`{"rewritten":%d}`, i))
				}
			}
			reseal(t, evs)
			return evs
		}},
		{name: "the first event of a stream deleted", at: u(0), tamper: func(evs []eventstore.Event) []eventstore.Event {
			out := drop(evs, func(e eventstore.Event) bool { return e.ID == acmeEvs[0].ID })
			reseal(t, out)
			return out
		}},
		{name: "the last event of a stream deleted", at: u(idxOf(orig, lastOf(acmeEvs, s1).ID)), tamper: func(evs []eventstore.Event) []eventstore.Event {
			out := drop(evs, func(e eventstore.Event) bool { return e.ID == lastOf(acmeEvs, s1).ID })
			reseal(t, out)
			return out
		}},
		{name: "a whole stream deleted", at: u(idxOf(orig, firstOf(acmeEvs, acmeEvs[2].Stream).ID)), tamper: func(evs []eventstore.Event) []eventstore.Event {
			out := drop(evs, func(e eventstore.Event) bool { return e.Stream == acmeEvs[2].Stream })
			reseal(t, out)
			return out
		}},
		{name: "events of two streams reordered (each stream's order kept)", at: u(0), tamper: func(evs []eventstore.Event) []eventstore.Event {
			// acme's first two events are of s1 and s2: swap them.
			i, j := posOf(evs, acmeEvs[0].ID), posOf(evs, acmeEvs[1].ID)
			if acmeEvs[0].Stream == acmeEvs[1].Stream {
				t.Fatal("seed changed: acme's first two events share a stream")
			}
			evs[i], evs[j] = evs[j], evs[i]
			return evs
		}},
		{name: "the log truncated", at: u(6), tamper: func(evs []eventstore.Event) []eventstore.Event {
			return evs[:posOf(evs, acmeEvs[6].ID)]
		}},
		{name: "the data folder rolled back to an older copy", dir: func(*testing.T) string { return older }},
		{name: "history rebuilt from scratch and the kept checkpoint checked with the old public key", dir: func(t *testing.T) string {
			d := t.TempDir()
			seed(t, d) // same appends, new ids and times: another log
			return d
		}},
		{name: "history rebuilt with a new key, checked with the server's new key", key: newKey(t).Public().(ed25519.PublicKey), refuse: ErrBadCheckpoint,
			dir: func(t *testing.T) string { d := t.TempDir(); seed(t, d); return d }},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			dir := t.TempDir()
			if sc.dir != nil {
				dir = sc.dir(t)
			} else {
				copyDir(t, base, dir)
				evs := sc.tamper(readLog(t, dir))
				writeLog(t, dir, evs)
			}
			k := pub
			if sc.key != nil {
				k = sc.key
			}
			rep, err := verifyDir(t, dir, VerifyOptions{Checkpoint: cp, PublicKey: k, Tenant: acme, Now: now, Tree: storedTree(t, orig)})
			if sc.refuse != nil {
				if !errors.Is(err, sc.refuse) {
					t.Fatalf("want the checkpoint refused (%v), got %+v %v", sc.refuse, rep, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if rep.OK || rep.Fault == nil {
				t.Fatalf("tampered store verified ok: %+v", rep)
			}
			if sc.at != nil && (rep.Fault.LeafIndex == nil || *rep.Fault.LeafIndex != *sc.at) {
				t.Fatalf("fault named %s, want log entry %d", rep.Fault, *sc.at)
			}
			t.Logf("fault: %s", rep.Fault)
		})
	}
}

func drop(evs []eventstore.Event, f func(eventstore.Event) bool) []eventstore.Event {
	var out []eventstore.Event
	for _, e := range evs {
		if !f(e) {
			out = append(out, e)
		}
	}
	return out
}

func posOf(evs []eventstore.Event, id string) int {
	for i, e := range evs {
		if e.ID == id {
			return i
		}
	}
	return -1
}

func lastOf(evs []eventstore.Event, stream string) eventstore.Event {
	var l eventstore.Event
	for _, e := range evs {
		if e.Stream == stream {
			l = e
		}
	}
	return l
}

func firstOf(evs []eventstore.Event, stream string) eventstore.Event {
	for _, e := range evs {
		if e.Stream == stream {
			return e
		}
	}
	return eventstore.Event{}
}
