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
	Deleted  int // documents of files that are gone (Prune)
	Failed   map[string]error
}

// FilesOptions tune a file ingestion.
type FilesOptions struct {
	// Prune deletes the tenant's documents ingested from files (source "file") whose ids no file
	// given has any more: a folder synced again loses what was removed from it.
	Prune bool
}

// IsIngestible reports whether a path is a text or Markdown file.
func IsIngestible(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".txt", ".md", ".markdown":
		return true
	}
	return false
}

// FileDocID derives a document id from a file found under root (the folder given on the command
// line; for a file given by name, its own folder): its path relative to root with '/' separators.
// Never relative to the working directory: the same folder synced from anywhere gives the same ids.
func FileDocID(root, path string) string {
	rel, err := filepath.Rel(root, path)
	if err != nil || strings.HasPrefix(rel, "..") {
		rel = filepath.Base(path)
	}
	return strings.TrimPrefix(filepath.ToSlash(filepath.Clean(rel)), "./")
}

// hidden reports a dot-file or dot-folder (.git, .DS_Store, an editor's swap file).
func hidden(name string) bool { return strings.HasPrefix(name, ".") && name != "." && name != ".." }

// found is a file to ingest and its document id.
type found struct{ path, id string }

// IngestPaths ingests .txt and .md files, walking folders. It is resumable: a file whose content hash
// matches its document's last ingest is skipped. progress is called after every file.
func (s *Service) IngestPaths(ctx context.Context, t tenant.ID, paths []string, opts FilesOptions, progress func(done, total int, path string)) (FilesResult, error) {
	var files []found
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return FilesResult{}, fmt.Errorf("ingest %s: %w", p, err)
		}
		if !info.IsDir() {
			files = append(files, found{p, FileDocID(filepath.Dir(p), p)})
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path != p && hidden(d.Name()) {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			// Only regular files: a FIFO named notes.txt would block the walk forever, a device
			// would never end.
			if d.Type().IsRegular() && IsIngestible(path) {
				files = append(files, found{path, FileDocID(p, path)})
			}
			return nil
		})
		if err != nil {
			return FilesResult{}, fmt.Errorf("walk %s: %w", p, err)
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].id < files[j].id })
	// crispy ingest runs without the bus: it writes the index itself (Consumed unset). It does not
	// move the tenant's index checkpoint, so the server's next start applies these events again
	// (idempotent: the same documents, embedded again).
	docs, err := s.fileDocs(ctx, t)
	if err != nil {
		return FilesResult{}, err
	}
	var gone []string
	if opts.Prune {
		have := map[string]bool{}
		for _, f := range files {
			have[f.id] = true
		}
		for id, d := range docs {
			if d.source == "file" && !have[id] {
				gone = append(gone, id)
			}
		}
		sort.Strings(gone)
	}
	res := FilesResult{Failed: map[string]error{}}
	total := len(files) + len(gone)
	for i, f := range files {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		err := s.ingestFile(ctx, t, f, docs, &res)
		if err != nil {
			res.Failed[f.path] = err
		}
		if progress != nil {
			progress(i+1, total, f.path)
		}
	}
	for i, id := range gone {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := s.Delete(ctx, t, id); err != nil {
			res.Failed[id] = fmt.Errorf("delete (its file is gone): %w", err)
		} else {
			res.Deleted++
		}
		if progress != nil {
			progress(len(files)+i+1, total, "deleted "+id)
		}
	}
	return res, nil
}

// fileDoc is what a file ingestion needs of a live document.
type fileDoc struct{ hash, source string }

// fileDocs returns each of t's live documents' content hash and source, by docId: what the
// resumable ingest compares files with, and what --prune deletes from.
func (s *Service) fileDocs(ctx context.Context, t tenant.ID) (map[string]fileDoc, error) {
	prefix := t.StreamPrefix() + events.DocCategory + "-"
	docs := map[string]fileDoc{}
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
			docs[d.DocID] = fileDoc{d.Ingested.ContentHash, d.Ingested.Source}
		case d.DocID != "": // deleted
			delete(docs, d.DocID)
		}
		return nil
	})
	return docs, err
}

func (s *Service) ingestFile(ctx context.Context, t tenant.ID, f found, docs map[string]fileDoc, res *FilesResult) error {
	path := f.path
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
	id := f.id
	if d, ok := docs[id]; ok && d.hash == ContentHash(text) {
		res.Skipped++
		return nil
	}
	_, err = s.Ingest(ctx, Ingest{Tenant: t, DocID: id, Text: text, Title: fileTitle(path, text), Source: "file",
		Metadata: map[string]any{"path": id}})
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
