package main

import (
	"context"
	"fmt"

	"github.com/crispy-enigma/crispy/modules/tenancy"
)

func cmdAdmin(_ context.Context, args []string, io stdio, env lookupEnv) error {
	f := newFlags("admin key new", env, io.err)
	if err := f.parse(args); err != nil {
		return err
	}
	if f.fs.NArg() != 2 || f.fs.Arg(0) != "key" || f.fs.Arg(1) != "new" {
		return usageError("usage: crispy admin key new (got %q)", f.fs.Args())
	}
	key, hash, err := tenancy.NewAdminKey()
	if err != nil {
		return err
	}
	fmt.Fprintf(io.out, "Admin key (shown once; store it now, only its hash is kept):\n\n  %s\n\n", key)
	fmt.Fprintf(io.out, "Give the server its SHA-256 (several: comma-separated) and restart it:\n\n  CRISPY_ADMIN_KEY_SHA256=%s\n", hash)
	return nil
}
