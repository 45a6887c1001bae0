package httpapi

import (
	"embed"
	"io/fs"
	"mime"
	"net/http"
	"path"
)

// docsFiles is the API reference page and its viewer (Swagger UI from swagger-ui-dist, pinned in
// package.json; docs/README.md records the version and licence). Embedded, so /docs works without any
// other host: huma's default page loads its viewer from a CDN and is blank offline.
//
//go:embed docs/index.html docs/init.js docs/swagger-ui-bundle.js docs/swagger-ui.css docs/LICENSE docs/NOTICE docs/swagger-ui-bundle.js.LICENSE.txt
var docsFiles embed.FS

// registerDocs serves GET /docs (the page) and GET /docs/{file} (its assets). They are public, like
// /openapi.json, which the page reads.
func (s *Server) registerDocs() {
	sub, err := fs.Sub(docsFiles, "docs")
	if err != nil {
		panic(err) // the embedded folder is there at compile time
	}
	serve := func(w http.ResponseWriter, r *http.Request, name string) {
		b, err := fs.ReadFile(sub, name)
		if err != nil {
			s.notFound(w, r)
			return
		}
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = "text/plain; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(b)
	}
	s.mux.HandleFunc("GET /docs", func(w http.ResponseWriter, r *http.Request) { serve(w, r, "index.html") })
	s.mux.HandleFunc("GET /docs/{file}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		if name == "" || name == "index.html" {
			serve(w, r, "index.html")
			return
		}
		serve(w, r, name)
	})
}
