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

// categoryOf splits a stream's tail as it did when it built c+"-" for each known multiword
// category (the oracle below), for those categories with and without an entity, their prefixes
// and longer words that start with them.
func TestCategoryOfSplitsAsBefore(t *testing.T) {
	t.Parallel()
	oracle := func(tail string) string {
		for _, c := range knownMultiword {
			if tail == c || strings.HasPrefix(tail, c+"-") {
				return c
			}
		}
		if i := strings.IndexByte(tail, '-'); i >= 0 {
			return tail[:i]
		}
		return tail
	}
	var tails []string
	for _, c := range append(knownMultiword, "session", "tool", "audit", "alert") {
		for _, suffix := range []string{"", "-", "-x", "-x-y", "s", "s-x", "x"} {
			tails = append(tails, c+suffix)
		}
		tails = append(tails, c[:len(c)-1], c[:len(c)/2]+"-x")
	}
	tails = append(tails, "", "-", "--", "-x")
	for _, tail := range tails {
		if got, want := categoryOf(tail), oracle(tail); got != want {
			t.Errorf("categoryOf(%q) = %q, want %q", tail, got, want)
		}
	}
	st, err := ParseStream("t-acme.tool-audit-inv-1")
	if err != nil || st.Category() != "tool-audit" || st.Entity() != "inv-1" || st.Tenant() != MustParse("acme") {
		t.Fatalf("ParseStream: %+v, %v", st, err)
	}
}
