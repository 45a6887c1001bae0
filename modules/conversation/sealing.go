package conversation

import (
	"github.com/crispy-enigma/crispy/modules/conversation/internal/app"
	"github.com/crispy-enigma/crispy/platform/sealing"
)

// SealPolicy is the conversation module's part of the store's sealing (platform/sealing): a
// session's events and its snapshot segments are sealed under the session's data key, so deleting
// the session (or its expiry, or the tenant's deletion) erases them by destroying that key. The
// records of the deletion itself (SessionDeleted, SessionExpired, SessionSnapshotsDropped) stay
// readable, so the audit shows who erased what and when. The key id given here is the first life's
// ("session/<id>"); the module passes a later life's key with sealing.WithKey.
func SealPolicy() sealing.Policy { return app.SealPolicy() }

// PlainFields are the fields of the sealed events that stay readable (sealing.Store.KeepPlain):
// ids, models, counts, token usage and timings, which the token ledger, usage and cost projections
// and the audit need after the content is erased. Content, titles, citations, error messages and
// fallback messages are sealed.
func PlainFields() map[string][]string { return app.PlainFields() }
