package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// UploadFormats are the file extensions POST /documents turns into text.
var UploadFormats = []string{".txt", ".md", ".html", ".htm", ".pdf"}

// ErrUnsupportedFormat is wrapped by ExtractText for a file it cannot read as text.
var ErrUnsupportedFormat = fmt.Errorf("unsupported format")

// ErrTooLong is wrapped by ExtractFile for a file whose text is over the limit it was given.
var ErrTooLong = fmt.Errorf("text too long")

// ExtractText turns an uploaded file into the text POST /ingest takes, picked by the file name's
// extension: .txt and .md as they are (UTF-8), .html/.htm without markup, scripts and styles,
// .pdf as its pages' text (pdfText). It wraps ErrUnsupportedFormat or ErrNoText.
func ExtractText(name string, data []byte) (string, error) {
	return ExtractFile(name, bytes.NewReader(data), int64(len(data)), math.MaxInt)
}

// ExtractFile is ExtractText over a file of size bytes read through r (an upload spooled to
// disk), keeping at most maxChars characters of text: past them it stops reading and wraps
// ErrTooLong. A text file is read whole only when it can fit (4 bytes a character at most); an
// HTML page is tokenised as a stream, never parsed into a tree, so memory follows the text kept,
// not the file's size.
func ExtractFile(name string, r io.ReadSeeker, size int64, maxChars int) (string, error) {
	ext := strings.ToLower(path.Ext(name))
	switch ext {
	case ".txt", ".md":
		if maxChars < math.MaxInt/utf8.UTFMax && size > int64(maxChars)*utf8.UTFMax {
			return "", fmt.Errorf("%w: %s is %d bytes, over %d characters whatever its encoding", ErrTooLong, name, size, maxChars)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", name, err)
		}
		if !utf8.Valid(data) {
			return "", fmt.Errorf("%w: %s is not UTF-8 text", ErrUnsupportedFormat, name)
		}
		if n := utf8.RuneCount(data); n > maxChars {
			return "", fmt.Errorf("%w: %s holds %d characters, over %d", ErrTooLong, name, n, maxChars)
		}
		return strings.TrimPrefix(string(data), "\ufeff"), nil
	case ".html", ".htm":
		return htmlText(r, maxChars)
	case ".pdf":
		text, err := pdfText(r)
		if err == nil && utf8.RuneCountInString(text) > maxChars {
			return "", fmt.Errorf("%w: %s holds %d characters of text, over %d", ErrTooLong, name, utf8.RuneCountInString(text), maxChars)
		}
		return text, err
	default:
		return "", fmt.Errorf("%w: %q: upload .txt, .md, .html or .pdf", ErrUnsupportedFormat, ext)
	}
}

// maxHTMLToken bounds one token of an HTML page.
const maxHTMLToken = 4 << 20

// htmlText keeps the text a reader sees: script, style, template, noscript, title, svg, iframe and
// object content is dropped, block elements start and end a paragraph so the chunker's boundaries
// survive. It tokenises the page as a stream (an unclosed element never hides what follows its
// parent, as the tree builder's rules would have it, but a page is read without holding it whole).
func htmlText(r io.Reader, maxChars int) (string, error) {
	z := html.NewTokenizer(r)
	// One token (an inline script, a run of text) is buffered whole: bounded, so a page of one
	// huge token cannot take the memory the streaming saves.
	z.SetMaxBuf(maxHTMLToken)
	var b strings.Builder
	skip, chars := 0, 0
	brk := true // b ends a paragraph: block elements in a row add one break, not one each
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			if errors.Is(z.Err(), io.EOF) {
				return paragraphs(b.String()), nil
			}
			if errors.Is(z.Err(), html.ErrBufferExceeded) {
				return "", fmt.Errorf("%w: the page holds one element (a script, a style, a text) over %d MiB", ErrUnsupportedFormat, maxHTMLToken>>20)
			}
			return "", fmt.Errorf("read html: %w", z.Err())
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			name, _ := z.TagName()
			a := atom.Lookup(name)
			if hiddenElement(a) {
				if tt == html.StartTagToken {
					skip++
				} else if tt == html.EndTagToken && skip > 0 {
					skip--
				}
				continue
			}
			if skip == 0 && !brk && (blockElement(a) || a == atom.Br) {
				b.WriteString("\n\n")
				brk = true
			}
		case html.TextToken:
			if skip > 0 || len(bytes.TrimSpace(z.Raw())) == 0 {
				continue // Text copies the token: the blank runs between tags are skipped before it
			}
			raw := z.Text()
			t := strings.Join(strings.Fields(string(raw)), " ")
			if t == "" {
				continue
			}
			if chars += utf8.RuneCountInString(t) + 1; chars > maxChars {
				return "", fmt.Errorf("%w: the page holds over %d characters of text", ErrTooLong, maxChars)
			}
			b.WriteString(t)
			b.WriteByte(' ')
			brk = false
		}
	}
}

// paragraphs collapses the blank runs the walk leaves and trims each paragraph.
func paragraphs(s string) string {
	var out []string
	for _, p := range strings.Split(s, "\n\n") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "\n\n")
}

// hiddenElement is an element whose content a reader does not see as text.
func hiddenElement(a atom.Atom) bool {
	switch a {
	case atom.Script, atom.Style, atom.Template, atom.Noscript, atom.Title, atom.Svg, atom.Iframe, atom.Object:
		return true
	}
	return false
}

func blockElement(a atom.Atom) bool {
	switch a {
	case atom.P, atom.Div, atom.Br, atom.Li, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6, atom.Tr, atom.Table,
		atom.Section, atom.Article, atom.Header, atom.Footer, atom.Pre, atom.Blockquote, atom.Ul, atom.Ol, atom.Dd, atom.Dt, atom.Title:
		return true
	}
	return false
}
