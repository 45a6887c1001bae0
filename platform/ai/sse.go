package ai

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
)

// sseBuffers are ReadSSE's line and event buffers, reused across streams: a proxied stream would
// otherwise allocate (and zero) a 64 KiB scanner buffer per call, more than all the rest of the
// call's allocations together (scripts/v1proxy).
var sseBuffers = sync.Pool{New: func() any { return &sseBuffer{line: make([]byte, 0, 16*1024)} }}

type sseBuffer struct{ line, data []byte }

// maxPooledSSE bounds the buffers kept for reuse: one huge event does not pin its memory.
const maxPooledSSE = 64 * 1024

// ErrStreamRead marks a failure to read an event stream's body (a reset, an unexpected EOF in its
// framing), as opposed to an error of the callback.
var ErrStreamRead = errors.New("read event stream")

// ReadSSE reads a text/event-stream body and calls fn with the data of every event (multi-line data
// joined by '\n'). It stops at a "[DONE]" data line (done = true), at EOF (done = false: the stream
// ended without its terminator, which the caller judges; an event cut off by it is not passed to fn),
// on a read error (wrapping ErrStreamRead), or when fn fails. Comments (": …") and other fields are
// skipped.
//
// The data passed to fn is valid only until fn returns (its buffer is reused).
func ReadSSE(r io.Reader, fn func(data []byte) error) (done bool, err error) {
	bufs := sseBuffers.Get().(*sseBuffer)
	defer func() {
		if cap(bufs.line) <= maxPooledSSE && cap(bufs.data) <= maxPooledSSE {
			sseBuffers.Put(bufs)
		}
	}()
	sc := bufio.NewScanner(r)
	// A line longer than the pooled buffer grows the scanner's own (that one is not kept).
	sc.Buffer(bufs.line[:0], 4*1024*1024)
	data := bufs.data[:0]
	defer func() { bufs.data = data[:0] }()
	have := false
	flush := func() error {
		if !have {
			return nil
		}
		d := data
		data, have = data[:0], false
		if bytes.Equal(bytes.TrimSpace(d), []byte("[DONE]")) {
			return io.EOF
		}
		return fn(d)
	}
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			if err := flush(); err != nil {
				if err == io.EOF {
					return true, nil
				}
				return false, err
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		if string(field) != "data" {
			continue
		}
		if have {
			data = append(data, '\n')
		}
		data = append(data, value...)
		have = true
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return false, fmt.Errorf("read event stream: %w", err) // a malformed stream, not a cut one
		}
		return false, fmt.Errorf("%w: %w", ErrStreamRead, err)
	}
	// An event not followed by its blank line was cut off mid-write: it is discarded, as the SSE
	// spec says (decoding half a chunk would make a cut stream look like a malformed one). A final
	// "[DONE]" still counts: it is whole or it would not match.
	return have && bytes.Equal(bytes.TrimSpace(data), []byte("[DONE]")), nil
}
