package retrieval_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http/httptest"
	"net/url"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/retrieval"
)

// upload sends POST /documents as a multipart form: the file under "file", then the fields.
func (e *env) upload(tenantID, fileName string, data []byte, fields map[string]string) resp {
	e.t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for k, v := range fields {
		_ = w.WriteField(k, v)
	}
	fw, err := w.CreateFormFile("file", fileName)
	if err != nil {
		e.t.Fatal(err)
	}
	_, _ = fw.Write(data)
	_ = w.Close()
	return e.raw("POST", "/documents", tenantID, w.FormDataContentType(), b.Bytes())
}

func (e *env) raw(method, path, tenantID, contentType string, body []byte) resp {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if tenantID != "" {
		req.Header.Set("x-tenant-id", tenantID)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	r := resp{status: rec.Code, raw: rec.Body.String()}
	_ = json.Unmarshal(rec.Body.Bytes(), &r.body)
	return r
}

// Issue 16 item 4: POST /documents ingests an uploaded .txt, .md or .html file like POST /ingest:
// it is found by search and listed by GET /documents, for its tenant only.
func TestUploadDocumentsIsIngestedPerTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	page := `<!doctype html><html><head><title>Greenhouse</title><style>.x{color:red}</style>
<script>var tomato = "scriptword";</script></head><body><h1>Greenhouse rules</h1>
<p>Water the orchids every morning with rainwater.</p><noscript>noscriptword</noscript></body></html>`
	for _, c := range []struct {
		file, id, query, want string
		data                  string
		fields                map[string]string
	}{
		{"plain.txt", "plain.txt", "bicycle storage basement", "bicycles", "Bicycles are stored in the basement storage room.", nil},
		{"guide.md", "guides/onboarding", "onboarding laptop badge", "laptop", "# Onboarding\n\nNew staff collect a laptop and a badge on day one.", map[string]string{"docId": "guides/onboarding", "title": "Onboarding guide"}},
		{"garden.html", "garden.html", "orchids rainwater", "orchids", page, nil},
		{"minutes.pdf", "minutes.pdf", "lighthouse keeper lantern", "polishes the lantern nightly", string(textPDF(
			"BT /F1 12 Tf 72 720 Td (The lighthouse keeper) Tj T* [(polishes the lan) -20 (tern) -600 (nightly.)] TJ ET")), nil},
	} {
		r := e.upload("acme", c.file, []byte(c.data), c.fields)
		if r.status != 200 || r.body["docId"] != c.id || r.body["chunks"] != 1.0 || r.body["status"] != "ingested" {
			t.Fatalf("upload %s: %d %s", c.file, r.status, r.raw)
		}
		s := e.search("acme", map[string]any{"query": c.query, "answer": false})
		src, _ := s.body["sources"].([]any)
		if s.status != 200 || len(src) == 0 || src[0].(map[string]any)["docId"] != c.id || !strings.Contains(strings.ToLower(src[0].(map[string]any)["text"].(string)), c.want) {
			t.Fatalf("search for %s: %d %s", c.file, s.status, s.raw)
		}
		g := e.do("GET", "/documents/"+url.PathEscape(c.id), "acme", nil)
		wantTitle := c.file
		if c.fields["title"] != "" {
			wantTitle = c.fields["title"]
		}
		if g.status != 200 || g.body["title"] != wantTitle || g.body["source"] != "upload" {
			t.Fatalf("get %s: %d %s", c.id, g.status, g.raw)
		}
		// Beta cannot read, list or search acme's upload.
		if g := e.do("GET", "/documents/"+url.PathEscape(c.id), "beta", nil); g.status != 404 {
			t.Fatalf("beta reading acme's %s: %d %s", c.id, g.status, g.raw)
		}
		if s := e.search("beta", map[string]any{"query": c.query, "answer": false}); s.status != 200 || strings.Contains(s.raw, c.id) || strings.Contains(strings.ToLower(s.raw), c.want) {
			t.Fatalf("beta searching acme's %s: %d %s", c.id, s.status, s.raw)
		}
	}
	// The HTML's scripts, styles and head are not indexed.
	g := e.search("acme", map[string]any{"query": "scriptword noscriptword color", "answer": false, "mode": "lexical"})
	if strings.Contains(g.raw, "scriptword") || strings.Contains(g.raw, "color:red") {
		t.Fatalf("script or style text indexed: %s", g.raw)
	}
	l := e.do("GET", "/documents", "acme", nil)
	if docs, _ := l.body["documents"].([]any); l.status != 200 || len(docs) != 4 {
		t.Fatalf("acme's list: %d %s", l.status, l.raw)
	}
	if l := e.do("GET", "/documents", "beta", nil); strings.Contains(l.raw, "plain.txt") {
		t.Fatalf("beta's list holds acme's upload: %s", l.raw)
	}
}

