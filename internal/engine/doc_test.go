package engine

import (
	"os"
	"strings"
	"testing"
)

// TestDocTables: the step tables in the package documentation are the tables the runner
// runs, printed from them (Table.Doc), in the order of Tables.
func TestDocTables(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	// A table is a run of the comment's indented lines.
	var blocks []string
	var cur []string
	for _, line := range strings.Split(string(src), "\n") {
		if rest, ok := strings.CutPrefix(line, "//\t"); ok {
			cur = append(cur, rest)
			continue
		}
		if len(cur) > 0 {
			blocks = append(blocks, strings.Join(cur, "\n")+"\n")
			cur = nil
		}
	}
	if len(blocks) != len(Tables) {
		t.Fatalf("doc.go has %d tables, want %d (one per kind in Tables)", len(blocks), len(Tables))
	}
	for i, tab := range Tables {
		if got, want := blocks[i], tab.Doc(); got != want {
			t.Errorf("doc.go's table %d differs from the %s table; it should read:\n%s", i+1, tab.Kind, indent(want))
		}
	}
}

func indent(s string) string {
	return "//\t" + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n//\t") + "\n"
}

// TestTables: every table starts at the accepted step, has each name once, every step after
// the first writes something, and a table whose steps roll back has a rollback (and one with
// a rolled-back step, to resume its rollback at, too).
func TestTables(t *testing.T) {
	for _, tab := range Tables {
		if r := tab.RolledBack; r != nil && (r.Name != StepRolledBack || r.wait == nil || tab.rollback == nil) {
			t.Errorf("%s: its rolled-back step is named %q, has a wait %v, and the table a rollback %v; want %q, both",
				tab.Kind, r.Name, r.wait != nil, tab.rollback != nil, StepRolledBack)
		}
		seen := map[string]bool{}
		for i, s := range tab.Steps {
			if seen[s.Name] {
				t.Errorf("%s: step %q twice", tab.Kind, s.Name)
			}
			seen[s.Name] = true
			if i == 0 && s.Name != StepAccepted {
				t.Errorf("%s starts at %q, want the accepted step", tab.Kind, s.Name)
			}
			if i > 0 && s.write == nil && s.enter == nil {
				t.Errorf("%s: step %q writes nothing", tab.Kind, s.Name)
			}
			if s.wait == nil {
				t.Errorf("%s: step %q has no wait", tab.Kind, s.Name)
			}
			if s.OnFail == RollBack && tab.rollback == nil {
				t.Errorf("%s: step %q rolls back, and the table has no rollback", tab.Kind, s.Name)
			}
		}
	}
}
