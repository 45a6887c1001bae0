package retrieval

import (
	"encoding/json"
	"strings"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// SealingPolicy is retrieval's sealing.Policy (issue 12 §4): a document's ingest event is sealed
// under the data key it names (events.DocumentIngested.Key, one per ingest), which deleting the
// document destroys. Deletions are not sealed (the audit shows what was erased, and when), nor are
// the index's and the search statistics' events (no document text). An ingest without a key (the
// module runs without a Sealer) or naming a key of another document is stored as it is: a policy
// never seals under a key the document's deletion would not destroy.
func SealingPolicy(stream tenant.Stream, e eventstore.EventData) (string, bool) {
	if stream.Category() != events.DocCategory || e.Type != events.TypeDocumentIngested {
		return "", false
	}
	var k struct {
		Key string `json:"key"`
	}
	if json.Unmarshal(e.Data, &k) != nil || !strings.HasPrefix(k.Key, "document/"+stream.Entity()+"/") {
		return "", false
	}
	return k.Key, true
}
