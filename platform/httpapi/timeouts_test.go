package httpapi_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/platform/httpapi"
)

// Short timeouts, so the tests run quickly; every wait below is generous (a loaded machine), and
// nothing asserts how fast anything was.
var testTimeouts = httpapi.Timeouts{ReadHeader: 300 * time.Millisecond, Read: 500 * time.Millisecond, Write: 300 * time.Millisecond, Idle: 300 * time.Millisecond}

const patience = 20 * time.Second

type timeoutServer struct {
	addr     string
	writeErr chan error // what the big non-streaming and the unread stream's writes ended with
}

func startTimeoutServer(t *testing.T) *timeoutServer {
	t.Helper()
	s, err := httpapi.New(httpapi.Config{Timeouts: testTimeouts}, httpapi.Deps{Guard: fakeGuard{}})
	if err != nil {
		t.Fatal(err)
	}
	ts := &timeoutServer{writeErr: make(chan error, 4)}
	// An SSE stream three times as long as the write timeout, with quiet spells longer than it.
	s.Mux().HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for i := range 4 {
			if _, err := fmt.Fprintf(w, "event: token\ndata: %d\n\n", i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(testTimeouts.Write + 100*time.Millisecond)
		}
		fmt.Fprint(w, "event: done\ndata: {}\n\n")
	})
	// A stream whose client never reads: its writes must fail rather than block for ever.
	s.Mux().HandleFunc("GET /stream-unread", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		chunk := "data: " + strings.Repeat("x", 64<<10) + "\n\n"
		for {
			if _, err := io.WriteString(w, chunk); err != nil {
				ts.writeErr <- err
				return
			}
			w.(http.Flusher).Flush()
		}
	})
	// A big non-streaming answer to a client that never reads it.
	s.Mux().HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		chunk := strings.Repeat("x", 64<<10)
		for range 4096 { // 256 MiB: more than any socket buffer
			if _, err := io.WriteString(w, chunk); err != nil {
				ts.writeErr <- err
				return
			}
		}
		ts.writeErr <- nil
	})
	// A slow non-streaming answer: the write timeout counts from the first byte, so it arrives.
	s.Mux().HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * testTimeouts.Write)
		io.WriteString(w, "late but whole")
	})
	huma.Register(s.API, huma.Operation{OperationID: "post-echo", Method: http.MethodPost, Path: "/echo"}, func(ctx context.Context, in *echoIn) (*echoOut, error) {
		out := &echoOut{}
		out.Body.Name = in.Body.Name
		return out, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer()
	go srv.Serve(ln)
	t.Cleanup(func() { _ = srv.Close() })
	ts.addr = ln.Addr().String()
	return ts
}

func (ts *timeoutServer) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(patience))
	return c
}

// closedByServer reports whether the server closes c (EOF or reset) before patience runs out,
// reading and dropping anything it sends first.
func closedByServer(c net.Conn) (bool, error) {
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, err
	}
	return true, err
}

func TestIdleKeepAliveConnectionIsClosed(t *testing.T) {
	t.Parallel()
	ts := startTimeoutServer(t)
	c := ts.dial(t)
	br := bufio.NewReader(c)
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 || resp.Close {
		t.Fatalf("first request: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	// Now idle: the server hangs up after its idle timeout.
	if closed, err := closedByServer(c); !closed {
		t.Fatalf("an idle keep-alive connection was still open after %s: %v", patience, err)
	}
}

func TestSlowHeadersAreCut(t *testing.T) {
	t.Parallel()
	ts := startTimeoutServer(t)
	c := ts.dial(t)
	// The request line and one header, then nothing.
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	if closed, err := closedByServer(c); !closed {
		t.Fatalf("a client that never finished its headers was still connected after %s: %v", patience, err)
	}
}

func TestSlowBodyIsCut(t *testing.T) {
	t.Parallel()
	ts := startTimeoutServer(t)
	c := ts.dial(t)
	if _, err := io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nx-tenant-id: acme\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stalled body: %d %s", resp.StatusCode, b)
	}
}

func TestSSEStreamOutlivesTheWriteTimeout(t *testing.T) {
	t.Parallel()
	ts := startTimeoutServer(t)
	client := &http.Client{Timeout: patience}
	resp, err := client.Get("http://" + ts.addr + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || strings.Count(string(b), "event: token") != 4 || !strings.Contains(string(b), "event: done") {
		t.Fatalf("stream cut: %v %q", err, b)
	}
	// And a slow, non-streaming answer arrives whole: the write timeout runs from its first byte.
	resp, err = client.Get("http://" + ts.addr + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	b, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "late but whole" {
		t.Fatalf("slow answer: %v %q", err, b)
	}
}

func TestClientThatDoesNotReadIsCut(t *testing.T) {
	t.Parallel()
	ts := startTimeoutServer(t)
	for _, path := range []string{"/big", "/stream-unread"} {
		c := ts.dial(t)
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		// Never read. The handler's writes must end in a deadline error.
		select {
		case err := <-ts.writeErr:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("%s: writes to a client that does not read ended with %v", path, err)
			}
		case <-time.After(patience):
			t.Fatalf("%s: writes to a client that does not read still blocked after %s", path, patience)
		}
	}
}
