package host

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/crispy-enigma/crispy/platform/atomicfile"
)

// LockFileName is the manifest in a plugins folder that pins each binary's SHA-256. When it exists the
// host launches only the binaries it lists, and only when their checksum matches (go-plugin's
// SecureConfig re-checks it at every launch, so a binary swapped after start-up is refused at restart).
const LockFileName = "plugins.lock"

// Lock maps a binary's file name to its SHA-256.
type Lock map[string][]byte

// ReadLock reads dir/plugins.lock. It returns (nil, nil) when there is none.
func ReadLock(dir string) (Lock, error) {
	b, err := os.ReadFile(filepath.Join(dir, LockFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", LockFileName, err)
	}
	lock := Lock{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("%s line %d: want \"<sha256>  <file>\"", LockFileName, n)
		}
		sum, err := hex.DecodeString(f[0])
		if err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("%s line %d: %q is not a SHA-256", LockFileName, n, f[0])
		}
		if strings.ContainsAny(f[1], `/\`) {
			return nil, fmt.Errorf("%s line %d: %q must be a file name in the folder", LockFileName, n, f[1])
		}
		lock[f[1]] = sum
	}
	return lock, sc.Err()
}

// WriteLock hashes every executable in dir and writes dir/plugins.lock (what `crispy plugin lock DIR`
// runs). It returns the lock it wrote.
func WriteLock(dir string) (Lock, error) {
	names, err := Executables(dir)
	if err != nil {
		return nil, err
	}
	lock := Lock{}
	var b strings.Builder
	b.WriteString("# SHA-256 of each tool plugin in this folder, written by `crispy plugin lock`.\n")
	b.WriteString("# The host refuses a binary that is missing here or does not match.\n")
	for _, n := range names {
		sum, err := FileSHA256(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		lock[n] = sum
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(sum), n)
	}
	if err := atomicfile.Write(filepath.Join(dir, LockFileName), []byte(b.String()), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", LockFileName, err)
	}
	return lock, nil
}

// Executables lists the plugin candidates in dir: regular executable files, not hidden, not the lock.
func Executables(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("plugins dir: %w", err)
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || n == LockFileName {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
			continue
		}
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// FileSHA256 hashes a file.
func FileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("hash %s: %w", path, err)
	}
	return h.Sum(nil), nil
}
