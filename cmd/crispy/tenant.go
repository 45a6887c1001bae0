package main

import (
	"context"
	"fmt"

	"github.com/crispy-enigma/crispy/modules/tenancy"
)

func cmdTenant(_ context.Context, args []string, io stdio, env lookupEnv) error {
	f := newFlags("tenant key new", env, io.err)
	var id string
	f.fs.StringVar(&id, "tenant", "", "the tenant the key is for")
	if err := f.parse(args); err != nil {
		return err
	}
	if f.fs.NArg() != 2 || f.fs.Arg(0) != "key" || f.fs.Arg(1) != "new" {
		return usageError("usage: crispy tenant key new --tenant T (got %q)", f.fs.Args())
	}
	t, err := tenantFlag(id)
	if err != nil {
		return err
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
