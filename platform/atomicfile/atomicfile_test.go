package atomicfile_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/crispy-enigma/crispy/platform/atomicfile"
)

// Write replaces a file's content whole, with the permissions asked, and leaves no temporary file;
// a failed write leaves the old content and no temporary file either.
func TestWriteReplacesWholeAndLeavesNothingBehind(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "checkpoint.json")
	for _, content := range []string{"first, longer content\n", "second\n"} {
		if err := atomicfile.Write(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != content {
			t.Fatalf("read %q (%v), want %q", b, err, content)
		}
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v (%v), want 0600", st.Mode(), err)
	}
	if err := atomicfile.Write(filepath.Join(dir, "missing", "x"), []byte("y"), 0o600); err == nil {
		t.Fatal("a write into a missing folder succeeded")
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Fatalf("folder holds %d entries, want only the file: %v", len(ents), ents)
	}
	if err := atomicfile.SyncDir(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("syncing a missing folder succeeded")
	}
}
