package domain

import "time"

// AuditedSession is a session as the audit sees it (GET /audit/sessions/{id}).
type AuditedSession struct {
	SessionID string     `json:"sessionId"`
	AsOf      time.Time  `json:"asOf"`
	Exists    bool       `json:"exists" doc:"false when the session had no events at asOf"`
	Deleted   bool       `json:"deleted" doc:"true when the session was deleted or expired at or before asOf; its content is erased by design"`
	DeletedAt *time.Time `json:"deletedAt,omitempty"`
	// DeletedBy and DeletedByUser name who ended the session (the credential, and the user id the
	// client asserted); Reason is "deleted" or "expired".
	DeletedBy     string           `json:"deletedBy,omitempty" doc:"The credential that deleted the session (system:... for retention)"`
	DeletedByUser string           `json:"deletedByUser,omitempty" doc:"The user id the client asserted when deleting, unverified"`
	Reason        string           `json:"reason,omitempty" enum:"deleted,expired" doc:"Why the session ended, when deleted is true"`
	Title         string           `json:"title,omitempty"`
	Messages      []AuditedMessage `json:"messages"`
	Events        int              `json:"events" doc:"events folded"`
	// ContentErased: the messages shown existed at asOf but their content was erased since (the
	// session was deleted later): their shape (roles, times, who) is shown, never their content.
	ContentErased bool `json:"contentErased" doc:"true when the content of the messages shown has been erased since asOf (their roles, times and authors remain)"`
	// Erasures are the session's lives ended (deleted or expired) up to asOf, each with what its
	// erased content was: counts and times, never the content.
	Erasures []Erasure `json:"erasures" doc:"Each deletion or expiry up to asOf and the content it erased (counts, times, who)"`
}

// Erasure is one end of a session's life and the content it erased.
type Erasure struct {
	Reason            string     `json:"reason" enum:"deleted,expired"`
	At                time.Time  `json:"at" doc:"When the deletion or expiry was recorded"`
	By                string     `json:"by,omitempty" doc:"The credential that recorded it"`
	ByUser            string     `json:"byUser,omitempty" doc:"The user id the client asserted, unverified"`
	Messages          int        `json:"messages" doc:"Messages erased"`
	UserMessages      int        `json:"userMessages"`
	AssistantMessages int        `json:"assistantMessages"`
	FailedTurns       int        `json:"failedTurns"`
	FirstMessageAt    *time.Time `json:"firstMessageAt,omitempty"`
	LastMessageAt     *time.Time `json:"lastMessageAt,omitempty"`
}

// AuditedMessage is one message of an audited session.
type AuditedMessage struct {
	Role      string    `json:"role" enum:"user,assistant"`
	Content   string    `json:"content"`
	Timestamp time.Time `json:"timestamp"`
	Status    string    `json:"status,omitempty" doc:"completed, failed or cancelled for assistant turns"`
	Actor     string    `json:"actor,omitempty" doc:"The credential that recorded the message (see the audit events' actor)"`
	User      string    `json:"user,omitempty" doc:"The user id the client asserted when the message was recorded, unverified"`
	Erased    bool      `json:"erased,omitempty" doc:"The content was erased (the session was deleted or expired): content is empty"`
}
