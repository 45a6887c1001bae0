package postgres

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		cfg  Config
		want string // "" when valid
	}{
		{Config{URL: "postgres://crispy@db:5432/crispy?sslmode=disable"}, ""},
		{Config{URL: "postgresql://crispy:secret@db/crispy"}, ""},
		{Config{URL: "postgres://db/crispy?schema=tenant_a"}, ""},
		{Config{URL: "postgres://db/crispy?schema=tenant_a", Schema: "tenant_a"}, ""},
		{Config{URL: "postgres://db/crispy?synchronous_commit=remote_apply"}, ""},
		{Config{}, "empty"},
		{Config{URL: "mysql://crispy:secret@db/crispy"}, "must start with"},
		{Config{URL: "postgres://db/crispy?schema=Bad-Name"}, "schema"},
		{Config{URL: "postgres://db/crispy?schema=a", Schema: "b"}, "name one"},
		{Config{URL: "postgres://crispy:secret@db/crispy?synchronous_commit=off"}, "durable"},
		{Config{URL: "postgres://db/crispy", MaxBatch: -1}, "negative"},
		{Config{URL: "postgres://crispy:secret@db/crispy?pool_max_conns=lots"}, "pool_max_conns"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v, want valid", c.cfg, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want an error about %q", c.cfg, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
}

func TestConfigDefaultsAndSessionSettings(t *testing.T) {
	t.Parallel()
	rc, err := Config{URL: "postgres://u@db/x?schema=s1&sslmode=disable"}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if rc.Schema != "s1" || rc.MaxBatch != 256 || rc.PollInterval != time.Second || rc.PageSize != 512 || rc.WriteTimeout != 10*time.Second {
		t.Errorf("defaults = %+v", rc.Config)
	}
	rp := rc.pool.ConnConfig.RuntimeParams
	if _, ok := rp["schema"]; ok {
		t.Errorf("the store's own schema parameter is sent to the server: %v", rp)
	}
	if rp["synchronous_commit"] != "on" {
		t.Errorf("synchronous_commit = %q, want on: an acknowledged append must be flushed", rp["synchronous_commit"])
	}
	if rc.pool.ConnConfig.ConnectTimeout == 0 {
		t.Error("no connect timeout: a server that swallows packets would hold Open")
	}
	rc, _ = Config{URL: "postgres://u@db/x?synchronous_commit=remote_apply"}.resolve()
	if rc.pool.ConnConfig.RuntimeParams["synchronous_commit"] != "remote_apply" || rc.Schema != DefaultSchema {
		t.Errorf("a stronger synchronous_commit was overridden or the schema is not the default: %+v", rc.pool.ConnConfig.RuntimeParams)
	}
	if got := Redact("postgres://crispy:secret@db/x?password=other"); strings.Contains(got, "secret") || strings.Contains(got, "other") {
		t.Errorf("Redact = %q", got)
	}
}

// A server that is not there fails Open at once, with the dial error in the chain (cmd/crispy turns
// it into "PostgreSQL at … is not answering").
func TestOpenFailsWhenNoServerAnswers(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a port nobody listens on
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = Open(ctx, Config{URL: "postgres://u:secret@" + addr + "/x?sslmode=disable"}, Options{})
	if err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("open against a closed port: %v, want connection refused", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error leaks the password: %v", err)
	}
}
