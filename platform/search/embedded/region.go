package embedded

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// region is a growable block of fixed-size records: a file mapped shared into memory (so opening it
// costs nothing, and the resident memory is only the pages that searches and writes touch), or a
// plain byte slice when the index has no folder (tests). Growing it may move it: callers hold the
// partition's write lock when they grow it and keep no slice of it across a grow.
type region struct {
	f *os.File
	b []byte
}

// pageSize rounds mappings; 64 KiB also keeps the number of grows low.
const regionStep = 1 << 16

// openCommitted opens (or creates) path for reading and writing, and refuses a file shorter than
// what the manifest committed to it: it was torn or truncated after the manifest was written.
func openCommitted(path string, committed int64) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if st.Size() < committed {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %d bytes, the manifest says at least %d (torn or truncated)", path, st.Size(), committed)
	}
	return f, st, nil
}

func openRegion(path string, minSize int64) (*region, error) {
	f, st, err := openCommitted(path, minSize)
	if err != nil {
		return nil, err
	}
	r := &region{f: f}
	if st.Size() > 0 {
		if err := r.mapFile(int(st.Size())); err != nil {
			f.Close()
			return nil, err
		}
	}
	return r, nil
}

func (r *region) mapFile(size int) error {
	b, err := unix.Mmap(int(r.f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap %s: %w", r.f.Name(), err)
	}
	// Searches read codes (and inserts vectors) in graph order, not file order: read-ahead would only fill
	// memory with pages no search asked for.
	_ = unix.Madvise(b, unix.MADV_RANDOM)
	if r.b != nil {
		_ = unix.Munmap(r.b)
	}
	r.b = b
	return nil
}

// ensure makes the region at least size bytes long (the new bytes are zero).
func (r *region) ensure(size int) error {
	if size <= len(r.b) {
		return nil
	}
	n := max(size, 2*len(r.b), regionStep)
	n = (n + regionStep - 1) / regionStep * regionStep
	if r.f == nil {
		nb := make([]byte, n)
		copy(nb, r.b)
		r.b = nb
		return nil
	}
	// A sparse extension: the file takes disk space only where records are written.
	if err := r.f.Truncate(int64(n)); err != nil {
		return fmt.Errorf("grow %s: %w", r.f.Name(), err)
	}
	return r.mapFile(n)
}

// readAt copies bytes at off into p with pread (a file) without mapping them: the re-rank reads
// float vectors this way, so they stay in the page cache and out of the process's memory.
func (r *region) readAt(p []byte, off int64) error {
	if r.f == nil {
		copy(p, r.b[off:])
		return nil
	}
	_, err := r.f.ReadAt(p, off)
	return err
}

// dropResident lets go of the mapping's resident pages (a file's stay in the page cache and are
// mapped again on the next touch). After a flush, so that the pages inserts touched do not stay
// in the process's memory. Never for memory-only regions, whose bytes it would zero.
func (r *region) dropResident() {
	if r.f != nil && len(r.b) > 0 {
		_ = unix.Madvise(r.b, unix.MADV_DONTNEED)
	}
}

// sync makes what was written through the mapping durable (fsync writes back a shared mapping's
// dirty pages too).
func (r *region) sync() error {
	if r.f == nil {
		return nil
	}
	return r.f.Sync()
}

func (r *region) close() error {
	if r.f == nil {
		r.b = nil
		return nil
	}
	var err error
	if r.b != nil {
		err = unix.Munmap(r.b)
		r.b = nil
	}
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (r *region) float32s() []float32 {
	if len(r.b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&r.b[0])), len(r.b)/4)
}

func (r *region) uint32s() []uint32 {
	if len(r.b) == 0 {
		return nil
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(&r.b[0])), len(r.b)/4)
}

// appendLog is an append-only file (or byte slice without a folder) read with pread: records are
// read only for the hits a search returns, so they never take resident memory.
type appendLog struct {
	f    *os.File
	buf  []byte // without a folder
	size int64
}

// openLog opens path and cuts it to committed bytes: anything after them was written after the
// last manifest and is not part of the index.
func openLog(path string, committed int64) (*appendLog, error) {
	f, st, err := openCommitted(path, committed)
	if err != nil {
		return nil, err
	}
	if st.Size() > committed {
		if err := f.Truncate(committed); err != nil {
			f.Close()
			return nil, err
		}
	}
	return &appendLog{f: f, size: committed}, nil
}

func (l *appendLog) append(p []byte) (int64, error) {
	off := l.size
	if l.f == nil {
		l.buf = append(l.buf, p...)
	} else if _, err := l.f.WriteAt(p, off); err != nil {
		return 0, fmt.Errorf("append to %s: %w", l.f.Name(), err)
	}
	l.size += int64(len(p))
	return off, nil
}

func (l *appendLog) readAt(p []byte, off int64) error {
	if off+int64(len(p)) > l.size {
		return fmt.Errorf("read past the end of the log (%d+%d > %d)", off, len(p), l.size)
	}
	if l.f == nil {
		copy(p, l.buf[off:])
		return nil
	}
	_, err := l.f.ReadAt(p, off)
	return err
}

// overwrite replaces bytes in place (erasing a deleted chunk's text).
func (l *appendLog) overwrite(p []byte, off int64) error {
	if l.f == nil {
		copy(l.buf[off:], p)
		return nil
	}
	_, err := l.f.WriteAt(p, off)
	return err
}

func (l *appendLog) sync() error {
	if l.f == nil {
		return nil
	}
	return l.f.Sync()
}

func (l *appendLog) close() error {
	if l.f == nil {
		l.buf = nil
		return nil
	}
	return l.f.Close()
}
