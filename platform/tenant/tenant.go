// Package tenant holds the tenant identifier, the context that carries it, and the stream names built
// from it. A stream name can only be built from an ID, so tenant data cannot be addressed without one.
package tenant

import (
	"context"
	"fmt"
	"regexp"
	"strings"
)

// ID identifies a tenant: ^[a-z0-9][a-z0-9-]{0,62}$. The zero value is not a valid tenant.
type ID struct{ s string }

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Parse validates s as a tenant id.
func Parse(s string) (ID, error) {
	if !validID(s) {
		return ID{}, fmt.Errorf("tenant id %q must match %s", s, idPattern.String())
	}
	return ID{s: s}, nil
}

// validID is idPattern.MatchString(s), by hand: every event a read model applies has its stream
// name parsed (ParseStream), and the regexp was the most of what that cost.
func validID(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// Deployment is the reserved tenant whose streams hold records about the deployment itself (the
// audit signing key in use, the key store's id), since every stream of the store belongs to a tenant.
// No tenants file may declare it: its records would show in that tenant's audit log.
var Deployment = ID{s: "crispy-deployment"}

// Reserved reports whether id is kept for the platform's own records.
func (id ID) Reserved() bool { return id == Deployment }

// MustParse is for constants in tests and wiring; it panics on an invalid id.
func MustParse(s string) ID {
	id, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return id
}

func (id ID) String() string { return id.s }

// IsZero reports whether id is the zero value (no tenant).
func (id ID) IsZero() bool { return id.s == "" }

// MarshalText lets an ID appear in JSON and YAML as its plain string.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.s), nil }

// UnmarshalText validates while decoding.
func (id *ID) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// StreamPrefix is the prefix every stream of this tenant starts with ("t-acme."). Reading all of a
// tenant's events means reading streams with this prefix.
func (id ID) StreamPrefix() string { return "t-" + id.s + "." }

type ctxKey struct{}

// WithID returns a context that carries the resolved tenant.
func WithID(ctx context.Context, id ID) context.Context { return context.WithValue(ctx, ctxKey{}, id) }

// FromContext returns the tenant resolved for this request, if any.
func FromContext(ctx context.Context) (ID, bool) {
	id, ok := ctx.Value(ctxKey{}).(ID)
	return id, ok && !id.IsZero()
}

// Stream is a tenant-scoped stream name: t-{tenant}.{category}[-{id}].
type Stream struct {
	tenant   ID
	category string
	entity   string
}

var categoryPattern = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// NewStream builds t-{tenant}.{category}-{entity}; an empty entity gives t-{tenant}.{category}.
// The category is lower-case words joined by '-' ("session", "tool-audit"); the entity may be any
// non-empty string without '/' or whitespace.
func NewStream(t ID, category, entity string) (Stream, error) {
	if t.IsZero() {
		return Stream{}, fmt.Errorf("stream %s-%s: missing tenant", category, entity)
	}
	if !categoryPattern.MatchString(category) {
		return Stream{}, fmt.Errorf("stream category %q is not lower-case words joined by '-'", category)
	}
	if len(entity) > 512 || strings.ContainsAny(entity, "/ \t\r\n") {
		return Stream{}, fmt.Errorf("stream entity %q is invalid", entity)
	}
	return Stream{tenant: t, category: category, entity: entity}, nil
}

// MustStream is NewStream for names known valid at compile time (for example t.tenant); it panics
// otherwise.
func MustStream(t ID, category, entity string) Stream {
	s, err := NewStream(t, category, entity)
	if err != nil {
		panic(err)
	}
	return s
}

// ParseStream reverses Stream.String. Because categories may contain '-', the split between category
// and entity is at the first '-' after a known category; callers that know the category should use
// NewStream instead. ParseStream treats the first '-' in the part after the tenant as the separator
// unless the whole remainder is a valid category with no entity.
func ParseStream(name string) (Stream, error) {
	if !strings.HasPrefix(name, "t-") {
		return Stream{}, fmt.Errorf("stream %q does not start with t-", name)
	}
	rest := name[2:]
	dot := strings.IndexByte(rest, '.')
	if dot < 0 {
		return Stream{}, fmt.Errorf("stream %q has no '.' after the tenant", name)
	}
	t, err := Parse(rest[:dot])
	if err != nil {
		return Stream{}, fmt.Errorf("stream %q: %w", name, err)
	}
	tail := rest[dot+1:]
	return Stream{tenant: t, category: categoryOf(tail), entity: entityOf(tail)}, nil
}

// knownMultiword lists categories that contain '-', so ParseStream splits them correctly.
var knownMultiword = []string{"tool-audit", "audit-log", "alert-rule"}

func categoryOf(tail string) string {
	for _, c := range knownMultiword {
		// tail is c, or c then '-' (without building c+"-": this runs for every event a read
		// model parses the stream of).
		if strings.HasPrefix(tail, c) && (len(tail) == len(c) || tail[len(c)] == '-') {
			return c
		}
	}
	if i := strings.IndexByte(tail, '-'); i >= 0 {
		return tail[:i]
	}
	return tail
}

func entityOf(tail string) string {
	c := categoryOf(tail)
	if len(tail) > len(c) {
		return tail[len(c)+1:]
	}
	return ""
}

func (s Stream) Tenant() ID       { return s.tenant }
func (s Stream) Category() string { return s.category }
func (s Stream) Entity() string   { return s.entity }
func (s Stream) IsZero() bool     { return s.tenant.IsZero() }
func (s Stream) String() string {
	if s.entity == "" {
		return s.tenant.StreamPrefix() + s.category
	}
	return s.tenant.StreamPrefix() + s.category + "-" + s.entity
}
