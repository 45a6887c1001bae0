// Package e2e runs the real crispy binary on embedded defaults and talks to it through the generated
// client in openapi/clients/go, as an API consumer would.
package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/test/internal/serveproc"
)

// bin holds the binaries built once for the whole test run.
var bin struct {
	crispy  string
	plugins string
}

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "crispy-e2e-")
		if err != nil {
			fmt.Println(err)
			return 1
		}
		defer os.RemoveAll(dir)
		bin.crispy = filepath.Join(dir, "crispy")
		bin.plugins = filepath.Join(dir, "plugins")
		steps := [][]string{
			{"go", "build", "-o", bin.crispy, "./cmd/crispy"},
			{"go", "build", "-o", bin.plugins + "/", "./plugins/summarize", "./plugins/classifyintent", "./plugins/extractentities", "./plugins/tagchunkdocs", "./plugins/ingestdocs"},
		}
		for _, s := range steps {
			cmd := exec.Command(s[0], s[1:]...)
			cmd.Dir = "../.."
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Printf("%s: %v\n%s", strings.Join(s, " "), err, out)
				return 1
			}
		}
		return m.Run()
	}())
}

// server is one running crispy serve process.
type server struct{ *serveproc.Process }

// startServer runs crispy serve on a free port with dataDir and extra flags, and waits until it
// listens. The process is stopped (SIGTERM) at the end of the test unless the test stops it.
func startServer(t *testing.T, dataDir string, extra ...string) *server {
	t.Helper()
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--plugins-dir", bin.plugins}, extra...)
	s := &server{serveproc.Start(t, "crispy serve", bin.crispy, args, append(os.Environ(), "CRISPY_LOG_LEVEL=info"), 60*time.Second)}
	t.Cleanup(func() { s.Stop() })
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func sha(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}
