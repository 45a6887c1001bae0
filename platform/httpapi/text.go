package httpapi

// Text hygiene (issue 10, item 9). Every string a client sends must be valid UTF-8 and free of control
// characters; free text may keep tab, line feed and carriage return. The check is made twice:
//
//   - at the floor, by checkText, on the raw bytes of every JSON body and on every declared path,
//     query and header parameter. It has to see the raw bytes because encoding/json silently turns
//     invalid UTF-8 into U+FFFD, after which nothing can tell a client's bad bytes from a real U+FFFD.
//   - per field, by the modules' input Resolvers with Prose and Line, which add what only the field
//     knows: a message or a document id of nothing but spaces is blank, and an id is one line.
//
// Both answer 422 with the field's location (body.message, path.docId, header.x-user-id), never the
// value itself: echoing bad bytes would only move the problem to the client's logs.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"
	"github.com/go-json-experiment/json/jsontext"
)

// MaxTextErrors caps the findings reported for one request: a body with a million bad strings gets
// twenty errors, not a million.
const MaxTextErrors = 20

const (
	msgInvalidUTF8 = "must be valid UTF-8"
	msgBlank       = "must not be blank (only spaces or invisible characters)"
	msgLineBreak   = "must be one line (no tab, line feed or carriage return)"
	// Locations are built from client-chosen property names: each name and the whole path are
	// clipped so a finding stays small whatever the body holds.
	maxLocationToken = 64
	maxLocation      = 256
)

// TextFault reports what is wrong with s as text, or "" when nothing is: invalid UTF-8, or a control
// character (C0, DEL or C1). Tab, line feed and carriage return are allowed when multiline.
func TextFault(s string, multiline bool) string { return textFault(s, multiline) }

// textFault is TextFault for a string or, without copying it, a body's raw bytes.
func textFault[T ~string | ~[]byte](s T, multiline bool) string {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				if multiline && (c == '\t' || c == '\n' || c == '\r') {
					i++
					continue
				}
				if c == '\t' || c == '\n' || c == '\r' {
					return msgLineBreak
				}
				return controlMsg(rune(c))
			}
			i++
			continue
		}
		// At most four bytes: the conversion stays on the stack.
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			return msgInvalidUTF8
		}
		if r >= 0x80 && r <= 0x9f {
			return controlMsg(r)
		}
		i += size
	}
	return ""
}

func controlMsg(r rune) string {
	return fmt.Sprintf("must not contain control characters (found U+%04X)", r)
}

// Blank reports whether s is non-empty but holds nothing visible: only white space (Unicode's
// definition) and format characters such as the zero-width space or a byte-order mark. The empty
// string is not blank: whether a field may be empty is its minLength's business.
func Blank(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !unicode.IsSpace(r) && !unicode.Is(unicode.Cf, r) {
			return false
		}
	}
	return true
}

// Prose checks a free-text field (a message, a document, a query) at loc: valid UTF-8, no control
// characters but tab and line breaks, and not blank. It returns nil when the field is fine or
// empty, so a Resolver can list its fields and pass the results to FieldErrors.
func Prose(loc, s string) *huma.ErrorDetail { return fieldCheck(loc, s, true) }

// Line checks a one-line field (an id, a name, a model, a URL) at loc: like Prose, and no tab or line
// break either.
func Line(loc, s string) *huma.ErrorDetail { return fieldCheck(loc, s, false) }

func fieldCheck(loc, s string, multiline bool) *huma.ErrorDetail {
	if m := TextFault(s, multiline); m != "" {
		return &huma.ErrorDetail{Location: loc, Message: m}
	}
	if Blank(s) {
		return &huma.ErrorDetail{Location: loc, Message: msgBlank}
	}
	return nil
}

// FieldErrors keeps the failed checks, as the []error a huma Resolver returns (422 naming each field).
func FieldErrors(checks ...*huma.ErrorDetail) []error {
	var out []error
	for _, c := range checks {
		if c != nil && len(out) < MaxTextErrors {
			out = append(out, c)
		}
	}
	return out
}

// ScanJSONText walks a JSON document and reports, at most max of them, the strings (values and
// property names) that are not valid UTF-8 or hold a control character other than tab and line
// breaks, each located under root in huma's notation (body.messages[0].content). Escapes count as
// what they decode to: "\u0000" is a NUL and a lone "\ud800" is not UTF-8. A body that is not JSON
// is not this check's business: the scan stops at the first syntax error that is not about a
// string's characters, and the decoder that follows reports it.
func ScanJSONText(body []byte, root string, limit int) []*huma.ErrorDetail {
	if noTextFaults(body) {
		return nil
	}
	return scanJSONText(body, root, limit)
}

