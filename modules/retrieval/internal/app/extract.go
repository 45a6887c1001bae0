package app

import (
	"bytes"
	"fmt"
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

// ExtractText turns an uploaded file into the text POST /ingest takes, picked by the file name's
// extension: .txt and .md as they are (UTF-8), .html/.htm without markup, scripts and styles,
// .pdf as its pages' text (pdfText). It wraps ErrUnsupportedFormat or ErrNoText.
func ExtractText(name string, data []byte) (string, error) {
	ext := strings.ToLower(path.Ext(name))
	switch ext {
	case ".txt", ".md":
		if !utf8.Valid(data) {
			return "", fmt.Errorf("%w: %s is not UTF-8 text", ErrUnsupportedFormat, name)
		}
		return strings.TrimPrefix(string(data), "\ufeff"), nil
	case ".html", ".htm":
		return htmlText(data)
	case ".pdf":
		return pdfText(data)
	default:
		return "", fmt.Errorf("%w: %q: upload .txt, .md, .html or .pdf", ErrUnsupportedFormat, ext)
	}
}

// htmlText keeps the text a reader sees: script, style, template, noscript and head metadata are
// dropped, block elements end a paragraph so the chunker's boundaries survive.
func htmlText(data []byte) (string, error) {
	doc, err := html.Parse(bytes.NewReader(data))
	if err != nil {
		return "", fmt.Errorf("parse html: %w", err)
	}
	var b strings.Builder
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.DataAtom {
			case atom.Script, atom.Style, atom.Template, atom.Noscript, atom.Head, atom.Svg, atom.Iframe, atom.Object:
				return
			}
		}
		if n.Type == html.TextNode {
			b.WriteString(strings.Join(strings.Fields(n.Data), " "))
			if strings.TrimSpace(n.Data) != "" {
				b.WriteByte(' ')
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
		if n.Type == html.ElementNode && blockElement(n.DataAtom) {
			b.WriteString("\n\n")
		}
	}
	walk(doc)
	// Collapse the blank runs the walk leaves and trim each paragraph.
	var out []string
	for _, p := range strings.Split(b.String(), "\n\n") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "\n\n"), nil
}

func blockElement(a atom.Atom) bool {
	switch a {
	case atom.P, atom.Div, atom.Br, atom.Li, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6, atom.Tr, atom.Table,
		atom.Section, atom.Article, atom.Header, atom.Footer, atom.Pre, atom.Blockquote, atom.Ul, atom.Ol, atom.Dd, atom.Dt, atom.Title:
		return true
	}
	return false
}
