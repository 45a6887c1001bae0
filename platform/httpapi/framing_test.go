package httpapi_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// rawExchange writes req as it is on a new connection to srv (closing the write side when
// closeWrite) and reads one response.
func rawExchange(t *testing.T, srv *httptest.Server, req string, closeWrite bool) (*http.Response, map[string]any) {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		_ = c.(*net.TCPConn).CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("status %d, body not JSON: %.300s", resp.StatusCode, b)
	}
	return resp, m
}

func chunked(payload string, size int) string {
	var b strings.Builder
	for len(payload) > 0 {
		n := min(size, len(payload))
		fmt.Fprintf(&b, "%x\r\n%s\r\n", n, payload[:n])
		payload = payload[n:]
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

func TestMalformedFramingIsAClientError(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(thingServer(t))
	t.Cleanup(srv.Close)
	head := "POST /things HTTP/1.1\r\nHost: x\r\nx-tenant-id: acme\r\nContent-Type: application/json\r\n"
	good := `{"name":"a","items":["x"]}`
	cases := []struct {
		name       string
		req        string
		closeWrite bool
		status     int
		code       string
	}{
		{"well-formed chunks", head + "Transfer-Encoding: chunked\r\n\r\n" + chunked(good, 5), false, 200, ""},
		{"chunk size that is not hex", head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n" + good + "\r\n0\r\n\r\n", false, 400, "malformed_body"},
		{"chunk longer than its size", head + "Transfer-Encoding: chunked\r\n\r\n3\r\n" + good + "\r\n0\r\n\r\n", false, 400, "malformed_body"},
		{"chunked body cut short", head + "Transfer-Encoding: chunked\r\n\r\n40\r\n" + good, true, 400, "malformed_body"},
		{"Content-Length body cut short", head + "Content-Length: 100\r\n\r\n" + good, true, 400, "malformed_body"},
		{"truncated JSON", head + fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(good)-3, good[:len(good)-3]), false, 400, "bad_request"},
		{"JSON with trailing garbage", head + fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(good)+4, good+"}{]x"), false, 400, "bad_request"},
		{"two JSON values", head + fmt.Sprintf("Content-Length: %d\r\n\r\n%s", 2*len(good), good+good), false, 400, "bad_request"},
		{"chunked body over the limit, no Content-Length", head + "Transfer-Encoding: chunked\r\n\r\n" +
			chunked(`{"name":"a","items":["x"],"text":"`+strings.Repeat("x", 2<<20)+`"}`, 64<<10), false, 413, "body_too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			resp, m := rawExchange(t, srv, c.req, c.closeWrite)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %v", resp.StatusCode, c.status, m)
			}
			if c.code != "" && (m["code"] != c.code || m["requestId"] == "" || m["requestId"] != resp.Header.Get("x-request-id")) {
				t.Fatalf("problem = %v, want code %s with the request id", m, c.code)
			}
		})
	}
}

func TestWrongContentTypeIsAProblem(t *testing.T) {
	t.Parallel()
	h := thingServer(t)
	r := httptest.NewRequest("POST", "/things", strings.NewReader(`name=a`))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("x-tenant-id", "acme")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	// 415 is the status HTTP has for it (RFC 9110 §15.5.16); a client error with the problem shape.
	if w.Code != http.StatusUnsupportedMediaType {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	checkBounded(t, w)
}

func TestWrongMethodIs405WithAllow(t *testing.T) {
	t.Parallel()
	h := thingServer(t)
	cases := []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/things", 405, "POST"},
		{"PUT", "/things/42", 405, "GET, HEAD, DELETE"},
		{"POST", "/healthz", 405, "GET, HEAD"},
		{"DELETE", "/health", 405, "GET, HEAD"},
		{"GET", "/nothing/here", 404, ""},
		{"POST", "/things/42/more", 404, ""},
	}
	for _, c := range cases {
		w, m := do(t, h, c.method, c.path, "acme", "")
		if w.Code != c.status || w.Header().Get("Allow") != c.allow {
			t.Errorf("%s %s: %d Allow %q, want %d Allow %q: %s", c.method, c.path, w.Code, w.Header().Get("Allow"), c.status, c.allow, w.Body)
			continue
		}
		want := map[int]string{405: "method_not_allowed", 404: "route_not_found"}[c.status]
		if m["code"] != want || m["requestId"] != w.Header().Get("x-request-id") || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/problem+json") {
			t.Errorf("%s %s: problem %v", c.method, c.path, m)
		}
	}
}

func TestNullWhereAnObjectOrArrayGoesIs422(t *testing.T) {
	t.Parallel()
	h := thingServer(t)
	cases := []struct{ name, body, field string }{
		{"required array", `{"name":"a","items":null}`, "body.items"},
		{"required array, and nothing else", `{"items":null}`, "body.items"},
		{"required string", `{"name":null,"items":["x"]}`, "body.name"},
		{"whole body", `null`, "body"},
	}
	for _, c := range cases {
		w, m := do(t, h, "POST", "/things", "acme", c.body)
		if w.Code != 422 {
			t.Errorf("%s: status %d, want 422: %s", c.name, w.Code, w.Body)
			continue
		}
		errs, _ := m["errors"].([]any)
		found := false
		for _, e := range errs {
			if d, _ := e.(map[string]any); d["location"] == c.field {
				found = true
			}
		}
		if !found || m["requestId"] == nil {
			t.Errorf("%s: no error at %s: %s", c.name, c.field, w.Body)
		}
	}
	// An optional array or object that is null is absent, as huma treats every optional null (and as
	// OpenAI clients send "stream_options": null): the handler sees no value.
	for _, body := range []string{`{"name":"a","items":["x"]}`, `{"name":"a","items":["x"],"tags":null,"meta":null}`} {
		if w, _ := do(t, h, "POST", "/things", "acme", body); w.Code != 200 {
			t.Fatalf("%s: %d %s", body, w.Code, w.Body)
		}
	}
}
