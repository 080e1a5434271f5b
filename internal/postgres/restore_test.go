package postgres

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestRestoreListAndConninfo: the restore list drops extensions' comments and nothing else,
// and a connection string value with quotes and backslashes stays one value.
func TestRestoreListAndConninfo(t *testing.T) {
	for line, drop := range map[string]bool{
		"3365; 0 0 COMMENT - EXTENSION pgcrypto \n":           true,
		"3364; 0 0 COMMENT - EXTENSION plpgsql \n":            true,
		"2; 3079 16385 EXTENSION - pgcrypto \n":               false,
		"3366; 0 0 COMMENT - TABLE t admin1\n":                false,
		"216; 1259 16420 TABLE public t admin1\n":             false,
		";3365; 0 0 COMMENT - EXTENSION pgcrypto \n":          false,
		"3367; 0 0 COMMENT public TABLE \"EXTENSION x\" a\n":  false,
		"3368; 2615 2200 SCHEMA - public pg_database_owner\n": false,
	} {
		if got := extensionComment.MatchString(line); got != drop {
			t.Errorf("extensionComment.MatchString(%q) = %v, want %v", line, got, drop)
		}
	}
	for in, want := range map[string]string{
		"app":       `'app'`,
		`it's`:      `'it\'s'`,
		`a\b c=d`:   `'a\\b c=d'`,
		"/tmp/fog-": `'/tmp/fog-'`,
	} {
		if got := conninfoValue(in); got != want {
			t.Errorf("conninfoValue(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestPrepareScratchAfterAnEarlyKill: a restore killed before pgBackRest wrote PG_VERSION
// (or its manifest) leaves files pgBackRest refuses to restore over with --delta ("unable to
// restore to path ... because it contains files", [040]): the redo starts from an empty data
// directory. One that got that far is kept, for --delta.
func TestPrepareScratchAfterAnEarlyKill(t *testing.T) {
	_, r := testRunner(context.Background(), t)
	for _, tc := range []struct {
		files        []string
		wantNonEmpty bool
	}{
		{nil, false},
		{[]string{"base/1/1259"}, false},
		{[]string{"base/1/1259", "PG_VERSION"}, true},
		{[]string{"backup.manifest"}, true},
	} {
		c := &Cluster{Dir: filepath.Join(t.TempDir(), "scratch"), R: r}
		if _, err := c.PrepareScratch(); err != nil {
			t.Fatal(err)
		}
		for _, f := range tc.files {
			p := filepath.Join(c.DataDir(), f)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		nonEmpty, err := c.PrepareScratch()
		if err != nil || nonEmpty != tc.wantNonEmpty {
			t.Errorf("PrepareScratch() over %v = %v, %v, want %v", tc.files, nonEmpty, err, tc.wantNonEmpty)
		}
		names, _ := os.ReadDir(c.DataDir())
		if !tc.wantNonEmpty && len(names) > 0 {
			t.Errorf("PrepareScratch() over %v left %d names in the data directory, want none", tc.files, len(names))
		}
	}
}
