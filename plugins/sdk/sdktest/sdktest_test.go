package sdktest_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/plugins/sdk/sdktest"
)

var bin string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "sdktest-")
		if err != nil {
			fmt.Println(err)
			return 1
		}
		defer os.RemoveAll(dir)
		bin = dir
		pkgs := []string{"summarize", "extractentities", "classifyintent", "tagchunkdocs", "ingestdocs", "sdk/internal/testplugin"}
		args := []string{"build", "-o", dir + "/"}
		for _, p := range pkgs {
			args = append(args, "github.com/crispy-enigma/crispy/plugins/"+p)
		}
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			fmt.Printf("build plugins: %v\n%s", err, out)
			return 1
		}
		for _, persona := range []string{"echo", "stubborn", "badname"} {
			if err := os.Link(filepath.Join(dir, "testplugin"), filepath.Join(dir, persona)); err != nil {
				fmt.Println(err)
				return 1
			}
		}
		return m.Run()
	}())
}

func TestBuiltInPluginsPass(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"summarize", "extractentities", "classifyintent", "tagchunkdocs", "ingestdocs", "echo"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rep := sdktest.Run(context.Background(), filepath.Join(bin, name), sdktest.Options{})
			var buf bytes.Buffer
			rep.Write(&buf)
			if !rep.OK() {
				t.Fatalf("conformance failed:\n%s", buf.String())
			}
			if len(rep.Checks) < 8 || !strings.Contains(buf.String(), "PASS  honours cancellation") {
				t.Fatalf("too few checks ran:\n%s", buf.String())
			}
		})
	}
}

func TestBadPluginsFail(t *testing.T) {
	t.Parallel()
	script := filepath.Join(t.TempDir(), "hello")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ path, want string }{
		{filepath.Join(bin, "stubborn"), "FAIL  honours cancellation"},
		{filepath.Join(bin, "badname"), "FAIL  description"},
		{script, "not a Crispy tool plugin"},
		{filepath.Join(t.TempDir(), "missing"), "FAIL  launch and handshake"},
	}
	for _, c := range cases {
		rep := sdktest.Run(context.Background(), c.path, sdktest.Options{CancelGrace: 150 * time.Millisecond})
		var buf bytes.Buffer
		rep.Write(&buf)
		if rep.OK() || !strings.Contains(buf.String(), c.want) || !strings.Contains(buf.String(), "FAILED") {
			t.Errorf("%s: want a failure with %q, got:\n%s", c.path, c.want, buf.String())
		}
	}
}

// TestExternalPluginExample builds test/plugin-example, a plugin in its own module that reaches this
// module through a replace directive (as a vendor's would through a version), and checks it.
func TestExternalPluginExample(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "word_count")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = filepath.Join("..", "..", "..", "test", "plugin-example")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the external plugin: %v\n%s", err, b)
	}
	rep := sdktest.Run(context.Background(), out, sdktest.Options{})
	var buf bytes.Buffer
	rep.Write(&buf)
	if !rep.OK() || rep.Tool != "word_count" {
		t.Fatalf("external plugin failed the kit:\n%s", buf.String())
	}
}
