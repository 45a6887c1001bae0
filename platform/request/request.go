// Package request carries who and what a unit of work is on behalf of: the request id that ties logs,
// events and responses together, and the acting user. Events pick these up when they are appended.
package request

import "context"

// Info is the request-scoped identity.
type Info struct {
	ID    string // x-request-id, generated when the client sent none
	Actor string // user id (x-user-id) or "system:<component>"; never a secret
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
