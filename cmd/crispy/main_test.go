package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func envOf(m map[string]string) lookupEnv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestFlagsReadCRISPYVariablesAndTheCommandLineWins(t *testing.T) {
	t.Parallel()
	env := envOf(map[string]string{"CRISPY_DATA_DIR": "/from/env", "CRISPY_ADDR": ":9999", "CRISPY_SHUTDOWN_TIMEOUT": "3s"})
	var cfg config
	f := newFlags("serve", env, &bytes.Buffer{})
	f.serveFlags(&cfg)
	if err := f.parse([]string{"--addr", "127.0.0.1:1234"}); err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/from/env" || cfg.Addr != "127.0.0.1:1234" || cfg.ShutdownTimeout.String() != "3s" || cfg.LogLevel != "info" {
		t.Fatalf("config = %+v", cfg)
	}
	if cfg.Bus != "gochannel" || cfg.EventStore != "embedded" || cfg.Search != "embedded" {
		t.Fatalf("defaults = %+v", cfg)
	}
}

func TestBadConfigurationIsAUsageError(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"serve", "--bus", "kafka://x"}, nil, "--bus"},
		{[]string{"serve", "--bus-prefix", "a.b"}, nil, "--bus-prefix"},
		{[]string{"serve", "--alert-interval", "-1s"}, nil, "--alert-interval"},
		{[]string{"serve"}, map[string]string{"CRISPY_WEBHOOK_ALLOW_INTERNAL": "perhaps"}, "CRISPY_WEBHOOK_ALLOW_INTERNAL"},
		{[]string{"serve", "--eventstore", "mysql://x"}, nil, "--eventstore"},
		{[]string{"serve", "--eventstore", "postgres://x/db?synchronous_commit=off"}, nil, "--eventstore"},
		{[]string{"serve", "--search", "ftp://x"}, nil, "--search"},
		{[]string{"serve", "--log-level", "loud"}, nil, "--log-level"},
		{[]string{"serve"}, map[string]string{"CRISPY_SHUTDOWN_TIMEOUT": "soon"}, "CRISPY_SHUTDOWN_TIMEOUT"},
		{[]string{"serve", "extra"}, nil, "no arguments"},
		{[]string{"frobnicate"}, nil, "unknown command"},
		{[]string{"replay", "--tenant", "Not Valid"}, nil, "--tenant"},
		{[]string{"verify"}, nil, "--tenant is required"},
		{[]string{"replay", "--tenant", "acme", "--until", "yesterday"}, nil, "RFC 3339"},
		{[]string{"tenant", "key", "new"}, nil, "--tenant"},
		{[]string{"plugin"}, nil, "usage"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		err := run(context.Background(), c.args, stdio{out: &out, err: &errb}, envOf(c.env))
		var ex exitError
		if !errors.As(err, &ex) || ex.code != 2 || !strings.Contains(ex.msg, c.want) {
			t.Errorf("%v: err = %v, want a usage error naming %q", c.args, err, c.want)
		}
	}
}

func TestTenantKeyNewPrintsTheKeyOnceAndItsHash(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"tenant", "key", "new", "--tenant", "acme"}, stdio{out: &out, err: &bytes.Buffer{}}, envOf(nil)); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if strings.Count(s, "ce_") != 1 || !strings.Contains(s, `"sha256:`) || !strings.Contains(s, "- id: acme") {
		t.Fatalf("output:\n%s", s)
	}
}

func TestRedactURLHidesPasswords(t *testing.T) {
	t.Parallel()
	if got := redactURL("esdb://admin:changeit@db:2113?tls=false"); strings.Contains(got, "changeit") {
		t.Fatalf("redacted = %s", got)
	}
	if got := redactURL("embedded"); got != "embedded" {
		t.Fatalf("redacted = %s", got)
	}
}
