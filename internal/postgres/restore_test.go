package postgres

import "testing"

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
