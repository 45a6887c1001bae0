package ai

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// ReadSSE reads a text/event-stream body and calls fn with the data of every event (multi-line data
// joined by '\n'). It stops at EOF, at a "[DONE]" data line (returns nil), or when fn fails.
// Comments (": …") and other fields are skipped.
func ReadSSE(r io.Reader, fn func(data []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	var data []byte
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
					return nil
				}
				return err
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
		return fmt.Errorf("read event stream: %w", err)
	}
	if err := flush(); err != nil && err != io.EOF {
		return err
	}
	return nil
}
