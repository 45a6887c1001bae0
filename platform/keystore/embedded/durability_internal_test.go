package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// crashFile is a key store file that keeps what was written apart from what a Sync made durable.
// A crash is modelled by opening a store over the durable image alone: whatever was written but
// not synced is lost, as it would be from the page cache on a power cut. (Copying the real file
// while it is open reads the page cache, so such a test passes with every fsync removed.)
type crashFile struct {
	mu      sync.Mutex
	written []byte
	durable []byte
	syncErr error // when set, Sync fails and makes nothing durable
}

func newCrashFile(durable []byte) *crashFile {
	return &crashFile{written: bytes.Clone(durable), durable: bytes.Clone(durable)}
}

func (f *crashFile) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off >= int64(len(f.written)) {
		return 0, io.EOF
	}
	n := copy(p, f.written[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *crashFile) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if end := off + int64(len(p)); end > int64(len(f.written)) {
		f.written = append(f.written, make([]byte, end-int64(len(f.written)))...)
	}
	return copy(f.written[off:], p), nil
}

func (f *crashFile) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.syncErr != nil {
		return f.syncErr
	}
	f.durable = bytes.Clone(f.written)
	return nil
}

func (f *crashFile) Truncate(size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if size < int64(len(f.written)) {
		f.written = f.written[:size]
	}
	return nil
}

func (f *crashFile) Stat() (os.FileInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sizeInfo(len(f.written)), nil
}

func (f *crashFile) Close() error { return nil }

// crashImage is what a power cut at this instant leaves on disk.
func (f *crashFile) crashImage() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.durable)
}

func (f *crashFile) failSync(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncErr = err
}

type sizeInfo int64

func (s sizeInfo) Name() string       { return FileName }
func (s sizeInfo) Size() int64        { return int64(s) }
func (s sizeInfo) Mode() fs.FileMode  { return 0o600 }
func (s sizeInfo) ModTime() time.Time { return time.Time{} }
func (s sizeInfo) IsDir() bool        { return false }
func (s sizeInfo) Sys() any           { return nil }

// openCrashStore opens a store over a crashFile holding image (nil: a new, empty file).
func openCrashStore(t *testing.T, image []byte, opts ...Option) (*Store, *crashFile) {
	t.Helper()
	f := newCrashFile(image)
	s, err := openFile(f, filepath.Join(t.TempDir(), FileName), opts...)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, f
}

var acme = tenant.MustParse("acme")

func TestAcknowledgedCreateIsDurableWhenItReturns(t *testing.T) {
	ctx := context.Background()
	s, f := openCrashStore(t, nil)
	key, err := s.Create(ctx, acme, "session/one")
	if err != nil {
		t.Fatal(err)
	}
	// A power cut right after Create returned: the key must be in what the disk kept.
	image := f.crashImage()
	if !bytes.Contains(image, key) {
		t.Fatal("Create returned a key whose record was never synced: a crash now loses it")
	}
	after, _ := openCrashStore(t, image)
	got, err := after.Key(ctx, acme, "session/one")
	if err != nil {
		t.Fatalf("after the crash: %v", err)
	}
	if !bytes.Equal(got, key) {
		t.Fatal("after the crash the key differs from the one Create returned")
	}
}