// POST /documents refuses what it cannot ingest, as problems that record nothing: 413 over the
// limit, 415 for another type, an unreadable PDF or a body that is not multipart, 422 for a file
// without text (a PDF whose pages show none).
func TestUploadDocumentRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{config: retrieval.Config{MaxUploadBytes: 2 << 20}})
	pdf := []byte("%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
	for _, c := range []struct {
		name   string
		r      resp
		status int
		want   string
	}{
		{"too large", e.upload("acme", "big.txt", bytes.Repeat([]byte("word "), 3<<18), nil), 413, "the limit is 2097152"},
		{"text over 500k characters", e.upload("acme", "long.txt", bytes.Repeat([]byte("a b "), 130000), nil), 413, "500,000"},
		{"other type", e.upload("acme", "sheet.xlsx", []byte("PK\x03\x04"), nil), 415, ".xlsx"},
		{"pdf that is not one", e.upload("acme", "report.pdf", pdf, nil), 415, "PDF"},
		{"pdf without text", e.upload("acme", "scan.pdf", textPDF("0 0 m 100 100 l S"), nil), 422, "no extractable text"},
		{"pdf in a composite font", e.upload("acme", "cid.pdf", fontPDF("BT /F1 12 Tf 72 700 Td <0041004200430044> Tj ET", compositeFont), nil), 422, "composite (Type0/CID) fonts"},
		{"pdf in a composite font, glyph ids", e.upload("acme", "gid.pdf", fontPDF("BT /F1 12 Tf 72 700 Td <021301450099> Tj ET", compositeFont), nil), 422, "composite (Type0/CID) fonts"},
		{"not multipart", e.raw("POST", "/documents", "acme", "application/json", []byte(`{"text":"x"}`)), 415, "multipart/form-data"},
		{"no text", e.upload("acme", "empty.html", []byte("<html><script>only()</script></html>"), nil), 422, "no text"},
		{"no file", e.raw("POST", "/documents", "acme", "multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"docId\"\r\n\r\nd\r\n--x--\r\n")), 400, "file"},
		{"binary .txt", e.upload("acme", "bin.txt", []byte{0xff, 0xfe, 0x00, 0x01}, nil), 415, "UTF-8"},
	} {
		if rid, _ := c.r.body["requestId"].(string); c.r.status != c.status || !strings.Contains(c.r.raw, c.want) || rid == "" {
			t.Errorf("%s: want %d naming %q, got %d %s", c.name, c.status, c.want, c.r.status, c.r.raw)
		}
		if ct := c.r.body["type"]; ct == nil && c.r.body["title"] == nil {
			t.Errorf("%s: not a problem: %s", c.name, c.r.raw)
		}
	}
	if l := e.do("GET", "/documents", "acme", nil); !strings.Contains(l.raw, `"documents":[]`) {
		t.Fatalf("a refused upload was recorded: %s", l.raw)
	}
}

// The font dictionaries fontPDF takes: Helvetica (a simple font), and a composite font (Type0 with
// Identity-H encoding, its glyph codes two bytes each; its descendant is not needed to be refused).
const (
	simpleFont    = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
	compositeFont = "<< /Type /Font /Subtype /Type0 /BaseFont /NotoSans-Regular /Encoding /Identity-H >>"
)

// textPDF writes a one-page PDF by hand whose page content stream is content (Helvetica as F1),
// with a correct cross-reference table: the extractor must read it like any PDF.
func textPDF(content string) []byte { return fontPDF(content, simpleFont) }

