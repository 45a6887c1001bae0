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
	// Keys are the data keys of its ingests since its last deletion: what deleting it destroys.
	Keys []string
}

// Apply folds one event into the document.
func (d *Document) Apply(e any) {
	switch ev := e.(type) {
	case events.DocumentIngested:
		d.DocID, d.Exists, d.Ingested = ev.DocID, true, ev
		if ev.Key != "" {
			d.Keys = append(d.Keys, ev.Key)
		}
	case events.DocumentDeleted:
		d.DocID, d.Exists, d.Ingested, d.Keys = ev.DocID, false, events.DocumentIngested{}, nil
	}
}

// Erased folds an ingest whose content was erased (its key destroyed: the document was deleted,
// or its tenant): the document does not exist from it on, whatever came before.
func (d *Document) Erased() {
	d.Exists, d.Ingested = false, events.DocumentIngested{}
}

// ErrNoModel is what a Completer returns when only the offline model is configured.
var ErrNoModel = errors.New("no chat model configured (offline)")
