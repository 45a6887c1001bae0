package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/httpapi"
)

// thingIn has the shapes whose errors used to repeat the request: a strict object (unknown
// properties), a long text, a required array and an optional object.
type thingIn struct {
	Body struct {
		Name  string   `json:"name" maxLength:"10"`
		Text  string   `json:"text,omitempty" maxLength:"100"`
		Items []string `json:"items" minItems:"1"`
		Tags  []string `json:"tags,omitempty"`
		Meta  *struct {
			Owner string `json:"owner,omitempty"`
		} `json:"meta,omitempty"`
	}
}

type thingOut struct {
	Body struct {
		Items int `json:"items"`
	}
}

// thingServer serves POST /things (its handler indexes Items[0], as real handlers index what the
// schema promised), GET /things/{id}, and POST /fields, which answers an apperr with huge field
// values.
func thingServer(t testing.TB) http.Handler {
	t.Helper()
	s, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: fakeGuard{}})
	if err != nil {
		t.Fatal(err)
	}
	huma.Register(s.API, huma.Operation{OperationID: "post-things", Method: http.MethodPost, Path: "/things"}, func(ctx context.Context, in *thingIn) (*thingOut, error) {
		out := &thingOut{}
		out.Body.Items = len(in.Body.Items[0])
		return out, nil
	})
	huma.Register(s.API, huma.Operation{OperationID: "get-thing", Method: http.MethodGet, Path: "/things/{id}"}, func(ctx context.Context, in *struct {
		ID string `path:"id"`
	}) (*thingOut, error) {
		return &thingOut{}, nil
	})
	huma.Register(s.API, huma.Operation{OperationID: "delete-thing", Method: http.MethodDelete, Path: "/things/{id}"}, func(ctx context.Context, in *struct {
		ID string `path:"id"`
	}) (*struct{}, error) {
		return nil, nil
	})
	huma.Register(s.API, huma.Operation{OperationID: "post-fields", Method: http.MethodPost, Path: "/fields"}, func(ctx context.Context, in *struct{}) (*struct{}, error) {
		huge := strings.Repeat("v", 200_000)
		e := apperr.New(apperr.KindInvalid, "bad_fields", "fields are bad")
		var fs []apperr.FieldError
		for i := range 100 {
			fs = append(fs, apperr.FieldError{Location: "body." + strings.Repeat("k", 5000) + fmt.Sprint(i), Message: "bad " + huge, Value: map[string]any{"big": huge}})
		}
		return nil, e.WithFields(fs...)
	})
	return s.Handler()
}

// unknownProps is a body with n properties the schema does not know.
func unknownProps(n int) string {
	var b strings.Builder
	b.WriteString(`{"name":"a","items":["x"]`)
	for i := range n {
		fmt.Fprintf(&b, `,"extra%06d":"some value %d"`, i, i)
	}
	b.WriteString("}")
	return b.String()
}

// checkBounded asserts the problem promise: JSON with a code and the request id, at most 20
// errors of short excerpts, at most 8 KB.
func checkBounded(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if n := w.Body.Len(); n > httpapi.MaxProblemBytes {
		t.Fatalf("problem body is %d bytes, over %d: %.300s", n, httpapi.MaxProblemBytes, w.Body.String())
	}
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("problem is not JSON: %v: %.300s", err, w.Body.String())
	}
	if m["requestId"] == "" || m["requestId"] == nil || m["requestId"] != w.Header().Get("x-request-id") || m["code"] == nil {
		t.Fatalf("problem without code or requestId: %.300s", w.Body.String())
	}
	errs, _ := m["errors"].([]any)
	if len(errs) > httpapi.MaxProblemErrors {
		t.Fatalf("%d errors, over %d", len(errs), httpapi.MaxProblemErrors)
	}
	for _, e := range errs {
		d, _ := e.(map[string]any)
		if v, ok := d["value"].(string); ok && utf8.RuneCountInString(v) > 100 {
			t.Fatalf("error value of %d chars: %.200s", utf8.RuneCountInString(v), v)
		}
	}
	return m
}

func TestProblemNeverRepeatsTheRequest(t *testing.T) {
	t.Parallel()
	h := thingServer(t)
	long := strings.Repeat("é", 500_000/2) // 500 KB of text
	cases := []struct {
		name, body string
		status     int
		omitted    int // errors beyond the listed ones, when known
	}{
		{"5,000 unknown properties", unknownProps(5000), 422, 5000 - httpapi.MaxProblemErrors},
		{"25 unknown properties", unknownProps(25), 422, 5},
		{"500 KB text over its maxLength", `{"name":"a","items":["x"],"text":"` + long + `"}`, 422, 0},
		{"500 KB name over its maxLength", `{"name":"` + long + `","items":["x"]}`, 422, 0},
		{"object where a string goes", `{"name":{"a":"` + long + `"},"items":["x"]}`, 422, 0},
		{"huge property names", `{"name":"a","items":["x"],"` + strings.Repeat("n", 300_000) + `":1,"` + strings.Repeat("m", 300_000) + `":2}`, 422, 0},
		{"truncated JSON of 500 KB", `{"name":"a","items":["x"],"text":"` + long, 400, 0},
		{"trailing garbage after 500 KB", `{"name":"a","items":["x"],"tags":["` + long + `"]} garbage`, 400, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w, _ := do(t, h, "POST", "/things", "acme", c.body)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %.300s", w.Code, c.status, w.Body.String())
			}
			m := checkBounded(t, w)
			if c.omitted > 0 && m["omittedErrors"] != float64(c.omitted) {
				t.Fatalf("omittedErrors = %v, want %d", m["omittedErrors"], c.omitted)
			}
			if c.omitted > 0 && !strings.Contains(fmt.Sprint(m["detail"]), fmt.Sprintf("%d more", c.omitted+httpapi.MaxProblemErrors-1)) {
				t.Fatalf("detail does not say how many more: %v", m["detail"])
			}
		})
	}
}

func TestProblemBoundsApperrFields(t *testing.T) {
	t.Parallel()
	w, _ := do(t, thingServer(t), "POST", "/fields", "acme", "")
	if w.Code != 400 {
		t.Fatalf("status %d: %.300s", w.Code, w.Body.String())
	}
	m := checkBounded(t, w)
	if m["code"] != "bad_fields" || m["omittedErrors"] == nil {
		t.Fatalf("problem = %.500s", w.Body.String())
	}
}

func TestProblemBoundsEchoedParameters(t *testing.T) {
	t.Parallel()
	h := thingServer(t)
	r := httptest.NewRequest("POST", "/things", strings.NewReader(`{"name":"a","items":["x"]}`))
	r.Header.Set("Content-Type", "text/"+strings.Repeat("x", 100_000))
	r.Header.Set("x-tenant-id", "acme")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code/100 != 4 {
		t.Fatalf("status %d", w.Code)
	}
	checkBounded(t, w)
	// An unknown path of 100 KB is not echoed whole either.
	w, _ = do(t, h, "GET", "/"+strings.Repeat("p", 100_000), "", "")
	if w.Code != 404 {
		t.Fatalf("status %d", w.Code)
	}
	checkBounded(t, w)
}
