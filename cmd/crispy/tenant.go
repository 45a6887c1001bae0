package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy"
)

func cmdTenant(ctx context.Context, args []string, io stdio, env lookupEnv) error {
	if len(args) > 0 && args[0] == "apply" {
		return cmdTenantApply(ctx, args[1:], io, env)
	}
	f := newFlags("tenant key new", env, io.err)
	var id string
	f.fs.StringVar(&id, "tenant", "", "the tenant the key is for")
	if err := f.parse(args); err != nil {
		return err
	}
	if f.fs.NArg() != 2 || f.fs.Arg(0) != "key" || f.fs.Arg(1) != "new" {
		return usageError("usage: crispy tenant key new --tenant T, or crispy tenant apply FILE --server URL --admin-key KEY (got %q)", f.fs.Args())
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
	fmt.Fprintf(io.out, "Add the hash to the tenant's apiKeys in the tenants file and send the server SIGHUP (or crispy tenant apply):\n\n")
	fmt.Fprintf(io.out, "  - id: %s\n    apiKeys:\n      - %q\n", t, hash)
	return nil
}

// cmdTenantApply sends a tenants file to a running server's admin API, which records its
// differences as a start or SIGHUP does with the server's own file.
func cmdTenantApply(ctx context.Context, args []string, io stdio, env lookupEnv) error {
	f := newFlags("tenant apply", env, io.err)
	var server, adminKey string
	f.str(&server, "server", "http://127.0.0.1:8080", "the running server's base URL")
	f.str(&adminKey, "admin-key", "", "an admin key (its hash is in the server's CRISPY_ADMIN_KEY_SHA256)")
	// The file may come before the flags (crispy tenant apply FILE --server …).
	var file string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		file, args = args[0], args[1:]
	}
	if err := f.parse(args); err != nil {
		return err
	}
	if file == "" && f.fs.NArg() == 1 {
		file = f.fs.Arg(0)
	} else if f.fs.NArg() > 0 || file == "" {
		return usageError("usage: crispy tenant apply FILE --server URL --admin-key KEY (got %q)", append([]string{file}, f.fs.Args()...))
	}
	if adminKey == "" {
		return usageError("--admin-key (or CRISPY_ADMIN_KEY) is required: make one with crispy admin key new")
	}
	// Refuse a file with mistakes here, with the file's own line numbers.
	if err := tenancy.ValidateTenantsFile(file); err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	body, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("tenants file: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, strings.TrimSuffix(server, "/")+"/admin/apply", bytes.NewReader(body))
	if err != nil {
		return usageError("--server %q: %v", server, err)
	}
	req.Header.Set("Content-Type", "application/yaml")
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("apply to %s: %w (is the server running there? --server)", server, err)
	}
	defer resp.Body.Close()
	out, _ := readCapped(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var p struct {
			Code   string `json:"code"`
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(out, &p)
		return fmt.Errorf("apply to %s: %d %s: %s", server, resp.StatusCode, p.Code, p.Detail)
	}
	fmt.Fprintf(io.out, "%s\n", bytes.TrimSpace(out))
	return nil
}

func readCapped(r io.Reader) ([]byte, error) { return io.ReadAll(io.LimitReader(r, 1<<20)) }
