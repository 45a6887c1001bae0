package bus

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// Metadata keys of a bus message. The payload is the whole event envelope; the metadata repeats
// what a broker-side filter or a human reading the broker needs without decoding it.
const (
	MetaType     = "type"
	MetaTenant   = "tenant"
	MetaStream   = "stream"
	MetaPosition = "position"
)

// toMessage turns a recorded event into a Watermill message whose UUID is the event id.
func toMessage(e eventstore.Event) (*message.Message, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode event %s at %d: %w", e.ID, e.Position, err)
	}
	m := message.NewMessage(e.ID, b)
	m.Metadata.Set(MetaType, e.Type)
	m.Metadata.Set(MetaTenant, e.Tenant.String())
	m.Metadata.Set(MetaStream, e.Stream)
	m.Metadata.Set(MetaPosition, strconv.FormatUint(uint64(e.Position), 10))
	return m, nil
}

// fromMessage decodes the envelope and checks it against the message's id and metadata, so a
// message that was altered or mislabelled on the way is refused rather than handed to a module
// under the wrong tenant.
func fromMessage(m *message.Message) (eventstore.Event, error) {
	var e eventstore.Event
	if err := json.Unmarshal(m.Payload, &e); err != nil {
		return e, fmt.Errorf("decode bus message %s: %w", m.UUID, err)
	}
	if e.ID != m.UUID {
		return e, fmt.Errorf("bus message %s carries event %s", m.UUID, e.ID)
	}
	if t := m.Metadata.Get(MetaTenant); t != e.Tenant.String() {
		return e, fmt.Errorf("bus message %s: tenant metadata %q, event tenant %q", m.UUID, t, e.Tenant)
	}
	if e.Tenant.IsZero() {
		return e, fmt.Errorf("bus message %s: event without tenant", m.UUID)
	}
	if st, err := e.StreamName(); err != nil || st.Tenant() != e.Tenant {
		return e, fmt.Errorf("bus message %s: stream %q is not tenant %q's", m.UUID, e.Stream, e.Tenant)
	}
	return e, nil
}
