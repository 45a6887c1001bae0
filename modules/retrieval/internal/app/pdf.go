package app

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode"

	"github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"
)

// ErrNoText is wrapped by ExtractText for a file that holds no text to index (a scanned PDF).
var ErrNoText = fmt.Errorf("no text")

// pdfText reads a PDF with pdfcpu (parsing, cross-reference repair, decryption of an empty user
// password, stream filters) and keeps the strings its pages' content streams show. Simple fonts'
// bytes are read as Latin-1; a PDF whose text is in fonts without a readable mapping (or that is
// scanned images) yields no letters and is refused as holding no text rather than indexed as noise.
func pdfText(r io.ReadSeeker) (text string, err error) {
	defer func() {
		if r := recover(); r != nil { // a malformed file must not take the request down
			text, err = "", fmt.Errorf("%w: unreadable PDF: %v", ErrUnsupportedFormat, r)
		}
	}()
	// The configuration is built here, not by model.NewDefaultConfiguration: that one reads and
	// writes a config folder under the user's home.
	conf := &model.Configuration{ValidationMode: model.ValidationRelaxed, Reader15: true, Cmd: model.EXTRACTCONTENT,
		UnsupportedResourcePolicy: model.UnsupportedResourceSkip, Limits: model.DefaultResourceLimits()}
	ctx, err := api.ReadContext(r, conf)
	if err != nil {
		return "", fmt.Errorf("%w: unreadable PDF: %v", ErrUnsupportedFormat, err)
	}
	if err := api.ValidateContext(ctx); err != nil {
		return "", fmt.Errorf("%w: unreadable PDF: %v", ErrUnsupportedFormat, err)
	}
	var pages []string
	for p := 1; p <= ctx.PageCount; p++ {
		rd, err := pdfcpu.ExtractPageContent(ctx, p)
		if err != nil {
			return "", fmt.Errorf("%w: PDF page %d: %v", ErrUnsupportedFormat, p, err)
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(rd); err != nil {
			return "", fmt.Errorf("read PDF page %d: %w", p, err)
		}
		if t := strings.TrimSpace(contentText(b.Bytes())); t != "" {
			pages = append(pages, t)
		}
	}
	text = strings.Join(pages, "\n\n")
	letters, other := 0, 0
	for _, r := range text {
		switch {
		case unicode.IsLetter(r):
			letters++
		case r != controlMark && !unicode.IsSpace(r) && !unicode.IsPunct(r) && !unicode.IsDigit(r):
			other++
		}
	}
	// Control bytes are what a composite font's 2-byte codes look like read one by one (0x00 0x41
	// for "A"): a PDF with such a font and such text is refused rather than indexed as noise.
	controls := strings.ContainsRune(text, controlMark)
	text = strings.ReplaceAll(text, string(controlMark), "")
	if letters == 0 || other > letters || controls && compositeFonts(ctx) {
		if compositeFonts(ctx) {
			return "", fmt.Errorf("%w: the PDF's text is set in composite (Type0/CID) fonts, which this server cannot read yet "+
				"(their glyph codes need the font's ToUnicode map): export it with standard fonts, or send its text to POST /ingest", ErrNoText)
		}
		return "", fmt.Errorf("%w: the PDF holds no extractable text (scanned pages, or fonts without a text mapping)", ErrNoText)
	}
	return text, nil
}

// compositeFonts reports whether the PDF holds a composite (Type0) font: text in one is a run of
// 2-byte glyph codes, which only the font's ToUnicode CMap turns into characters. pdfText reads
// simple fonts only (Latin-1 bytes), so such text comes out as noise and the file is refused,
// saying why: a faithful reading needs a CMap parser and per-font state through the content
// stream, which pdfcpu v0.15.0 does not offer (it has no text extraction).
func compositeFonts(ctx *model.Context) bool {
	for _, e := range ctx.XRefTable.Table {
		if e == nil || e.Free {
			continue
		}
		if d, ok := e.Object.(types.Dict); ok {
			if st := d.NameEntry("Subtype"); st != nil && *st == "Type0" {
				return true
			}
		}
	}
	return false
}

// contentText keeps what a content stream's text operators show: Tj, ', " and TJ strings, with a
// line break at text-line moves (T*, Td, TD, Tm, ET) and a space for large TJ kerning gaps.
func contentText(s []byte) string {
	var out strings.Builder
	var operands []any // string or float-ish marker for TJ arrays
	var inArray bool
	var array []any
	i := 0
	emit := func(str string) { out.WriteString(str) }
	for i < len(s) {
		c := s[i]
		switch {
		case c == '%':
			for i < len(s) && s[i] != '\n' && s[i] != '\r' {
				i++
			}
		case c == '(':
			str, n := literalString(s[i:])
			i += n
			if inArray {
				array = append(array, str)
			} else {
				operands = append(operands, str)
			}
			continue
		case c == '<' && i+1 < len(s) && s[i+1] != '<':
			j := bytes.IndexByte(s[i:], '>')
			if j < 0 {
				return out.String()
			}
			str := hexString(s[i+1 : i+j])
			i += j + 1
			if inArray {
				array = append(array, str)
			} else {
				operands = append(operands, str)
			}
			continue
		case c == '[':
			inArray, array = true, nil
		case c == ']':
			inArray = false
			operands = append(operands, array)
		case c == '-' || c == '.' || c == '+' || (c >= '0' && c <= '9'):
			j := i + 1
			for j < len(s) && (s[j] == '.' || (s[j] >= '0' && s[j] <= '9')) {
				j++
			}
			if inArray {
				var f float64
				_, _ = fmt.Sscanf(string(s[i:j]), "%g", &f)
				array = append(array, f)
			}
			i = j
			continue
		case isRegular(c):
			j := i
			for j < len(s) && isRegular(s[j]) {
				j++
			}
			op := string(s[i:j])
			i = j
			switch op {
			case "Tj", "'", "\"":
				if op != "Tj" {
					emit("\n")
				}
				if len(operands) > 0 {
					if str, ok := operands[len(operands)-1].(string); ok {
						emit(str)
					}
				}
			case "TJ":
				if len(operands) > 0 {
					if arr, ok := operands[len(operands)-1].([]any); ok {
						for _, a := range arr {
							switch v := a.(type) {
							case string:
								emit(v)
							case float64:
								if v < -200 {
									emit(" ")
								}
							}
						}
					}
				}
			case "T*", "Td", "TD", "Tm", "ET":
				emit("\n")
			case "BI": // inline image: skip to EI
				if k := bytes.Index(s[i:], []byte("EI")); k >= 0 {
					i += k + 2
				} else {
					i = len(s)
				}
			}
			if op != "" {
				operands = operands[:0]
			}
			continue
		}
		i++
	}
	return out.String()
}

// isRegular is a byte an operator or a name is made of (digits, signs and dots start numbers).
func isRegular(c byte) bool {
	return c > ' ' && c < 0x7f && !strings.ContainsRune("()<>[]{}/%", rune(c)) && !(c >= '0' && c <= '9') && c != '-' && c != '.' && c != '+'
}

// literalString reads a (…) string with its escapes and balanced parentheses; n is the bytes used.
func literalString(s []byte) (string, int) {
	var b []byte
	depth := 0
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		switch c {
		case '(':
			depth++
			if depth == 1 {
				continue
			}
		case ')':
			depth--
			if depth == 0 {
				return latin1(b), i + 1
			}
		case '\\':
			i++
			if i >= len(s) {
				return latin1(b), i
			}
			switch e := s[i]; e {
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'b', 'f':
			case '\r', '\n':
				if e == '\r' && i+1 < len(s) && s[i+1] == '\n' {
					i++
				}
			default:
				if e >= '0' && e <= '7' {
					v, k := 0, 0
					for ; k < 3 && i+k < len(s) && s[i+k] >= '0' && s[i+k] <= '7'; k++ {
						v = v*8 + int(s[i+k]-'0')
					}
					b = append(b, byte(v))
					i += k - 1
				} else {
					b = append(b, e)
				}
			}
			continue
		}
		b = append(b, c)
	}
	return latin1(b), i
}

