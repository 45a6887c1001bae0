package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
)

func TestTextFault(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in        string
		multiline bool
		want      string // a fragment of the message; "" for no fault
	}{
		{"hello, wörld 👋", false, ""},
		{"two\nlines\r\n\tindented", true, ""},
		{"two\nlines", false, "one line"},
		{"tab\there", false, "one line"},
		{"nul\x00", true, "U+0000"},
		{"bell\x07", true, "U+0007"},
		{"escape\x1b[31m", true, "U+001B"},
		{"del\x7f", true, "U+007F"},
		{"c1\u0085", true, "U+0085"},
		{"c1\u009f", true, "U+009F"},
		{"bad\xff", true, "UTF-8"},
		{"truncated\xe2\x82", true, "UTF-8"},
		{"surrogate\xed\xa0\x80", true, "UTF-8"},
		{"\uFFFD is a real character", true, ""},
		{"", false, ""},
	} {
		got := httpapi.TextFault(c.in, c.multiline)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("TextFault(%q, %v) = %q, want %q", c.in, c.multiline, got, c.want)
		}
	}
}

func TestBlank(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		"": false, " ": true, " \t\r\n ": true, "\u00a0\u3000\u2003": true, "\u200b\ufeff": true,
		" x ": false, ".": false, "\u200bx": false,
	} {
		if got := httpapi.Blank(in); got != want {
			t.Errorf("Blank(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestProseAndLineNameTheField(t *testing.T) {
	t.Parallel()
	if d := httpapi.Prose("body.message", "line one\nline two"); d != nil {
		t.Fatalf("multi-line prose refused: %v", d)
	}
	if d := httpapi.Prose("body.message", "  \n "); d == nil || d.Location != "body.message" || !strings.Contains(d.Message, "blank") {
		t.Fatalf("blank prose: %+v", d)
	}
	if d := httpapi.Line("body.docId", "a\nb"); d == nil || d.Location != "body.docId" {
		t.Fatalf("line break in a line: %+v", d)
	}
	if d := httpapi.Line("body.docId", ""); d != nil {
		t.Fatalf("an empty optional field is not blank: %+v", d)
	}
	errs := httpapi.FieldErrors(nil, httpapi.Line("body.a", "\x00"), nil, httpapi.Prose("body.b", "ok"))
	if len(errs) != 1 {
		t.Fatalf("FieldErrors kept %d, want 1: %v", len(errs), errs)
	}
}

func TestScanJSONTextLocatesEachBadString(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, body string
		want       []string // "location: message fragment"
	}{
		{"clean", `{"message":"hi\nthere","n":[1,"two",{"x":null}],"0":"zero"}`, nil},
		{"escaped NUL", `{"message":"hi\u0000"}`, []string{"body.message: U+0000"}},
		{"raw control", "{\"message\":\"hi\x01\"}", []string{"body.message: U+0001"}},
		{"invalid UTF-8", "{\"a\":{\"b\":[\"ok\",\"x\xff\"]}}", []string{"body.a.b[1]: UTF-8"}},
		{"lone surrogate escape", `{"q":"\ud800x"}`, []string{"body.q: UTF-8"}},
		{"valid surrogate pair", `{"q":"\ud83d\ude00"}`, nil},
		{"bad property name", "{\"ok\":1,\"b\xffd\":2}", []string{"body: property name"}},
		{"escaped bad property name", `{"x":{"a\u0007":1}}`, []string{"body.x: property name"}},
		{"numeric name is a name", `{"m":{"0":"\u0001"}}`, []string{"body.m.0: U+0001"}},
		{"several", `{"a":"\u0000","b":["\u0001","ok","\u007f"]}`, []string{"body.a: U+0000", "body.b[0]: U+0001", "body.b[2]: U+007F"}},
		{"C1 in free text", `{"t":"\u0085"}`, []string{"body.t: U+0085"}},
		{"not JSON is left to the decoder", `{"a": nope}`, nil},
		{"trailing data is left to the decoder", `{"a":"ok"} {"b":"\u0000"}`, nil},
		{"top-level string", `"\u0000"`, []string{"body: U+0000"}},
	} {
		got := httpapi.ScanJSONText([]byte(c.body), "body", httpapi.MaxTextErrors)
		if len(got) != len(c.want) {
			t.Errorf("%s: %d findings %v, want %v", c.name, len(got), details(got), c.want)
			continue
		}
		for i, w := range c.want {
			loc, frag, _ := strings.Cut(w, ": ")
			if got[i].Location != loc || !strings.Contains(got[i].Message, frag) {
				t.Errorf("%s: finding %d = %s: %s, want %s", c.name, i, got[i].Location, got[i].Message, w)
			}
		}
	}
}

func TestScanJSONTextIsBounded(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(`{"a":[`)
	for i := 0; i < 10_000; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"\u0000"`)
	}
	b.WriteString(`],"` + strings.Repeat("n", 5000) + `":{"x":"\u0001"}}`)
	got := httpapi.ScanJSONText([]byte(b.String()), "body", httpapi.MaxTextErrors)
	if len(got) != httpapi.MaxTextErrors {
		t.Fatalf("%d findings, want the cap %d", len(got), httpapi.MaxTextErrors)
	}
	long := httpapi.ScanJSONText([]byte(`{"`+strings.Repeat("n", 5000)+`":{"x":"\u0001"}}`), "body", 1)
	if len(long) != 1 || len(long[0].Location) > 300 {
		t.Fatalf("a long property name makes a long location: %d bytes", len(long[0].Location))
	}
}

func details(ds []*huma.ErrorDetail) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Location + ": " + d.Message
	}
	return out
}

// hygieneIn has one of each kind of input the floor checks.
type hygieneIn struct {
	ID     string `path:"id"`
	Cursor string `query:"cursor"`
	User   string `header:"x-end-user"`
	Body   struct {
		Message string         `json:"message" maxLength:"100000"`
		Items   []string       `json:"items,omitempty"`
		Meta    map[string]any `json:"meta,omitempty"`
	}
}

type hygieneOut struct {
	Body struct {
		Message string `json:"message"`
	}
}

func hygieneServer(t testing.TB) http.Handler {
	t.Helper()
	s, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: httpapitest.HeaderGuard{}})
	if err != nil {
		t.Fatal(err)
	}
	huma.Register(s.API, huma.Operation{OperationID: "post-thing", Method: http.MethodPost, Path: "/things/{id}"},
		func(_ context.Context, in *hygieneIn) (*hygieneOut, error) {
			out := &hygieneOut{}
			out.Body.Message = in.Body.Message
			return out, nil
		})
	return s.Handler()
}

type hygieneReq struct {
	path, body string
	hdr        map[string]string
}

func (r hygieneReq) do(h http.Handler) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/things/x", strings.NewReader(r.body))
	if r.path != "" {
		req = httptest.NewRequest(http.MethodPost, r.path, strings.NewReader(r.body))
	}
	req.Header.Set("x-tenant-id", "acme")
	req.Header.Set("Content-Type", "application/json")
	for k, v := range r.hdr {
		req.Header[http.CanonicalHeaderKey(k)] = []string{v}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestHygieneRefusesBadTextWith422NamingTheField(t *testing.T) {
	t.Parallel()
	h := hygieneServer(t)
	for _, c := range []struct {
		name string
		req  hygieneReq
		loc  string
	}{
		{"invalid UTF-8 in the body", hygieneReq{body: "{\"message\":\"caf\xe9\"}"}, "body.message"},
		{"escaped NUL in the body", hygieneReq{body: `{"message":"a\u0000b"}`}, "body.message"},
		{"escape sequence in a list", hygieneReq{body: `{"message":"ok","items":["fine","\u001b[2J"]}`}, "body.items[1]"},
		{"lone surrogate deep in free-form metadata", hygieneReq{body: `{"message":"ok","meta":{"k":[{"v":"\udfff"}]}}`}, "body.meta.k[0].v"},
		{"bad bytes in a property name", hygieneReq{body: "{\"message\":\"ok\",\"meta\":{\"\xc0\":1}}"}, "body.meta"},
		{"NUL in a path parameter", hygieneReq{path: "/things/a%00b", body: `{"message":"ok"}`}, "path.id"},
		{"invalid UTF-8 in a path parameter", hygieneReq{path: "/things/%FF", body: `{"message":"ok"}`}, "path.id"},
		{"control character in a query parameter", hygieneReq{path: "/things/x?cursor=%07", body: `{"message":"ok"}`}, "query.cursor"},
		{"line break in a query parameter", hygieneReq{path: "/things/x?cursor=a%0Ab", body: `{"message":"ok"}`}, "query.cursor"},
		{"control character behind 10,001 other query parameters", hygieneReq{path: "/things/x?" + strings.Repeat("x=1&", 10_001) + "cursor=%00",
			body: `{"message":"ok"}`}, "query.cursor"},
		{"invalid UTF-8 in a header", hygieneReq{body: `{"message":"ok"}`, hdr: map[string]string{"x-end-user": "bob\xff"}}, "header.x-end-user"},
		{"invalid UTF-8 in x-user-id", hygieneReq{body: `{"message":"ok"}`, hdr: map[string]string{"x-user-id": "\xfe\xff"}}, "header.x-user-id"},
	} {
		w := c.req.do(h)
		if w.Code != http.StatusUnprocessableEntity {
			t.Errorf("%s: status %d, want 422: %s", c.name, w.Code, w.Body)
			continue
		}
		var p httpapi.Problem
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.RequestID == "" || p.Code == "" {
			t.Errorf("%s: not a problem with code and requestId: %s", c.name, w.Body)
			continue
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: content type %q", c.name, ct)
		}
		if len(p.Errors) == 0 || p.Errors[0].Location != c.loc {
			t.Errorf("%s: errors %s, want location %s", c.name, w.Body, c.loc)
		}
		// The bad bytes are named, never echoed.
		if bytes.Contains(w.Body.Bytes(), []byte{0xff}) || bytes.Contains(w.Body.Bytes(), []byte(`\u0000`)) {
			t.Errorf("%s: the problem echoes the bad input: %s", c.name, w.Body)
		}
	}
}

func TestHygieneLetsGoodTextThroughUnchanged(t *testing.T) {
	t.Parallel()
	h := hygieneServer(t)
	msg := "Grüße 👋\n\tindented\r\nline with U+FFFD \uFFFD, a quote \" and a backslash \\"
	body, _ := json.Marshal(map[string]any{"message": msg, "items": []string{"a", "b"}, "meta": map[string]any{"0": []any{1, "x"}}})
	w := hygieneReq{body: string(body), hdr: map[string]string{"x-end-user": "zoë"}}.do(h)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var out struct{ Message string }
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Message != msg {
		t.Fatalf("the handler got %q, want %q (%v)", out.Message, msg, err)
	}
}

// The hygiene check reads the body and the operation reads it again, from the check's copy: the
// limit counts each byte once, so a body just under it is accepted, sent with its length or chunked.
func TestBodyJustUnderTheLimitIsAccepted(t *testing.T) {
	t.Parallel()
	h := hygieneServer(t)
	prefix, suffix := `{"message":"ok","items":["`, `"]}`
	body := prefix + strings.Repeat("a", httpapi.MaxBodyBytes-len(prefix)-len(suffix)-1) + suffix
	for _, length := range []int64{int64(len(body)), -1} {
		req := httptest.NewRequest(http.MethodPost, "/things/x", strings.NewReader(body))
		req.Header.Set("x-tenant-id", "acme")
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = length
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			t.Errorf("a body of %d bytes (limit %d, Content-Length %d): status %d: %.300s", len(body), httpapi.MaxBodyBytes, length, w.Code, w.Body)
		}
	}
}

func TestHygieneLeavesOtherBodyFaultsToTheDecoder(t *testing.T) {
	t.Parallel()
	h := hygieneServer(t)
	// Not JSON: the decoder's 400, not a hygiene 422.
	if w := (hygieneReq{body: `{"message": nope}`}).do(h); w.Code != http.StatusBadRequest {
		t.Errorf("malformed JSON: status %d, want 400: %s", w.Code, w.Body)
	}
	// Over the limit: still 413 whatever the body holds.
	big := `{"message":"` + strings.Repeat("\\u0000", httpapi.MaxBodyBytes/6+10) + `"}`
	req := httptest.NewRequest(http.MethodPost, "/things/x", strings.NewReader(big))
	req.Header.Set("x-tenant-id", "acme")
	req.ContentLength = -1 // unknown length: the limit is found by reading
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: status %d, want 413: %.300s", w.Code, w.Body)
	}
	// An unknown tenant is refused first: the guard runs before the hygiene check.
	req = httptest.NewRequest(http.MethodPost, "/things/x", strings.NewReader(`{"message":"\u0000"}`))
	req.Header.Set("x-tenant-id", "Not A Tenant")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusNotFound {
		t.Errorf("unknown tenant with a bad body: status %d, want 404", w.Code)
	}
}

// BenchmarkScanJSONText is the floor's cost per body: a typical chat message and a document near the
// 1 MiB limit.
func BenchmarkScanJSONText(b *testing.B) {
	for name, body := range map[string][]byte{
		"chat":   []byte(`{"sessionId":"0b0f6a52-6f7e-4c55-9a8e-3f3d2f1c9b10","message":"What does our refund policy say?","stream":false}`),
		"1MiB":   []byte(`{"docId":"d","text":"` + strings.Repeat("Grüße, world. ", 70_000) + `"}`),
		"1k-obj": []byte(`{"items":[` + strings.Repeat(`{"k":"v","n":1},`, 999) + `{"k":"v","n":1}]}`),
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if got := httpapi.ScanJSONText(body, "body", httpapi.MaxTextErrors); len(got) != 0 {
					b.Fatal(got)
				}
			}
		})
	}
}
