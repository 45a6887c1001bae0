package eventstoretest_test

import (
	"testing"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
)

func TestMemory(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store { return eventstoretest.NewMemory() })
}
