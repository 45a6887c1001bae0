package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/modules/retrieval/internal/domain"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// FilesResult reports a file ingestion.
type FilesResult struct {
	Ingested int
	Skipped  int // unchanged since their last ingest
	Failed   map[string]error
}

// IsIngestible reports whether a path is a text or Markdown file.
func IsIngestible(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".txt", ".md", ".markdown":
		return true
	}
	return false
}

// FileDocID derives a document id from a path: the path as given, cleaned, with '/' separators
// (absolute paths are made relative to the working directory when they are inside it).
func FileDocID(path string) string {
	p := filepath.Clean(path)
	if filepath.IsAbs(p) {
		if wd, err := os.Getwd(); err == nil {
			if rel, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(rel, "..") {
				p = rel
			}
		}
	}
	return strings.TrimPrefix(filepath.ToSlash(p), "./")
}

// IngestPaths ingests .txt and .md files, walking folders. It is resumable: a file whose content hash
// matches its document's last ingest is skipped. progress is called after every file.
func (s *Service) IngestPaths(ctx context.Context, t tenant.ID, paths []string, progress func(done, total int, path string)) (FilesResult, error) {
	var files []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return FilesResult{}, fmt.Errorf("ingest %s: %w", p, err)
		}
		if !info.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && path != p && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			// Only regular files: a FIFO named notes.txt would block the walk forever, a device
			// would never end.
			if d.Type().IsRegular() && IsIngestible(path) {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return FilesResult{}, fmt.Errorf("walk %s: %w", p, err)
		}
	}
	sort.Strings(files)
	// crispy ingest runs without the bus: it writes the index itself (Consumed unset). It does not
	// move the tenant's index checkpoint, so the server's next start applies these events again
	// (idempotent: the same documents, embedded again).
	hashes, err := s.contentHashes(ctx, t)
	if err != nil {
		return FilesResult{}, err
	}
	res := FilesResult{Failed: map[string]error{}}
	for i, f := range files {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		err := s.ingestFile(ctx, t, f, hashes, &res)
		if err != nil {
			res.Failed[f] = err
		}
		if progress != nil {
			progress(i+1, len(files), f)
		}
	}
	return res, nil
}

// contentHashes returns the content hash of each of t's live documents, by docId: what the resumable
// ingest compares files with, a string a document however long its text.
func (s *Service) contentHashes(ctx context.Context, t tenant.ID) (map[string]string, error) {
	prefix := t.StreamPrefix() + events.DocCategory + "-"
	hashes := map[string]string{}
	err := s.eachEvent(ctx, t, eventstore.Start, func(e eventstore.Event) error {
		if !strings.HasPrefix(e.Stream, prefix) {
			return nil
		}
		var d domain.Document
		if err := foldEvent(&d, e); err != nil {
			return err
		}
		switch {
		case d.Exists:
			hashes[d.DocID] = d.Ingested.ContentHash
		case d.DocID != "": // deleted
			delete(hashes, d.DocID)
		}
		return nil
	})
	return hashes, err
}

func (s *Service) ingestFile(ctx context.Context, t tenant.ID, path string, hashes map[string]string, res *FilesResult) error {
	// A path given by name is read only if it is a regular file of a size that can be a document:
	// reading /dev/zero, or a FIFO no one writes to, would never end.
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%s)", info.Mode().Type())
	}
	if s.MaxTextChars > 0 && info.Size() > 4*int64(s.MaxTextChars) { // UTF-8: at most 4 bytes a character
		return fmt.Errorf("the file is %d bytes; a document holds at most %d characters", info.Size(), s.MaxTextChars)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !utf8.Valid(b) {
		return errors.New("not UTF-8 text")
	}
	text := string(b)
	id := FileDocID(path)
	if h, ok := hashes[id]; ok && h == ContentHash(text) {
		res.Skipped++
		return nil
	}
	_, err = s.Ingest(ctx, Ingest{Tenant: t, DocID: id, Text: text, Title: fileTitle(path, text), Source: "file",
		Metadata: map[string]any{"path": filepath.ToSlash(path)}})
	if err != nil {
		return err
	}
	res.Ingested++
	return nil
}

// fileTitle is the first Markdown heading, else the file name.
func fileTitle(path, text string) string {
	for _, line := range strings.SplitN(text, "\n", 30) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "# ") {
			return strings.TrimSpace(line[2:])
		}
	}
	return filepath.Base(path)
}
