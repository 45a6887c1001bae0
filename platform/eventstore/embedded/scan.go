package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// scanChunk is how much of the log MayHold reads at a time.
const scanChunk = 4 << 20

// MayHold reports whether the bytes b occur anywhere in the log, up to its acknowledged end. The
// log keeps each event's data byte for byte as it was appended (encodeEvent), so false means that
// no event's data holds b, whatever its stream or tenant; true may come from other bytes too (an
// id, a stream name, an event of a deleted stream, another event's data quoting them), so a caller
// that must know which event holds them reads the events. It reads the log sequentially and decodes
// nothing: asking whether anything was ever sealed (cmd/crispy's key-store guard) costs a pass at
// the speed of the page cache, where a subscription over a million events took seconds of CPU.
func (s *Store) MayHold(ctx context.Context, b []byte) (bool, error) {
	return s.mayHold(ctx, b, scanChunk)
}

func (s *Store) mayHold(ctx context.Context, b []byte, chunk int) (bool, error) {
	if len(b) == 0 {
		return true, nil
	}
	s.mu.RLock()
	closed, end := s.closed, s.size
	s.mu.RUnlock()
	if closed {
		return false, eventstore.ErrClosed
	}
	// Each read starts len(b)-1 bytes before the end of the one before, so that bytes split
	// between two reads are found.
	keep := len(b) - 1
	chunk = max(chunk, 2*len(b))
	buf := make([]byte, chunk)
	for off := int64(0); off < end; {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		n := int(min(int64(chunk), end-off))
		if k, err := s.f.ReadAt(buf[:n], off); k < n {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // shorter than its acknowledged size
			}
			return false, fmt.Errorf("read %s at %d: %w", s.f.Name(), off, err)
		}
		if bytes.Contains(buf[:n], b) {
			return true, nil
		}
		if off+int64(n) >= end {
			break
		}
		off += int64(n - keep)
	}
	return false, nil
}
