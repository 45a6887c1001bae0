package keystoretest_test

import (
	"testing"

	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/keystore/keystoretest"
)

func TestMemory(t *testing.T) {
	keystoretest.Run(t, func(*testing.T) keystore.Store { return keystoretest.NewMemory() })
}
