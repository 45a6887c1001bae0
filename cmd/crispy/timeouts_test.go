package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/httpapi"
)

func TestHTTPTimeoutFlags(t *testing.T) {
	t.Parallel()
	var cfg config
	f := newFlags("serve", envOf(map[string]string{"CRISPY_IDLE_TIMEOUT": "45s", "CRISPY_WRITE_TIMEOUT": "2m"}), &bytes.Buffer{})
	f.serveFlags(&cfg)
	if err := f.parse([]string{"--write-timeout", "90s"}); err != nil {
		t.Fatal(err)
	}
	want := httpapi.Timeouts{ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: 90 * time.Second, Idle: 45 * time.Second}
	if got := cfg.httpTimeouts(); got != want || cfg.validateHTTPTimeouts() != nil {
		t.Fatalf("timeouts = %+v, want %+v", got, want)
	}
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"serve", "--idle-timeout", "0s"}, nil, "--idle-timeout"},
		{[]string{"serve", "--read-timeout", "-1s"}, nil, "--read-timeout"},
		{[]string{"serve", "--shutdown-timeout", "-1s"}, nil, "--shutdown-timeout"},
		{[]string{"serve"}, map[string]string{"CRISPY_READ_HEADER_TIMEOUT": "0"}, "--read-header-timeout"},
		{[]string{"serve"}, map[string]string{"CRISPY_WRITE_TIMEOUT": "a while"}, "CRISPY_WRITE_TIMEOUT"},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), c.args, stdio{out: &out, err: &errb}, envOf(c.env))
		var ex exitError
		if !errors.As(err, &ex) || ex.code != 2 || !strings.Contains(ex.msg, c.want) || strings.Contains(ex.msg, "\n") {
			t.Errorf("%v %v: err = %v, want one usage line naming %q", c.args, c.env, err, c.want)
		}
	}
}