func hexString(h []byte) string {
	var b []byte
	var hi int = -1
	for _, c := range h {
		var v int
		switch {
		case c >= '0' && c <= '9':
			v = int(c - '0')
		case c >= 'a' && c <= 'f':
			v = int(c-'a') + 10
		case c >= 'A' && c <= 'F':
			v = int(c-'A') + 10
		default:
			continue
		}
		if hi < 0 {
			hi = v
		} else {
			b, hi = append(b, byte(hi<<4|v)), -1
		}
	}
	if hi >= 0 {
		b = append(b, byte(hi<<4))
	}
	return latin1(b)
}

// latin1 reads PDF string bytes as Windows-1252 (WinAnsiEncoding, the simple fonts' usual one:
// Latin-1 with quotes, dashes and the euro in 0x80–0x9F, which as Latin-1 are control
// characters that POST /ingest refuses). Other control bytes (a two-byte font's high bytes, as
// 0x00 0x41 for "A") become controlMark, which pdfText counts and strips.
func latin1(b []byte) string {
	r := make([]rune, 0, len(b))
	for _, c := range b {
		switch {
		case c == '\n' || c == '\t':
			r = append(r, rune(c))
		case c < 0x20:
			r = append(r, controlMark)
		case c >= 0x80 && c < 0xa0:
			if x := winAnsi[c-0x80]; x != 0 {
				r = append(r, x)
			}
		default:
			r = append(r, rune(c))
		}
	}
	return string(r)
}

// controlMark stands for a control byte of a shown string until pdfText has counted them.
const controlMark = '\u001a'

// winAnsi is Windows-1252's 0x80–0x9F (0: undefined).
var winAnsi = [32]rune{'€', 0, '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', 0, 'Ž', 0,
	0, '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', 0, 'ž', 'Ÿ'}
