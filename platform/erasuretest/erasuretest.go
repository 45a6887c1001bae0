// Package erasuretest holds what tests use to show that erased content is gone from disk: a unique
// marker to write, and the files of a folder that still hold some bytes. The key store, the sealing
// decorator, the index and the modules' erasure tests all check "in no file of the folder" the same
// way, with this one walk.
package erasuretest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// Marker returns prefix followed by 16 random hex digits: text that no file holds by chance, so
// finding it means the test's own content was kept.
func Marker(t testing.TB, prefix string) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b[:])
}

// FilesHolding lists the regular files under dir whose bytes contain needle (folders, links and
// other special files are not read).
func FilesHolding(t testing.TB, dir string, needle []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}