func TestConcurrentCreatesAreEachDurableWhenTheyReturn(t *testing.T) {
	ctx := context.Background()
	s, f := openCrashStore(t, nil)
	const n = 64
	keys := make([][]byte, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := s.Create(ctx, acme, fmt.Sprintf("document/%d", i))
			if err != nil {
				errs <- err
				return
			}
			// Checked at the instant this Create returned, while the others still write and sync:
			// the group commit must never acknowledge a record an fsync has not yet covered.
			if !bytes.Contains(f.crashImage(), k) {
				errs <- fmt.Errorf("document/%d: acknowledged before its record was synced", i)
				return
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	after, _ := openCrashStore(t, f.crashImage())
	for i, want := range keys {
		got, err := after.Key(ctx, acme, fmt.Sprintf("document/%d", i))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("document/%d after the crash: err=%v, same key=%v", i, err, bytes.Equal(got, want))
		}
	}
}

func TestDestroyIsDurableWhenItReturns(t *testing.T) {
	ctx := context.Background()
	s, f := openCrashStore(t, nil)
	key, err := s.Create(ctx, acme, "session/gone")
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.Create(ctx, acme, "session/kept")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(ctx, acme, "session/gone"); err != nil {
		t.Fatal(err)
	}
	image := f.crashImage()
	if bytes.Contains(image, key) {
		t.Fatal("Destroy returned while the disk still holds the key: a crash now brings it back")
	}
	after, _ := openCrashStore(t, image)
	if _, err := after.Key(ctx, acme, "session/gone"); !errors.Is(err, keystore.ErrDestroyed) {
		t.Fatalf("destroyed key after the crash: err=%v, want ErrDestroyed", err)
	}
	if got, err := after.Key(ctx, acme, "session/kept"); err != nil || !bytes.Equal(got, other) {
		t.Fatalf("the other key after the crash: err=%v", err)
	}
}

func TestDestroyTenantIsDurableWhenItReturns(t *testing.T) {
	ctx := context.Background()
	beta := tenant.MustParse("beta")
	s, f := openCrashStore(t, nil)
	var gone [][]byte
	for i := range 3 {
		k, err := s.Create(ctx, acme, fmt.Sprintf("session/%d", i))
		if err != nil {
			t.Fatal(err)
		}
		gone = append(gone, k)
	}
	kept, err := s.Create(ctx, beta, "session/0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DestroyTenant(ctx, acme); err != nil {
		t.Fatal(err)
	}
	image := f.crashImage()
	for i, k := range gone {
		if bytes.Contains(image, k) {
			t.Fatalf("DestroyTenant returned while the disk still holds acme's key %d", i)
		}
	}
	after, _ := openCrashStore(t, image)
	if got, err := after.Key(ctx, beta, "session/0"); err != nil || !bytes.Equal(got, kept) {
		t.Fatalf("beta's key after acme's deletion and a crash: err=%v", err)
	}
	if _, err := after.Key(ctx, acme, "session/0"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("acme's key after its deletion and a crash: err=%v, want ErrNotFound", err)
	}
}

func TestFailedSyncsAreUnavailableAndAcknowledgeNothing(t *testing.T) {
	ctx := context.Background()
	s, f := openCrashStore(t, nil)
	live, err := s.Create(ctx, acme, "session/live")
	if err != nil {
		t.Fatal(err)
	}
	f.failSync(errors.New("input/output error"))

	if _, err := s.Create(ctx, acme, "session/new"); !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("Create with a failing fsync: err=%v, want ErrUnavailable", err)
	}
	if _, err := s.Key(ctx, acme, "session/new"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("a key whose Create failed is usable: err=%v", err)
	}
	if err := s.Destroy(ctx, acme, "session/live"); !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("Destroy with a failing fsync: err=%v, want ErrUnavailable", err)
	}
	if err := s.DestroyTenant(ctx, acme); !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("DestroyTenant with a failing fsync: err=%v, want ErrUnavailable (503, retried)", err)
	}
	// The failed destructions must be retryable once the disk is back, and then really durable.
	f.failSync(nil)
	if err := s.Destroy(ctx, acme, "session/live"); err != nil {
		t.Fatalf("Destroy retried: %v", err)
	}
	if bytes.Contains(f.crashImage(), live) {
		t.Fatal("the retried Destroy returned while the disk still holds the key")
	}
}

func TestDamagedRecordIsZeroedAndLogged(t *testing.T) {
	ctx := context.Background()
	s, f := openCrashStore(t, nil)
	key, err := s.Create(ctx, acme, "document/rotten")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, acme, "document/fine"); err != nil {
		t.Fatal(err)
	}
	image := f.crashImage()
	r, err := s.lookup(mapKey("acme", "document/rotten"))
	if err != nil || r.state != stateLive {
		t.Fatalf("lookup: %+v, %v", r, err)
	}
	slot := r.slot
	image[headerSize+slot*recSize+offKey] ^= 0x01 // one flipped bit in the key: the CRC fails

	var logs bytes.Buffer
	after, af := openCrashStore(t, image, WithLog(slog.New(slog.NewTextHandler(&logs, nil))))
	if _, err := after.Key(ctx, acme, "document/rotten"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("damaged record: err=%v, want ErrNotFound", err)
	}
	if _, err := after.Key(ctx, acme, "document/fine"); err != nil {
		t.Fatalf("the neighbour of a damaged record: %v", err)
	}
	line := logs.String()
	if !strings.Contains(line, "damaged key record was zeroed") || !strings.Contains(line, "document/rotten") || !strings.Contains(line, "tenant=acme") {
		t.Fatalf("the repair was not reported with tenant and id: %q", line)
	}
	if strings.Contains(line, fmt.Sprintf("%x", key[1:])) || bytes.Contains(logs.Bytes(), key[1:]) {
		t.Fatal("the log line carries key bytes")
	}
	rec := af.crashImage()[headerSize+slot*recSize : headerSize+(slot+1)*recSize]
	if !isZero(rec) {
		t.Fatal("the damaged record was not zeroed durably")
	}
}

func TestOpenMakesTheKeysFolderDurably(t *testing.T) {
	// Only what can be checked without a power cut: the missing folders are made (the fsync of
	// their parents is in mkdirDurable) and a second open finds the same keys.
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "data", "keys", FileName)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.Create(ctx, acme, "tenant/hmac")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.Key(ctx, acme, "tenant/hmac"); err != nil || !bytes.Equal(got, k) {
		t.Fatalf("reopened: err=%v", err)
	}
}

// countingFile counts the bytes read from a store's file.
type countingFile struct {
	storeFile
	read int64
}

func (c *countingFile) ReadAt(p []byte, off int64) (int, error) {
	c.read += int64(len(p))
	return c.storeFile.ReadAt(p, off)
}

