package httpapitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"testing"
)

// MaxProblemBytes is the most an error answer may weigh (issue 10: at most 20 errors, ≤ 8 KB in all).
const MaxProblemBytes = 8 << 10

// Send serves one request with a raw body (bytes a JSON encoder would never write: invalid UTF-8,
// control characters, broken syntax) for tenantID, with header name/value pairs, and records the
// answer.
func Send(h http.Handler, method, target, tenantID string, body []byte, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if tenantID != "" {
		r.Header.Set("x-tenant-id", tenantID)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header[http.CanonicalHeaderKey(header[i])] = []string{header[i+1]}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// CheckAnswer reports how an answer to a request, however bad the request, breaks the API's promises:
// a 5xx; or an error that is not problem JSON (application/problem+json with its status, a code and
// the request id) or weighs more than MaxProblemBytes. A 2xx or 3xx passes.
func CheckAnswer(status int, header http.Header, body []byte) error {
	if status >= 500 {
		return fmt.Errorf("status %d (a server error for a client's input): %s", status, clip(body))
	}
	if status < 400 {
		return nil
	}
	if len(body) > MaxProblemBytes {
		return fmt.Errorf("status %d: error body of %d bytes, over %d: %s", status, len(body), MaxProblemBytes, clip(body))
	}
	if mt, _, _ := mime.ParseMediaType(header.Get("Content-Type")); mt == "application/json" {
		return checkOpenAIError(status, header, body)
	} else if mt != "application/problem+json" {
		return fmt.Errorf("status %d: content type %q, want application/problem+json: %s", status, header.Get("Content-Type"), clip(body))
	}
	var p struct {
		Status    int    `json:"status"`
		Code      string `json:"code"`
		RequestID string `json:"requestId"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("status %d: problem body is not JSON (%v): %s", status, err, clip(body))
	}
	if p.Status != status || p.Code == "" || p.RequestID == "" {
		return fmt.Errorf("status %d: problem lacks its status, code or requestId: %s", status, clip(body))
	}
	return nil
}

// checkOpenAIError checks an error of the OpenAI-compatible /v1/ paths: OpenAI's envelope
// {"error":{"message","type","param","code"}} with a code, and the request id in x-request-id.
func checkOpenAIError(status int, header http.Header, body []byte) error {
	var e struct {
		Error *struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Code    string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil {
		return fmt.Errorf("status %d: an application/json error that is not OpenAI's envelope: %s", status, clip(body))
	}
	if e.Error.Message == "" || e.Error.Type == "" || e.Error.Code == "" || header.Get("x-request-id") == "" {
		return fmt.Errorf("status %d: OpenAI error lacks its message, type, code or x-request-id: %s", status, clip(body))
	}
	return nil
}

// CheckRecorded is CheckAnswer for a recorded answer.
func CheckRecorded(w *httptest.ResponseRecorder) error {
	return CheckAnswer(w.Code, w.Header(), w.Body.Bytes())
}

// WantField fails t unless w is a 422 problem whose errors name the field at loc.
func WantField(t testing.TB, w *httptest.ResponseRecorder, loc string) {
	t.Helper()
	if err := CheckRecorded(w); err != nil {
		t.Errorf("want 422 naming %s: %v", loc, err)
		return
	}
	if w.Code != http.StatusUnprocessableEntity {
		t.Errorf("status %d, want 422 naming %s: %s", w.Code, loc, clip(w.Body.Bytes()))
		return
	}
	var p struct {
		Errors []struct {
			Location string `json:"location"`
		} `json:"errors"`
		Error *struct {
			Param *string `json:"param"`
		} `json:"error"`
	}
	_ = json.Unmarshal(w.Body.Bytes(), &p)
	if p.Error != nil && p.Error.Param != nil && ("body."+*p.Error.Param == loc || *p.Error.Param == loc) {
		return // OpenAI's envelope names one field, without "body."
	}
	for _, e := range p.Errors {
		if e.Location == loc {
			return
		}
	}
	t.Errorf("422 does not name %s: %s", loc, clip(w.Body.Bytes()))
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}