// noTextFaults reports whether body's bytes alone show that the scan has nothing to report: no
// escape (no backslash at all), no control character (C0 including tab and line breaks, DEL or
// C1) and valid UTF-8 throughout. The scan reports only such bytes, in a string or where the
// tokenizer stopped (a tab after "0." is reported), and an escape's decoding. Every request body is
// scanned, and nearly all of them are plain like this (SDKs send compact JSON): the tokenizer and
// its name stack cost a proxied /v1 call a few microseconds for nothing. Anything else, a
// pretty-printed body included, takes the full scan.
func noTextFaults(body []byte) bool {
	for i := 0; i < len(body); {
		c := body[i]
		switch {
		case c >= 0x20 && c < 0x7f && c != '\\':
			i++
		case c < utf8.RuneSelf:
			return false // a backslash, a C0 control, or DEL
		default:
			r, size := utf8.DecodeRune(body[i:])
			if r == utf8.RuneError && size == 1 || r <= 0x9f {
				return false // invalid UTF-8, or a C1 control
			}
			i += size
		}
	}
	return true
}

// scanJSONText is ScanJSONText's walk.
func scanJSONText(body []byte, root string, limit int) []*huma.ErrorDetail {
	var out []*huma.ErrorDetail
	// Duplicate names are allowed here as encoding/json allows them; this pass judges characters only.
	// A bytes.Buffer is parsed in place, without a copy.
	d := jsontext.NewDecoder(bytes.NewBuffer(body), jsontext.AllowDuplicateNames(true))
	for len(out) < limit {
		var err error
		if d.PeekKind() == '"' {
			// A string (value or name) is read raw and checked where it lies; only one with escapes
			// is decoded, into a copy.
			var v jsontext.Value
			if v, err = d.ReadValue(); err == nil {
				if m := stringFault(v); m != "" {
					out = append(out, stringFinding(root, d, m))
				}
			}
		} else {
			_, err = d.ReadToken()
		}
		if err != nil {
			if err == io.EOF {
				return out
			}
			var se *jsontext.SyntacticError
			if errors.As(err, &se) {
				if m := badStringByte(body, se.ByteOffset); m != "" {
					if expectingName(d) {
						m = "property name " + m
					}
					out = append(out, &huma.ErrorDetail{Location: location(root, d, se.JSONPointer), Message: m})
				}
			}
			return out
		}
		if d.StackDepth() == 0 {
			// One top-level value; whatever follows is the decoder's to refuse.
			return out
		}
	}
	return out
}

// stringFault checks a raw JSON string (quotes included) as the text it decodes to.
func stringFault(v jsontext.Value) string {
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return textFault(inner, true)
	}
	u, err := jsontext.AppendUnquote(nil, v)
	if err != nil {
		return msgInvalidUTF8 // the decoder has validated it; only a lone surrogate could fail here
	}
	return textFault(u, true)
}

// stringFinding locates the string token just read: a bad property name at the object holding it, a
// bad value at its own path.
func stringFinding(root string, d *jsontext.Decoder, msg string) *huma.ErrorDetail {
	ptr := d.StackPointer()
	if depth := d.StackDepth(); depth > 0 {
		if k, n := d.StackIndex(depth); k == '{' && n%2 == 1 {
			// The name itself is bad: locate the object that holds it, as for raw bad bytes in a
			// name, rather than a path made of the bad name.
			return &huma.ErrorDetail{Location: location(root, d, ptr.Parent()), Message: "property name " + msg}
		}
	}
	return &huma.ErrorDetail{Location: location(root, d, ptr), Message: msg}
}

// expectingName reports whether the decoder stands where an object's next property name goes: a
// syntax error there is in a name.
func expectingName(d *jsontext.Decoder) bool {
	depth := d.StackDepth()
	if depth == 0 {
		return false
	}
	k, n := d.StackIndex(depth)
	return k == '{' && n%2 == 0
}

// badStringByte says why the byte at off breaks a string, when it is about characters: invalid UTF-8,
// an escape of a lone surrogate, or a raw control character. Other syntax errors return "".
func badStringByte(body []byte, off int64) string {
	if off < 0 || off >= int64(len(body)) {
		return ""
	}
	b := body[off:]
	switch {
	case b[0] >= utf8.RuneSelf:
		if r, size := utf8.DecodeRune(b); r == utf8.RuneError && size <= 1 {
			return msgInvalidUTF8
		}
	case b[0] < 0x20:
		return controlMsg(rune(b[0]))
	case len(b) >= 6 && b[0] == '\\' && b[1] == 'u':
		if v, err := strconv.ParseUint(string(b[2:6]), 16, 16); err == nil && v >= 0xd800 && v <= 0xdfff {
			return msgInvalidUTF8
		}
	}
	return ""
}

// location renders a JSON pointer in huma's notation: array indexes as [n], names as .name. Which
// tokens are indexes comes from the decoder's stack, not from their spelling, so a property named
// "0" stays .0.
func location(root string, d *jsontext.Decoder, ptr jsontext.Pointer) string {
	var b strings.Builder
	b.WriteString(root)
	level := 0
	for tok := range ptr.Tokens() {
		level++
		if b.Len() >= maxLocation {
			b.WriteString("…")
			break
		}
		isIndex := false
		if level <= d.StackDepth() {
			k, _ := d.StackIndex(level)
			isIndex = k == '['
		}
		if isIndex {
			b.WriteString("[" + tok + "]")
			continue
		}
		b.WriteString(".")
		b.WriteString(cleanToken(tok))
	}
	return b.String()
}

