package httpapi

import "testing"

var plainScanSeeds = []string{
	`{"model":"fake:m","messages":[{"role":"user","content":"How are you today? ünï 🎉"}]}`,
	"{\n\t\"a\": [1, 2],\r\n \"b\": \"c\"\n}", `{"a":"\u0000"}`, `{"a":"x\ty"}`, "{\"a\":\"x\ty\"}", "{\"a\":\"x\ny\"}", "{\"a\x01\":1}",
	"{\"a\":\"\x7f\"}", "{\"a\":\"\xc2\x85\"}", "{\"a\":\"\xc2\xa0\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xff\"}", `{"a":"b`, "{\"a\":\"b\n",
	"\"a\" \n \"b\"", "{\"a\":1\x00}", `{"a":1} é`, "{\"a\":1}\n\xc2\x9f", `{"a":"\"}`, ``, `   `, "0.\t", "[1,\n\x01]",
}

// noTextFaults says a body is plain only when the full scan finds nothing in it, and says it of the
// bodies clients send.
func TestNoTextFaultsAgreesWithTheScan(t *testing.T) {
	t.Parallel()
	for i, s := range plainScanSeeds {
		if noTextFaults([]byte(s)) && len(scanJSONText([]byte(s), "body", MaxTextErrors)) > 0 {
			t.Errorf("%q: plain, but the scan finds %v", s, scanJSONText([]byte(s), "body", MaxTextErrors)[0])
		}
		if want := i == 0; noTextFaults([]byte(s)) != want && i < 2 {
			t.Errorf("%q: plain %v, want %v", s, !want, want)
		}
	}
	for _, s := range []string{"{\"a\":\"x\ty\"}", "{\"a\":\"\x7f\"}", "{\"a\":\"\xc2\x85\"}", "{\"a\":\"\xff\"}", `{"a":"\u0000"}`} {
		if noTextFaults([]byte(s)) {
			t.Errorf("%q is not plain", s)
		}
	}
}

func FuzzNoTextFaults(f *testing.F) {
	for _, s := range plainScanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if noTextFaults(body) {
			if got := scanJSONText(body, "body", MaxTextErrors); len(got) > 0 {
				t.Fatalf("%q: plain, but the scan finds %s: %s", body, got[0].Location, got[0].Message)
			}
		}
	})
}

// BenchmarkScanPlainBody scans the body of a proxied /v1 call (compact, as SDKs send it): the check
// of its bytes, and the full walk it spares.
func BenchmarkScanPlainBody(b *testing.B) {
	body := []byte(`{"model":"fake:m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"How are you today?"}]}`)
	b.Run("check", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ScanJSONText(body, "body", MaxTextErrors) != nil {
				b.Fatal("findings")
			}
		}
	})
	b.Run("walk", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if scanJSONText(body, "body", MaxTextErrors) != nil {
				b.Fatal("findings")
			}
		}
	})
}
