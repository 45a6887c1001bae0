package main

import (
	"fmt"
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows how far a long command has come: a live bar on a terminal, and plain lines
// otherwise (a log file or a pipe should not fill with control characters).
type progress struct {
	w     io.Writer
	label string
	bar   *progressbar.ProgressBar
	last  int
	plain bool
}

// newProgress reports to w. quiet suppresses plain lines (the command's own output already goes
// elsewhere and only the bar is useful).
func newProgress(w io.Writer, label string, showPlain bool) *progress {
	p := &progress{w: w, label: label, plain: showPlain}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions(-1, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(label),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("events"),
			progressbar.OptionThrottle(100_000_000), progressbar.OptionClearOnFinish())
	}
	return p
}

// set records that n items are done (a monotonic count).
func (p *progress) set(n int) {
	if n <= p.last {
		return
	}
	if p.bar != nil {
		_ = p.bar.Add(n - p.last)
	} else if p.plain {
		fmt.Fprintf(p.w, "%s: %d\n", p.label, n)
	}
	p.last = n
}

func (p *progress) done() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

// fileProgress reports work over a total known once the first item is done (ingest: files;
// reindex: documents): a bar on a terminal, a line per item otherwise.
func fileProgress(w io.Writer, label string) func(done, total int, item string) {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		var bar *progressbar.ProgressBar
		return func(done, total int, item string) {
			if bar == nil {
				bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(label),
					progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
			}
			bar.Describe(label + " " + item)
			_ = bar.Set(done)
			if done >= total {
				_ = bar.Finish()
			}
		}
	}
	return func(done, total int, item string) {
		fmt.Fprintf(w, "%s [%d/%d] %s\n", label, done, total, item)
	}
}
