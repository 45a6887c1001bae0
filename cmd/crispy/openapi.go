package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
)

func cmdOpenAPI(ctx context.Context, args []string, io stdio, env lookupEnv) error {
	f := newFlags("openapi", env, io.err)
	asJSON := f.fs.Bool("json", false, "print JSON instead of YAML")
	v30 := f.fs.Bool("3.0", false, "print the OpenAPI 3.0 rendering (for client generators that read only 3.0)")
	if err := f.parse(args); err != nil {
		return err
	}
	if f.fs.NArg() > 0 {
		return usageError("openapi takes no arguments, got %q", f.fs.Args())
	}
	format := specYAML
	switch {
	case *v30:
		format = specYAML30
	case *asJSON:
		format = specJSON
	}
	b, err := spec(ctx, format)
	if err != nil {
		return err
	}
	_, err = io.out.Write(b)
	return err
}

// spec builds the whole API, as serve does but on a throwaway data folder with nothing started, and
// returns its OpenAPI document. openapi/openapi.yaml is this output; a test fails when they differ.
func spec(ctx context.Context, format specFormat) ([]byte, error) {
	dir, err := os.MkdirTemp("", "crispy-openapi-")
	if err != nil {
		return nil, fmt.Errorf("the spec is built on a throwaway data folder, which cannot be made: %w; set TMPDIR to a writable folder", err)
	}
	defer os.RemoveAll(dir)
	cfg := config{DataDir: dir, EventStore: "embedded", Search: "embedded", Bus: "gochannel", PluginsDir: dir, LogLevel: "error"}
	a, err := build(ctx, cfg, slog.New(slog.DiscardHandler), buildOptions{specOnly: true})
	if err != nil {
		return nil, fmt.Errorf("build the API: %w", err)
	}
	defer a.close()
	oapi := a.server.API.OpenAPI()
	switch format {
	case specJSON:
		b, err := json.MarshalIndent(oapi, "", "  ")
		if err != nil {
			return nil, err
		}
		return append(b, '\n'), nil
	case specYAML30:
		return oapi.DowngradeYAML()
	}
	return oapi.YAML()
}

type specFormat int

const (
	specYAML specFormat = iota
	specJSON
	specYAML30
)
