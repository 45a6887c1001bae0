package tenant

import (
	"strings"
	"testing"
)

// validID answers as idPattern does, for ids of every length around the bounds and every byte in
// every place.
func TestValidIDIsThePattern(t *testing.T) {
	t.Parallel()
	cases := []string{"", "a", "0", "-", "a-", "-a", "a--b", "Acme", "acme", "acme corp", "acme\n", "é", "a.b", "a_b",
		strings.Repeat("a", 62), strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("9", 63) + "-"}
	for c := 0; c < 256; c++ {
		for _, tmpl := range []string{"%c", "a%c", "%ca", "ab%ccd"} {
			cases = append(cases, strings.Replace(tmpl, "%c", string([]byte{byte(c)}), 1))
		}
	}
	for _, s := range cases {
		if got, want := validID(s), idPattern.MatchString(s); got != want {
			t.Errorf("validID(%q) = %v, the pattern says %v", s, got, want)
		}
	}
}

func FuzzValidIDIsThePattern(f *testing.F) {
	for _, s := range []string{"acme", "-", "a-b", strings.Repeat("z", 63)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validID(s), idPattern.MatchString(s); got != want {
			t.Errorf("validID(%q) = %v, the pattern says %v", s, got, want)
		}
	})
}
