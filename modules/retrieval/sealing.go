package retrieval

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// SealingPolicy is retrieval's sealing.Policy (issue 12 §4): a document's ingest event is sealed
// under the data key it names (events.DocumentIngested.Key, one per ingest), which deleting the
// document destroys. Deletions are not sealed (the audit shows what was erased, and when), nor are
// the index's and the search statistics' events (no document text).
//
// It fails closed: where this policy is installed the log is sealed, so an ingest that names no key
// (a writer without a Sealer) or a key of another document is refused rather than stored in plain
// text, which no deletion could erase afterwards. A policy cannot return an error, so it answers
// the empty key id, which the key store rejects (keystore.ErrInvalid): the sealing decorator then
// fails the append and stores nothing.
func SealingPolicy(stream tenant.Stream, e eventstore.EventData) (string, bool) {
	if stream.Category() != events.DocCategory || e.Type != events.TypeDocumentIngested {
		return "", false
	}
	k, ok := lastKey(e.Data)
	if !ok {
		var v struct {
			Key string `json:"key"`
		}
		if json.Unmarshal(e.Data, &v) != nil {
			return refuseUnsealed, true
		}
		k = v.Key
	}
	if !strings.HasPrefix(k, "document/"+stream.Entity()+"/") {
		return refuseUnsealed, true
	}
	return k, true
}

// refuseUnsealed is the key id SealingPolicy answers for a document ingest it cannot seal under
// the document's own key: empty, so no key store accepts it and the append fails.
const refuseUnsealed = ""

// keyTail is how the key, DocumentIngested's last field, starts in its JSON.
var keyTail = []byte(`,"key":"`)

// lastKey reads the key from the end of a DocumentIngested's JSON without decoding the document
// (decoding a 500 KB text just to find it cost ~10 ms an ingest, more than sealing it): the key is
// the struct's last field, so the JSON ends `,"key":"…"}`. A ',"key":"' can only be a member name
// (in a string value its quotes are escaped), and only a top-level last member is followed by
// exactly `"}`. Anything else (no key, another layout) says false: the caller decodes instead.
func lastKey(data []byte) (string, bool) {
	d := bytes.TrimRight(data, " \t\r\n")
	if !bytes.HasSuffix(d, []byte(`"}`)) {
		return "", false
	}
	i := bytes.LastIndex(d, keyTail)
	if i < 0 {
		return "", false
	}
	v := d[i+len(keyTail) : len(d)-2]
	if bytes.ContainsAny(v, "\"\\") {
		return "", false
	}
	return string(v), true
}