// An open after a clean Close reads keys.db's header and no record, however many keys it holds;
// lookups then read the record they need, and a slot freed before the Close is reused after it.
func TestOpenAfterCloseReadsNoRecord(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	beta := tenant.MustParse("beta")
	keys := map[string][]byte{}
	for i := range 600 { // more than a page of index entries and a table that grew
		id := fmt.Sprintf("session/%d", i)
		if keys[id], err = s.Create(ctx, acme, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Destroy(ctx, acme, "session/7"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, beta, "session/0"); err != nil {
		t.Fatal(err)
	}
	if err := s.DestroyTenant(ctx, beta); err != nil { // frees a slot
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	size := fileSize(t, path)

	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	cf := &countingFile{storeFile: f}
	s, err = openFile(cf, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if cf.read > headerSize {
		t.Fatalf("open read %d bytes of keys.db, want the %d-byte header only", cf.read, headerSize)
	}
	for _, i := range []int{0, 1, 299, 599} {
		id := fmt.Sprintf("session/%d", i)
		if got, err := s.Key(ctx, acme, id); err != nil || !bytes.Equal(got, keys[id]) {
			t.Fatalf("%s after reopen: err=%v", id, err)
		}
	}
	if cf.read > headerSize+4*recSize {
		t.Fatalf("4 lookups read %d bytes of keys.db, want one record each", cf.read-headerSize)
	}
	if _, err := s.Key(ctx, acme, "session/7"); !errors.Is(err, keystore.ErrDestroyed) {
		t.Fatalf("destroyed key after reopen: %v, want ErrDestroyed", err)
	}
	if _, err := s.Key(ctx, beta, "session/0"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("destroyed tenant's key after reopen: %v, want ErrNotFound", err)
	}
	if _, err := s.Create(ctx, acme, "session/new"); err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, path); got != size {
		t.Fatalf("keys.db grew from %d to %d bytes: the slot freed before the reopen was not reused", size, got)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// The first write after an open that trusted the index makes the index untrusted durably before
// it writes a record: a crash after a Create that reused a freed slot (keys.db's size unchanged)
// must not reopen with the index of the clean Close, which does not know the key.
func TestCrashAfterFastOpenDoesNotTrustTheIndex(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName) // one path: the index file beside it is found again
	open := func(image []byte) (*Store, *crashFile) {
		f := newCrashFile(image)
		s, err := openFile(f, path)
		if err != nil {
			t.Fatal(err)
		}
		return s, f
	}
	s, f := open(nil)
	if _, err := s.Create(ctx, acme, "session/1"); err != nil {
		t.Fatal(err)
	}
	beta := tenant.MustParse("beta")
	if _, err := s.Create(ctx, beta, "session/1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DestroyTenant(ctx, beta); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, f = open(f.crashImage())
	if s.scanned {
		t.Fatal("the open after a clean Close scanned keys.db instead of using the index (the check below could not fail)")
	}
	k, err := s.Create(ctx, acme, "session/2")
	if err != nil {
		t.Fatal(err)
	}
	image := f.crashImage() // the power cut: no Close
	after, _ := open(image)
	defer after.Close()
	if got, err := after.Key(ctx, acme, "session/2"); err != nil || !bytes.Equal(got, k) {
		t.Fatalf("the key created after the fast open, after a crash: err=%v", err)
	}
	if !after.scanned {
		t.Fatal("the open after the crash trusted the index")
	}
}

// An index that no longer describes keys.db (restored from an older backup, or damaged) is not
// trusted: the open reads every record, or the lookup that meets a damaged page does.
func TestStaleOrDamagedIndexIsNotTrusted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	k1, _ := s.Create(ctx, acme, "session/1")
	s.Close()
	old, err := os.ReadFile(path + indexSuffix)
	if err != nil {
		t.Fatal(err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := s.Create(ctx, acme, "session/2")
	s.Close()

	// The older index put back.
	if err := os.WriteFile(path+indexSuffix, old, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Key(ctx, acme, "session/2"); err != nil || !bytes.Equal(got, k2) || !s.scanned {
		t.Fatalf("with an older index: err=%v, scanned=%v", err, s.scanned)
	}
	s.Close()

	// A flipped bit in the page of the entries: found when a lookup reads it.
	b, err := os.ReadFile(path + indexSuffix)
	if err != nil {
		t.Fatal(err)
	}
	b[idxHeaderSize+pageBytes/2] ^= 0x10
	if err := os.WriteFile(path+indexSuffix, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s, err = Open(path, WithLog(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.scanned {
		t.Fatal("the open read every record (the damaged page below would not be met)")
	}
	for id, want := range map[string][]byte{"session/1": k1, "session/2": k2} {
		if got, err := s.Key(ctx, acme, id); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s with a damaged index page: err=%v", id, err)
		}
	}
	if !strings.Contains(logs.String(), "index file is damaged") {
		t.Fatalf("the damaged index was not reported: %q", logs.String())
	}
}
