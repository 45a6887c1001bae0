package domain

import "time"

// AuditedSession is a session as the audit sees it (GET /audit/sessions/{id}).
type AuditedSession struct {
	SessionID string           `json:"sessionId"`
	AsOf      time.Time        `json:"asOf"`
	Exists    bool             `json:"exists" doc:"false when the session had no events at asOf"`
	Deleted   bool             `json:"deleted" doc:"true when the session was deleted or expired at or before asOf; its content is erased by design"`
	DeletedAt *time.Time       `json:"deletedAt,omitempty"`
	Title     string           `json:"title,omitempty"`
	Messages  []AuditedMessage `json:"messages"`
	Events    int              `json:"events" doc:"events folded"`
}

// AuditedMessage is one message of an audited session.
type AuditedMessage struct {
	Role      string    `json:"role" enum:"user,assistant"`
	Content   string    `json:"content"`
	Timestamp time.Time `json:"timestamp"`
	Status    string    `json:"status,omitempty" doc:"completed, failed or cancelled for assistant turns"`
	Actor     string    `json:"actor,omitempty" doc:"The credential that recorded the message (see the audit events' actor)"`
	User      string    `json:"user,omitempty" doc:"The user id the client asserted when the message was recorded, unverified"`
}
