package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/modules/retrieval/internal/app"
	"github.com/crispy-enigma/crispy/platform/apperr"
	platformhttp "github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// maxUploadText is POST /ingest's text limit, applied to the text extracted from an upload.
const maxUploadText = 500000

// DefaultMaxUploadBytes is POST /documents' body limit when the server sets none (serve's
// --upload-max-mb): larger than the API's 1 MiB for JSON, as a PDF of a few hundred pages is.
const DefaultMaxUploadBytes = 20 << 20

// UploadInput is POST /documents: a multipart form the handler reads as a stream (the file is
// spooled to a temporary file, never held whole in memory), so the limit, the type and the fields
// are answered as problems of their own (413, 415, 422) rather than by a schema.
type UploadInput struct {
	contentType string
	body        io.Reader
}

// Resolve keeps the request's Content-Type (its boundary is needed to read the form) and body.
func (in *UploadInput) Resolve(ctx huma.Context) []error {
	in.contentType, in.body = ctx.Header("Content-Type"), ctx.BodyReader()
	return nil
}

// uploadForm is what the multipart body holds; file is the spooled file part (the caller closes
// and removes it: cleanup).
type uploadForm struct {
	fileName string
	file     *os.File
	size     int64
	fields   map[string]string
}

func (f *uploadForm) cleanup() {
	if f.file != nil {
		_ = f.file.Close()
		_ = os.Remove(f.file.Name())
	}
}

var uploadFields = map[string]int{"docId": 256, "title": 1000, "source": 1000, "url": 2048}

// tooLarge is the problem of an upload over maxBytes.
func tooLarge(maxBytes int64) error {
	return apperr.New(apperr.KindTooLarge, "body_too_large",
		fmt.Sprintf("the upload is over the limit of %d bytes (%d MiB; serve's --upload-max-mb)", maxBytes, maxBytes>>20))
}

// readErr classifies a failure to read the form: over the body limit (413), else the client's
// malformed form (422).
func readErr(err error, maxBytes int64, loc, what string) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(mbe.Limit)
	}
	return apperr.Invalid("invalid_multipart", loc, what+err.Error())
}

// readUploadForm reads the multipart body as a stream: the file part is copied to a temporary
// file, at most maxBytes of it; the text fields are bounded by their own limits.
func readUploadForm(contentType string, body io.Reader, maxBytes int64) (_ *uploadForm, err error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, huma.Error415UnsupportedMediaType("send the document as multipart/form-data with a file field named \"file\"")
	}
	if body == nil {
		body = strings.NewReader("")
	}
	f := &uploadForm{fields: map[string]string{}}
	defer func() {
		if err != nil {
			f.cleanup()
		}
	}()
	r := multipart.NewReader(body, params["boundary"])
	for {
		p, err := r.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, readErr(err, maxBytes, "body", "cannot read the multipart form: ")
		}
		name := p.FormName()
		switch {
		case name == "file":
			if f.file != nil {
				return nil, apperr.Invalid("invalid_input", "body.file", "send one file per request")
			}
			f.fileName = path.Base(strings.ReplaceAll(p.FileName(), "\\", "/"))
			if f.file, err = os.CreateTemp("", "crispy-upload-*"); err != nil {
				return nil, fmt.Errorf("spool the upload: %w", err)
			}
			n, err := io.Copy(f.file, io.LimitReader(p, maxBytes+1))
			if err != nil {
				var pe *fs.PathError
				if errors.As(err, &pe) {
					return nil, fmt.Errorf("spool the upload: %w", err) // the temporary folder's fault, not the client's
				}
				return nil, readErr(err, maxBytes, "body.file", "cannot read the file: ")
			}
			if n > maxBytes {
				return nil, tooLarge(maxBytes)
			}
			f.size = n
			if _, err := f.file.Seek(0, io.SeekStart); err != nil {
				return nil, fmt.Errorf("spool the upload: %w", err)
			}
		case uploadFields[name] > 0:
			v, err := io.ReadAll(io.LimitReader(p, int64(uploadFields[name])*4+1))
			if err != nil {
				return nil, readErr(err, maxBytes, "body."+name, "cannot read the field: ")
			}
			if !utf8.Valid(v) || utf8.RuneCount(v) > uploadFields[name] {
				return nil, apperr.Invalid("invalid_input", "body."+name, name+" must be UTF-8 text of at most "+itoa(uploadFields[name])+" characters")
			}
			f.fields[name] = string(v)
		default:
			// Unknown parts are ignored, as unknown JSON properties are elsewhere.
			if _, err := io.Copy(io.Discard, p); err != nil {
				return nil, readErr(err, maxBytes, "body."+name, "cannot read the part: ")
			}
		}
	}
	if f.file == nil || f.fileName == "" || f.fileName == "." || f.fileName == "/" {
		return nil, apperr.Invalid("invalid_input", "body.file", "send the document in a file field named \"file\", with its file name")
	}
	return f, nil
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		if n /= 10; n == 0 {
			return string(b[i:])
		}
	}
}

