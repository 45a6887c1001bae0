package observability_test

import (
	"net/url"
	"strings"
	"testing"

	convevents "github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/observability"
)

// GET /audit/sessions/{sessionId} takes a session id in its one spelling, as the chat endpoints do:
// every other spelling of the same UUID is refused with 422 naming path.sessionId, instead of being
// read as another (absent) session.
func TestAuditSessionIDIsCanonical(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{deps: func(d *observability.Deps) { d.Sessions = observability.NewSessionAuditor(d.Store) }})
	sid := "0b0f6a2e-0c4b-4a57-9a65-3f5f0f3a1d2e"
	e.append(acme, "session", sid, convevents.TypeSessionStarted, convevents.SessionStarted{SessionID: sid, Tenant: "acme", Title: "hello"})
	if r := e.audit("/audit/sessions/"+sid, "acme"); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	for _, s := range []string{strings.ToUpper(sid), "{" + sid + "}", "urn:uuid:" + sid, strings.ReplaceAll(sid, "-", ""), " " + sid + " "} {
		r := e.audit("/audit/sessions/"+url.PathEscape(s), "acme")
		if r.status != 422 || !strings.Contains(r.raw, `"location":"path.sessionId"`) || !strings.Contains(r.raw, "requestId") {
			t.Errorf("%q: %d %s, want 422 naming path.sessionId", s, r.status, r.raw)
		}
	}
}
