package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Timeouts bound how long one client may hold a connection (issue 10, item 8): a client that sends
// its headers or body slowly, reads its answer slowly, or keeps an idle connection open, is cut off
// instead of holding a goroutine and a socket for ever.
type Timeouts struct {
	// ReadHeader bounds reading the request line and headers (slowloris).
	ReadHeader time.Duration
	// Read bounds reading the whole request, headers and body; every API operation's body read gets
	// it too (huma's own default would be 5 s).
	Read time.Duration
	// Write bounds delivering a response, counted from its first byte, so a slow model answering a
	// non-streaming request is not cut, while a client that does not read its answer is. An SSE
	// stream (text/event-stream) may last as long as it needs: the bound applies to each of its
	// writes instead.
	Write time.Duration
	// Idle bounds how long a keep-alive connection may wait for its next request.
	Idle time.Duration
}

// DefaultTimeouts are the timeouts of a Config that sets none.
var DefaultTimeouts = Timeouts{ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: 60 * time.Second, Idle: 120 * time.Second}

func (t *Timeouts) defaults() {
	d := DefaultTimeouts
	for _, f := range []struct{ p, def *time.Duration }{{&t.ReadHeader, &d.ReadHeader}, {&t.Read, &d.Read}, {&t.Write, &d.Write}, {&t.Idle, &d.Idle}} {
		if *f.p == 0 {
			*f.p = *f.def
		}
	}
}

// Validate checks the timeouts: each must be positive (zero means the default).
func (t Timeouts) Validate() error {
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"read-header", t.ReadHeader}, {"read", t.Read}, {"write", t.Write}, {"idle", t.Idle}} {
		if f.d < 0 {
			return fmt.Errorf("httpapi: the %s timeout %s is negative", f.name, f.d)
		}
	}
	return nil
}

// humaDefaultBodyReadTimeout is what huma gives an operation that sets no BodyReadTimeout.
const humaDefaultBodyReadTimeout = 5 * time.Second

// HTTPServer returns the http.Server for the API, with its timeouts. The caller sets the address
// or serves a listener, and may set BaseContext.
func (s *Server) HTTPServer() *http.Server { return NewHTTPServer(s.handler, s.cfg.Timeouts) }

// NewHTTPServer returns an http.Server for h bounded by t (zero fields take DefaultTimeouts).
// http.Server's WriteTimeout alone would cut every SSE stream, and every slow answer, at a fixed
// time after the request: a middleware moves the write deadline to the response's first byte, and
// along with each write of a stream. The server's own WriteTimeout still bounds what it writes by
// itself (100 Continue, its error answers) and gives every request on a kept-alive connection a
// fresh deadline.
func NewHTTPServer(h http.Handler, t Timeouts) *http.Server {
	t.defaults()
	return &http.Server{
		Handler:           writeDeadlines(h, t.Write),
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
	}
}

// writeDeadlines gives each response a write deadline once it declares what it is: a stream gets
// one per write, anything else one for the whole response.
func writeDeadlines(next http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dw := &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), d: d}
		next.ServeHTTP(dw, r)
		if dw.streaming {
			// The end of the stream, written once the handler returns, may follow a quiet spell.
			_ = dw.rc.SetWriteDeadline(time.Now().Add(d))
		}
	})
}

type deadlineWriter struct {
	http.ResponseWriter
	rc        *http.ResponseController
	d         time.Duration
	started   bool
	streaming bool
}

// start runs before the first byte of the response: it decides, from the Content-Type the handler
// set, whether this is a stream. Deadline errors are ignored: a writer that cannot take one (a test
// recorder) simply has none.
func (w *deadlineWriter) start() {
	if w.started {
		return
	}
	w.started = true
	w.streaming = strings.HasPrefix(strings.TrimSpace(strings.ToLower(w.Header().Get("Content-Type"))), "text/event-stream")
	if !w.streaming {
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.d))
	}
}

func (w *deadlineWriter) beforeWrite() {
	w.start()
	if w.streaming {
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.d))
	}
}

func (w *deadlineWriter) WriteHeader(code int) {
	// 1xx answers (103 Early Hints) come before the response proper.
	if code >= 200 {
		w.start()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *deadlineWriter) Write(b []byte) (int, error) {
	w.beforeWrite()
	return w.ResponseWriter.Write(b)
}

func (w *deadlineWriter) Flush() {
	w.beforeWrite()
	_ = w.rc.Flush()
}

func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
