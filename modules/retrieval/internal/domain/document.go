package domain

import (
	"errors"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
)

// Document is the fold of one document's stream.
type Document struct {
	DocID    string
	Exists   bool // ingested and not deleted since
	Ingested events.DocumentIngested
	Revision uint64 // of its stream's last event
	Position uint64 // in the log, of its stream's last event
}

// Apply folds one event into the document.
func (d *Document) Apply(e any) {
	switch ev := e.(type) {
	case events.DocumentIngested:
		d.DocID, d.Exists, d.Ingested = ev.DocID, true, ev
	case events.DocumentDeleted:
		d.DocID, d.Exists, d.Ingested = ev.DocID, false, events.DocumentIngested{}
	}
}

// ErrNoModel is what a Completer returns when only the offline model is configured.
var ErrNoModel = errors.New("no chat model configured (offline)")
