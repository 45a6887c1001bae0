package httpapi_test

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkUnknownProperties measures what a request with n unknown properties costs: the bytes
// allocated per request (B/op, and per byte of body) must grow linearly with n. Before the bound,
// every property's error repeated the whole body: 5,000 properties (150 KB) answered 795 MB.
//
//	go test -run '^$' -bench UnknownProperties -benchmem ./platform/httpapi/
func BenchmarkUnknownProperties(b *testing.B) {
	for _, n := range []struct {
		name  string
		props int
	}{{"props=2000", 2000}, {"props=20000", 20000}} {
		b.Run(n.name, func(b *testing.B) {
			h := thingServer(b)
			body := unknownProps(n.props)
			var maxResp int
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			for b.Loop() {
				r := httptest.NewRequest("POST", "/things", strings.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				r.Header.Set("x-tenant-id", "acme")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != 422 {
					b.Fatalf("status %d: %.300s", w.Code, w.Body.String())
				}
				maxResp = max(maxResp, w.Body.Len())
			}
			b.ReportMetric(float64(maxResp), "resp-bytes")
		})
	}
}
