package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
)

// jsonSeeds are bodies that reach the corners of the hygiene scan: escapes, surrogates, names,
// nesting, syntax errors after a finding, trailing data.
var jsonSeeds = []string{
	`{"message":"hello"}`,
	`{"message":"a\u0000b","items":["\u001b","ok"],"meta":{"k":{"0":"\u007f"}}}`,
	"{\"message\":\"caf\xe9\",\"x\":1}",
	`{"q":"\ud800"}`, `{"q":"\ud83d\ude00"}`, `{"q":"\uDBFF\uDFFF"}`, `{"q":"\ud800\u0041"}`,
	"{\"\xff\":1}", `{"a\u0001":1}`, "{\"a\":\"x\x01\"}",
	`[[[[[[[[[[["\u0000"]]]]]]]]]]]`, `{"a":[1,2,{"b":[{"c":"\n\t\r"}]}]}`,
	`{"a":"\u0000"`, `{"a": nope, "b":"\u0000"}`, `{"a":"ok"} {"b":"\u0000"}`, `"\u0085"`, `null`, ``, `   `,
	`{"a":"\u0085\u009f\u00a0"}`, "{\"a\":\"\xed\xa0\x80\"}", `{"a":1,"a":"\u0000"}`,
}

// FuzzScanJSONText checks the hygiene scan against encoding/json as a reference: it never panics, its
// findings are capped and small, and whenever the document is valid JSON with a string that is not
// clean text (or with bytes that are not UTF-8), the scan finds it.
func FuzzScanJSONText(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got := httpapi.ScanJSONText(body, "body", httpapi.MaxTextErrors)
		if len(got) > httpapi.MaxTextErrors {
			t.Fatalf("%d findings, over the cap %d", len(got), httpapi.MaxTextErrors)
		}
		for _, d := range got {
			if !strings.HasPrefix(d.Location, "body") || len(d.Location) > 400 || d.Message == "" || len(d.Message) > 200 {
				t.Fatalf("finding out of shape: %q %q", d.Location, d.Message)
			}
			if !utf8.ValidString(d.Location) || httpapi.TextFault(d.Location, false) != "" {
				t.Fatalf("the location carries bad text: %q", d.Location)
			}
		}
		if !json.Valid(body) {
			return
		}
		// Valid JSON holds bytes that are not UTF-8 only inside strings.
		want := !utf8.Valid(body)
		if !want {
			var v any
			if err := json.Unmarshal(body, &v); err != nil {
				return // deeper than encoding/json goes
			}
			want = hasBadText(v)
		}
		if want && len(got) == 0 {
			t.Fatalf("the scan missed bad text in %q", body)
		}
	})
}

func hasBadText(v any) bool {
	switch x := v.(type) {
	case string:
		return httpapi.TextFault(x, true) != ""
	case []any:
		for _, e := range x {
			if hasBadText(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range x {
			if httpapi.TextFault(k, true) != "" || hasBadText(e) {
				return true
			}
		}
	}
	return false
}

// FuzzRequestHygiene drives the whole floor (request id, limits, guard, hygiene, huma's decoding and
// validation) with arbitrary bodies, path and query values and a header: whatever arrives, the answer
// is never a 5xx, every error is a problem JSON with its status, code and requestId within 8 KB,
// and text the floor lets through reaches the handler clean.
func FuzzRequestHygiene(f *testing.F) {
	for i, s := range jsonSeeds {
		f.Add([]byte(s), "x", "", "bob")
		if i%3 == 0 {
			f.Add([]byte(s), "a\x00b", "\xff", "\xfe")
		}
	}
	f.Add([]byte(`{"message":"`+strings.Repeat("x", 200_000)+`"}`), "x", "c", "")
	f.Add([]byte(`{"message":"ok","unknown":1,"other":{"deep":[1,2,3]}}`), "x", "", "")
	f.Add([]byte(`{"message":null,"items":null,"meta":null}`), "x", "", "")
	f.Add([]byte(`{"message":1,"items":"no","meta":[]}`), "%2F..", "%zz", "\t")
	h := hygieneServer(f)
	f.Fuzz(func(t *testing.T, body []byte, id, cursor, user string) {
		if !validHeaderValue(user) {
			return // no HTTP/1.1 or HTTP/2 connection can carry it
		}
		if id == "" {
			id = "x"
		}
		target := "/things/" + url.PathEscape(id) + "?cursor=" + url.QueryEscape(cursor)
		w := httpapitest.Send(h, http.MethodPost, target, "acme", body, "x-end-user", user)
		if err := httpapitest.CheckRecorded(w); err != nil {
			t.Fatalf("%s with body %.200q: %v", target, body, err)
		}
		if w.Code == http.StatusOK {
			var out struct{ Message string }
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
				t.Fatalf("200 without the echo: %v", err)
			}
			if m := httpapi.TextFault(out.Message, true); m != "" {
				t.Fatalf("bad text reached the handler (%s): %q", m, out.Message)
			}
			if len(bytes.TrimSpace(body)) == 0 {
				t.Fatalf("an empty body was accepted")
			}
		}
	})
}

// validHeaderValue is net/http's rule for what a header value may hold.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