// cleanToken makes a property name safe to show: clipped, invalid bytes and control characters
// replaced, so the location of a bad name does not carry the bad name.
func cleanToken(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i >= maxLocationToken {
			b.WriteString("…")
			break
		}
		if r == utf8.RuneError || r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			r = '\uFFFD'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// checkText is the floor's hygiene middleware: it refuses, with 422, a request whose declared
// parameters or JSON body hold invalid UTF-8 or control characters, before the operation decodes
// them. It runs after the guard, so an unknown tenant is still a 404 whatever it sent.
func (s *Server) checkText(hctx huma.Context, next func(huma.Context)) {
	op := hctx.Operation()
	if op == nil {
		next(hctx)
		return
	}
	var errs []error
	var query url.Values // parsed once, at the first query parameter
	for _, p := range op.Parameters {
		if p == nil || len(errs) >= MaxTextErrors {
			continue
		}
		var vals []string
		switch p.In {
		case "path":
			vals = []string{hctx.Param(p.Name)}
		case "query":
			// What huma binds: a scalar is the first value, found by hctx.Query in the raw query
			// however long it is; an exploded array is every value, as url.Values has them (the
			// standard parser stops after 10,000 parameters, so it alone missed a bad value
			// behind 10,000 others, and the handler got it).
			if query == nil {
				u := hctx.URL()
				query = u.Query()
			}
			vals = append([]string{hctx.Query(p.Name)}, query[p.Name]...)
		case "header":
			vals = []string{hctx.Header(canonicalHeader(p.Name))}
		default:
			continue
		}
		for _, v := range vals {
			// Parameters are single values: no line breaks either.
			if m := TextFault(v, false); m != "" {
				errs = append(errs, &huma.ErrorDetail{Location: p.In + "." + p.Name, Message: m})
				break
			}
		}
	}
	if len(errs) > 0 {
		_ = huma.WriteErr(s.API, hctx, 422, "validation failed", errs...)
		return
	}
	if op.RequestBody == nil || isMultipart(hctx.Header("Content-Type")) {
		// A multipart body (an upload) is not JSON, and may be far larger than a JSON body: the
		// operation streams it and checks its own fields, instead of this check holding it whole.
		next(hctx)
		return
	}
	body, rest, ok := readBodyFor(hctx, op)
	if !ok {
		// Too large, cut short or unreadable: the operation reads the same bytes and error and
		// answers as it would have without this check.
		next(&bodyContext{humaContext: hctx, body: rest})
		return
	}
	for _, f := range ScanJSONText(body, "body", MaxTextErrors) {
		errs = append(errs, f)
	}
	if len(errs) > 0 {
		_ = huma.WriteErr(s.API, hctx, 422, "validation failed", errs...)
		return
	}
	next(&bodyContext{humaContext: hctx, body: bytes.NewReader(body)})
}

// headerKeys caches the canonical form of header parameters' names (x-tenant-id: X-Tenant-Id),
// which net/http would otherwise compute, and allocate, at every lookup.
var headerKeys sync.Map

func canonicalHeader(name string) string {
	if k, ok := headerKeys.Load(name); ok {
		return k.(string)
	}
	k := textproto.CanonicalMIMEHeaderKey(name)
	headerKeys.Store(name, k)
	return k
}

// isMultipart reports a multipart/form-data content type.
func isMultipart(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "multipart/form-data")
}

// readBodyFor reads the whole body within the operation's limits. ok is false when it could not
// (over the limit, a read error or timeout); rest then replays what was read followed by the rest of
// the body, or by the error, so the operation's own reading sees exactly what it would have seen.
func readBodyFor(hctx huma.Context, op *huma.Operation) (body []byte, rest io.Reader, ok bool) {
	r := hctx.BodyReader()
	if r == nil {
		return nil, bytes.NewReader(nil), true
	}
	if op.BodyReadTimeout > 0 {
		_ = hctx.SetReadDeadline(time.Now().Add(op.BodyReadTimeout))
		defer func() { _ = hctx.SetReadDeadline(time.Time{}) }()
	}
	limit := op.MaxBodyBytes
	if limit <= 0 {
		limit = MaxBodyBytes
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, io.MultiReader(bytes.NewReader(buf.Bytes()), errReader{err}), false
	}
	if n > limit {
		return nil, io.MultiReader(bytes.NewReader(buf.Bytes()), r), false
	}
	return buf.Bytes(), nil, true
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// bodyContext hands the operation the body the hygiene check already read.
type bodyContext struct {
	humaContext
	body io.Reader
}

// humaContext lets bodyContext embed huma.Context without its field hiding the Context method.
type humaContext = huma.Context

func (c *bodyContext) BodyReader() io.Reader { return c.body }

// Unwrap keeps adapter helpers (humago.Unwrap) working through this wrapper.
func (c *bodyContext) Unwrap() huma.Context { return c.humaContext }
