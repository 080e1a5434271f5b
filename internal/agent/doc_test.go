package agent

import (
	"os"
	"strings"
	"testing"
)

// TestDocShowsTheTransitionTable: the table in the package doc is the table the worker runs,
// rendered by transitionDoc: a row added, removed or changed in one is changed in the other.
func TestDocShowsTheTransitionTable(t *testing.T) {
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var doc strings.Builder
	in := false
	for line := range strings.Lines(string(b)) {
		switch {
		case strings.HasPrefix(line, "// # Transitions"):
			in = true
		case in && strings.HasPrefix(line, "// #"), !strings.HasPrefix(line, "//"):
			in = false
		case in && strings.HasPrefix(line, "//\t"):
			doc.WriteString(strings.TrimPrefix(line, "//\t"))
		}
	}
	if got, want := doc.String(), transitionDoc(); got != want {
		t.Errorf("the table in doc.go differs from transitions; it should read:\n%s", indent(want))
	}
}

func indent(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		b.WriteString("//\t" + line)
	}
	return b.String()
}