// fontPDF is textPDF with font as F1.
func fontPDF(content, font string) []byte {
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
		font,
		fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(content)+1, content),
	}
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n")
	offsets := make([]int, len(objs))
	for i, o := range objs {
		offsets[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, off := range offsets {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return b.Bytes()
}

// multipartStream is a POST /documents body of one file of size bytes (head, then filler
// repeated, then tail), generated as it is read: the test holds none of it.
func multipartStream(fileName string, head, filler, tail string, size int) (io.Reader, string) {
	const boundary = "crispyboundary"
	n := max(0, (size-len(head)-len(tail))/len(filler))
	pre := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + fileName + "\"\r\n\r\n" + head
	post := tail + "\r\n--" + boundary + "--\r\n"
	return io.MultiReader(strings.NewReader(pre), &repeater{s: filler, n: n}, strings.NewReader(post)), "multipart/form-data; boundary=" + boundary
}

type repeater struct {
	s   string
	n   int // repetitions left
	off int
}

func (r *repeater) Read(p []byte) (int, error) {
	w := 0
	for w < len(p) && r.n > 0 {
		c := copy(p[w:], r.s[r.off:])
		w += c
		if r.off += c; r.off == len(r.s) {
			r.off, r.n = 0, r.n-1
		}
	}
	if w == 0 {
		return 0, io.EOF
	}
	return w, nil
}

// Uploads have their own body limit (issue 16 item 4), 20 MiB by default, beyond the API's 1 MiB
// for JSON, and are streamed: a 15 MiB page is read without the server allocating anything near
// its size at any moment (the form used to be read whole into memory), a 15 MiB text file is refused for its
// length before it is read, and a body over the limit is 413.
func TestUploadsHaveTheirOwnLimitAndAreStreamed(t *testing.T) {
	e := newEnv(t, opts{})
	send := func(name, head, filler, tail string, size int) (resp, uint64) {
		body, ct := multipartStream(name, head, filler, tail, size)
		req := httptest.NewRequest("POST", "/documents", body)
		req.Header.Set("Content-Type", ct)
		req.Header.Set("x-tenant-id", "acme")
		rec := httptest.NewRecorder()
		// The peak of the live heap while the request runs, over what it was before: sampled, with
		// the collector kept eager so that garbage does not pass for held memory.
		defer debug.SetGCPercent(debug.SetGCPercent(5))
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base, peak := ms.HeapAlloc, ms.HeapAlloc
		done := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				select {
				case <-done:
					return
				case <-time.After(2 * time.Millisecond):
				}
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapAlloc)
			}
		}()
		e.h.ServeHTTP(rec, req)
		close(done)
		<-sampled
		r := resp{status: rec.Code, raw: rec.Body.String()}
		_ = json.Unmarshal(rec.Body.Bytes(), &r.body)
		return r, peak - base
	}
	const size = 15 << 20
	page, alloc := send("site.html", "<html><body><h1>Lighthouse keeper</h1><p>The keeper polishes the lantern nightly.</p>",
		`<div class="spacer"><span></span></div>`+"\n", "</body></html>", size)
	if page.status != 200 || page.body["chunks"] != 1.0 {
		t.Fatalf("a 15 MiB page (over the 1 MiB JSON limit): %d %s", page.status, page.raw)
	}
	if alloc > size/3 {
		t.Fatalf("reading a %d MiB upload held %d MiB at its peak: it is not streamed", size>>20, alloc>>20)
	}
	t.Logf("a %d MiB upload: peak heap %.1f MiB over the idle server's", size>>20, float64(alloc)/(1<<20))
	if r := e.search("acme", map[string]any{"query": "lighthouse lantern", "answer": false}); len(sources(r)) == 0 || sources(r)[0]["docId"] != "site.html" {
		t.Fatalf("the page is not found: %s", r.raw)
	}
	long, alloc := send("long.txt", "", "lorem ipsum ", "", size)
	if long.status != 413 || !strings.Contains(long.raw, "500,000") {
		t.Fatalf("a 15 MiB text file: %d %s", long.status, long.raw)
	}
	if alloc > size/3 {
		t.Fatalf("refusing a %d MiB text file held %d MiB at its peak", size>>20, alloc>>20)
	}
	over, _ := send("huge.html", "<p>x</p>", "<div></div>\n", "", 21<<20)
	if over.status != 413 || !strings.Contains(over.raw, "limit") {
		t.Fatalf("a 21 MiB upload: %d %s", over.status, over.raw)
	}
	// JSON requests keep the API's 1 MiB.
	big := e.do("POST", "/ingest", "acme", map[string]any{"docId": "big", "text": strings.Repeat("word ", 300_000)})
	if big.status != 413 {
		t.Fatalf("a 1.5 MB JSON ingest: %d", big.status)
	}
}
