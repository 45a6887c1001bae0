// Package request carries who and what a unit of work is on behalf of: the request id that ties logs,
// events and responses together, the authenticated credential that acts, and the user the client
// says it acts for. Events pick these up when they are appended.
package request

import "context"

// Info is the request-scoped identity.
//
// Actor and User are kept apart because only one of them is verified: Actor is what the server
// authenticated (an API key's id, or the tenant when it has no keys), User is whatever the client
// wrote in x-user-id. An audit that merged them would let any caller write "alice" into the actor.
type Info struct {
	ID string // x-request-id, generated when the client sent none
	// Actor is the authenticated credential's id: "key:<id>" for an API key, "anonymous:<tenant>"
	// for a tenant without keys, "system:<component>" for the server's own work. Never a secret.
	Actor string
	// User is the user id the client asserted (x-user-id), unverified; "" when none was sent.
	User string
	// Auditor: the credential holds the audit scope, so it may read every user's sessions of its
	// tenant (reading only: acting on another user's session stays refused).
	Auditor bool
}

type ctxKey struct{}

// With returns ctx carrying info.
func With(ctx context.Context, info Info) context.Context {
	return context.WithValue(ctx, ctxKey{}, info)
}

// From returns the Info carried by ctx (zero when there is none).
func From(ctx context.Context) Info {
	info, _ := ctx.Value(ctxKey{}).(Info)
	return info
}
