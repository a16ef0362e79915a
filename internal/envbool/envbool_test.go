package envbool

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
		ok   bool
	}{
		{"true", true, true}, {"TRUE", true, true}, {"1", true, true}, {"yes", true, true}, {"On", true, true},
		{" false ", false, true}, {"0", false, true}, {"No", false, true}, {"off", false, true},
		{"", false, false}, {"y", false, false}, {"2", false, false}, {"truee", false, false}, {"enabled", false, false},
	} {
		got, err := Parse(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), Accepted) || !strings.Contains(err.Error(), `"`+tc.in+`"`)) {
			t.Errorf("Parse(%q) error %q does not quote the value and what is accepted", tc.in, err)
		}
	}
}

// Every spelling in Accepted parses, so the message never promises more
// than Parse takes.
func TestAcceptedSpellingsParse(t *testing.T) {
	for _, w := range strings.FieldsFunc(Accepted, func(r rune) bool { return strings.ContainsRune(" ,/();", r) }) {
		switch w {
		case "or", "also", "any", "case":
			continue
		}
		if _, err := Parse(w); err != nil {
			t.Errorf("Accepted names %q, which Parse refuses: %v", w, err)
		}
	}
}
