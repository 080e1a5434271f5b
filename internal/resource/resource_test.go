package resource

import "testing"

func TestIANATimezone(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"Pacific Standard Time", "America/Los_Angeles", true},
		{"pacific standard time", "America/Los_Angeles", true},
		{"UTC", "Etc/UTC", true},
		{"Europe/Berlin", "Europe/Berlin", true},
		{"Mars/Olympus", "", false},
		{"../../etc/passwd", "", false},
		{"", "", false},
	} {
		got, ok := IANATimezone(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("IANATimezone(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestValidatePassword(t *testing.T) {
	for _, tc := range []struct {
		pw string
		ok bool
	}{
		{"Str0ng-Password-123!", true},
		{"ABCDEFGHijklmnop", false},      // two classes
		{"ABCDEFGHijklmno1", true},       // three classes
		{"Sh0rt!", false},                // too short
		{"Has-fogadmin-Inside-1", false}, // contains the login
		{"Tab\tInside-Password-1", false},
	} {
		if err := ValidatePassword(tc.pw, "FogAdmin"); (err == nil) != tc.ok {
			t.Errorf("ValidatePassword(%q) = %v, want ok=%v", tc.pw, err, tc.ok)
		}
	}
}

func TestValidateInstanceName(t *testing.T) {
	for name, ok := range map[string]bool{
		"mi1": true, "a": true, "my-instance-01": true,
		"": false, "-a": false, "a-": false, "A": false, "a_b": false, "a.b": false,
		"abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij123":  true,
		"abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij1234": false,
	} {
		if err := ValidateInstanceName(name); (err == nil) != ok {
			t.Errorf("ValidateInstanceName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestNormalizeRegion(t *testing.T) {
	regions := []string{"eastus", "westus"}
	for in, want := range map[string]string{"eastus": "eastus", "East US": "eastus", "EASTUS": "eastus", "West US": "westus", "mars": ""} {
		if got := NormalizeRegion(regions, in); got != want {
			t.Errorf("NormalizeRegion(%q) = %q, want %q", in, got, want)
		}
	}
}
