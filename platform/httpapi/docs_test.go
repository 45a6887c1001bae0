package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
)

var (
	htmlRef  = regexp.MustCompile(`(?i)\b(?:src|href)\s*=\s*"([^"]*)"`)
	cssURL   = regexp.MustCompile(`url\(\s*['"]?([^'")]+)`)
	jsSpec   = regexp.MustCompile(`\burl:\s*"([^"]+)"`)
	anyHost  = regexp.MustCompile(`(?i)(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	cdnHosts = []string{"unpkg.com", "cdn.jsdelivr.net", "cdnjs.cloudflare.com", "fonts.googleapis.com", "fonts.gstatic.com", "cdn.redoc.ly", "esm.sh"}
)

// TestDocsPageIsServedWholeFromTheServer loads /docs and everything it references from the server
// itself, as a browser without network would: the page, its stylesheet and scripts, what the
// stylesheet loads, and the spec the viewer reads. Nothing may name another host.
func TestDocsPageIsServedWholeFromTheServer(t *testing.T) {
	s, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: httpapitest.HeaderGuard{}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	get := func(path, wantType string) []byte {
		t.Helper()
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
		}
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, wantType) {
			t.Errorf("GET %s: content type %q, want %s", path, ct, wantType)
		}
		if len(b) == 0 {
			t.Errorf("GET %s: empty", path)
		}
		return b
	}
	page := get("/docs", "text/html")
	if h := anyHost.Find(page); h != nil {
		t.Errorf("the page names another host: %s", h)
	}
	refs := htmlRef.FindAllSubmatch(page, -1)
	if len(refs) < 3 {
		t.Fatalf("the page references %d assets; expected the stylesheet and two scripts", len(refs))
	}
	var specURL string
	for _, m := range refs {
		ref := string(m[1])
		if !strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "//") {
			t.Errorf("the page references %q, not a path of this server", ref)
			continue
		}
		switch {
		case strings.HasSuffix(ref, ".css"):
			css := get(ref, "text/css")
			for _, u := range cssURL.FindAllSubmatch(css, -1) {
				if ref := string(u[1]); !strings.HasPrefix(ref, "data:") {
					t.Errorf("the stylesheet loads %q; only inline data is expected", ref)
				}
			}
		case strings.HasSuffix(ref, ".js"):
			js := get(ref, "text/javascript")
			for _, h := range cdnHosts {
				if bytes.Contains(js, []byte(h)) {
					t.Errorf("%s names %s", ref, h)
				}
			}
			if m := jsSpec.FindSubmatch(js); m != nil && strings.HasSuffix(ref, "init.js") {
				specURL = string(m[1])
				if !bytes.Contains(js, []byte("validatorUrl: null")) {
					t.Errorf("%s leaves the online validator on (it would call validator.swagger.io)", ref)
				}
			}
		default:
			get(ref, "")
		}
	}
	if !strings.HasPrefix(specURL, "/") {
		t.Fatalf("the viewer reads the spec from %q, not from this server", specURL)
	}
	var spec map[string]any
	if err := json.Unmarshal(get(specURL, "application"), &spec); err != nil || spec["openapi"] == nil {
		t.Fatalf("%s is not the spec: %v", specURL, err)
	}
}

// TestDocsAssetsMatchTheirPackage keeps the embedded viewer what docs/README.md says it is: the files
// of swagger-ui-dist at the version package.json pins (checked when `npm ci` has run).
func TestDocsAssetsMatchTheirPackage(t *testing.T) {
	pkg := filepath.Join("..", "..", "node_modules", "swagger-ui-dist")
	meta, err := os.ReadFile(filepath.Join(pkg, "package.json"))
	if err != nil {
		t.Skip("node_modules/swagger-ui-dist is not installed (npm ci --ignore-scripts at the repository root)")
	}
	var v struct{ Version, License string }
	if err := json.Unmarshal(meta, &v); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join("docs", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, []byte("swagger-ui-dist "+v.Version)) || !strings.Contains(string(readme), "Apache License 2.0") || v.License != "Apache-2.0" {
		t.Errorf("docs/README.md does not record swagger-ui-dist %s (%s)", v.Version, v.License)
	}
	for _, name := range []string{"swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"} {
		want, err := os.ReadFile(filepath.Join(pkg, name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "swagger-ui.css" {
			want = regexp.MustCompile(`(?m)^/\*# sourceMappingURL=[^*]*\*/\n?`).ReplaceAll(want, nil)
		}
		got, err := os.ReadFile(filepath.Join("docs", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("docs/%s differs from swagger-ui-dist %s's; run `task docs-assets`", name, v.Version)
		}
	}
}