// registerUpload mounts POST /documents.
func registerUpload(api huma.API, svc *app.Service) {
	str := func(desc string, max int) *huma.Schema {
		return &huma.Schema{Type: "string", Description: desc, MaxLength: &max}
	}
	huma.Register(api, huma.Operation{OperationID: "upload-document", Method: http.MethodPost, Path: "/documents", Tags: []string{tag},
		Summary: "Upload a document",
		Description: "Multipart upload of one .txt, .md, .html or .pdf file (field `file`), ingested exactly like POST /ingest: the text is " +
			"extracted (HTML without markup, scripts or styles; PDF as the text its pages show), chunked, embedded and indexed for the tenant. The document id is the " +
			"`docId` field or else the file name; the title is the `title` field or else the file name. The request has its own body limit, " +
			"20 MiB by default (serve's --upload-max-mb; the API's 1 MiB is for JSON), read as a stream and spooled to a temporary file; the text is bounded by " +
			"POST /ingest's 500,000 characters (413). A PDF without extractable text (scanned pages, or text only in composite CID fonts) is refused with 422. " +
			"A refused upload records nothing; one accepted that cannot be embedded or indexed (the embeddings provider fails) is answered 502/503 and listed " +
			"by GET /documents as failed, with the reason, until an upload or ingest of it succeeds.",
		Responses: map[string]*huma.Response{
			"409": problem("The tenant's index was built with another embeddings model: run `crispy reindex` for the tenant"),
			"413": problem("The upload is over its body limit (20 MiB by default, --upload-max-mb) or its text over 500,000 characters"),
			"415": problem("The file is not .txt, .md, .html or .pdf (or not readable as one), or the request is not multipart/form-data"),
			"422": problem("The file holds no text (a PDF of scanned pages, an HTML page of scripts)"),
			"503": problem("The search index or embeddings provider is unavailable")}},
		func(ctx context.Context, in *UploadInput) (*IngestOutput, error) {
			t, _ := tenant.FromContext(ctx)
			maxBytes := svc.MaxUploadBytes
			if maxBytes <= 0 {
				maxBytes = DefaultMaxUploadBytes
			}
			form, err := readUploadForm(in.contentType, in.body, maxBytes)
			if err != nil {
				return nil, platformhttp.ProblemFor(ctx, err)
			}
			defer form.cleanup()
			text, err := app.ExtractFile(form.fileName, form.file, form.size, maxUploadText)
			switch {
			case errors.Is(err, app.ErrUnsupportedFormat):
				return nil, platformhttp.ProblemFor(ctx, huma.Error415UnsupportedMediaType(err.Error()))
			case errors.Is(err, app.ErrTooLong):
				return nil, apperr.New(apperr.KindTooLarge, "too_large", form.fileName+"'s text is over 500,000 characters: split it")
			case errors.Is(err, app.ErrNoText):
				return nil, platformhttp.ProblemFor(ctx, huma.Error422UnprocessableEntity(form.fileName+": "+err.Error()))
			case err != nil:
				return nil, platformhttp.ProblemFor(ctx, huma.Error422UnprocessableEntity(err.Error()))
			}
			if strings.TrimSpace(text) == "" || platformhttp.Blank(text) {
				return nil, platformhttp.ProblemFor(ctx, huma.Error422UnprocessableEntity(form.fileName+" holds no text to index"))
			}
			c := app.Ingest{Tenant: t, DocID: form.fields["docId"], Title: form.fields["title"], Source: form.fields["source"],
				URL: form.fields["url"], Text: text}
			if c.DocID == "" {
				c.DocID = form.fileName
				if utf8.RuneCountInString(c.DocID) > uploadFields["docId"] {
					return nil, apperr.Invalid("invalid_input", "body.docId", "the file name is over 256 characters: send a docId field")
				}
			}
			if c.Title == "" {
				c.Title = form.fileName
			}
			if c.Source == "" {
				c.Source = "upload"
			}
			if errs := platformhttp.FieldErrors(platformhttp.Line("body.docId", c.DocID), platformhttp.Prose("body.file", c.Text),
				platformhttp.Line("body.title", c.Title), platformhttp.Line("body.source", c.Source), platformhttp.Line("body.url", c.URL)); len(errs) > 0 {
				return nil, platformhttp.ProblemFor(ctx, huma.Error422UnprocessableEntity("validation failed", errs...))
			}
			return ingest(ctx, svc, c)
		})
	// The form is documented here, after registration: a multipart schema given to huma.Register
	// would make huma decode and validate the body itself, answering 415/422 before the handler can
	// say which file or field is wrong.
	if pi := api.OpenAPI().Paths["/documents"]; pi != nil && pi.Post != nil {
		schemas := api.OpenAPI().Components.Schemas
		schemas.Map()["UploadDocumentInput"] = &huma.Schema{Type: "object", Required: []string{"file"}, Properties: map[string]*huma.Schema{
			"file":   {Type: "string", Format: "binary", Description: "The document: .txt, .md, .html/.htm (UTF-8) or .pdf"},
			"docId":  str("The document's id within the tenant (default: the file name); re-uploading it replaces its chunks", 256),
			"title":  str("Title shown with citations (default: the file name)", 1000),
			"source": str("Where the document came from (default: upload)", 1000),
			"url":    str("Link shown with citations", 2048),
		}}
		pi.Post.RequestBody = &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{"multipart/form-data": {
			Schema:   &huma.Schema{Ref: "#/components/schemas/UploadDocumentInput"},
			Example:  map[string]any{"file": "Employees get 25 days of paid vacation per year.", "docId": "handbook/vacation.md", "title": "Vacation policy"},
			Encoding: map[string]*huma.Encoding{"file": {ContentType: "text/plain, text/markdown, text/html, application/pdf, application/octet-stream"}},
		}}}
	}
}
