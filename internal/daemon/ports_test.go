package daemon

import "testing"

// TestPortRange: an agent's --port-range spans at most 1000 ports, since an instance's
// pgBackRest server (backups of its group's standby) listens 1000 above the instance.
func TestPortRange(t *testing.T) {
	for _, tc := range []struct {
		in          string
		first, last int
		ok          bool
	}{
		{"5432-5531", 5432, 5531, true},
		{"6432", 6432, 6432, true},
		{"5000-5999", 5000, 5999, true},
		{"5000-6000", 0, 0, false},
		{"64536", 0, 0, false},
		{"64535", 64535, 64535, true},
		{"6000-5000", 0, 0, false},
		{"x", 0, 0, false},
	} {
		first, last, err := parsePorts(tc.in)
		if (err == nil) != tc.ok || tc.ok && (first != tc.first || last != tc.last) {
			t.Errorf("parsePorts(%q) = %d, %d, %v", tc.in, first, last, err)
		}
	}
}
