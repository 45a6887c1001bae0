package audit

import "github.com/crispy-enigma/crispy/platform/eventstore"

// hasher is eventstore.FastHasher (the audit log's verification shares it).
type hasher struct{ *eventstore.FastHasher }

func newHasher() *hasher { return &hasher{eventstore.NewFastHasher()} }

// check returns e's recomputed hash (see eventstore.FastHasher.Check).
func (x *hasher) check(e *eventstore.Event) (string, error) { return x.Check(e) }
