package main

import (
	"context"
	"fmt"

	"github.com/crispy-enigma/crispy/modules/tenancy"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func cmdTenant(_ context.Context, args []string, io stdio, env lookupEnv) error {
	if len(args) < 2 || args[0] != "key" || args[1] != "new" {
		return exitError{code: 2, msg: "usage: crispy tenant key new --tenant T"}
	}
	f := newFlags("tenant key new", env, io.err)
	var id string
	f.fs.StringVar(&id, "tenant", "", "the tenant the key is for")
	if err := f.parse(args[2:]); err != nil {
		return err
	}
	t, err := tenant.Parse(id)
	if err != nil {
		return exitError{code: 2, msg: fmt.Sprintf("--tenant: %v", err)}
	}
	key, hash, err := tenancy.NewAPIKey()
	if err != nil {
		return err
	}
	fmt.Fprintf(io.out, "API key for tenant %s (shown once; store it now, only its hash is kept):\n\n  %s\n\n", t, key)
	fmt.Fprintf(io.out, "Add the hash to the tenant's apiKeys in the tenants file and restart the server:\n\n")
	fmt.Fprintf(io.out, "  - id: %s\n    apiKeys:\n      - %q\n", t, hash)
	return nil
}
