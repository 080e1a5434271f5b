package resource

import (
	"errors"
	"strings"
	"testing"

	"github.com/fogdb/fog/internal/fault"
)

var backupEnv = Env{Regions: []string{"eastus", "westus"}, LocaleOK: func(string) bool { return true }}

func createBody(redundancy *string) InstanceJSON {
	login, pw := "fogadmin", "Str0ng-Password-123!"
	return InstanceJSON{Location: "eastus", Properties: InstanceProperties{AdministratorLogin: &login, AdministratorLoginPassword: &pw, BackupStorageRedundancy: redundancy}}
}

// backupStorageRedundancy takes Azure's four values in any case, defaults to Geo as Azure's
// does, and refuses anything else with InvalidBackupStorageRedundancy and the values to use.
func TestBackupStorageRedundancy(t *testing.T) {
	s := func(v string) *string { return &v }
	for _, tc := range []struct {
		in   *string
		want string // "" for refused
	}{
		{nil, "Geo"},
		{s("Local"), "Local"},
		{s("zone"), "Zone"},
		{s("GEO"), "Geo"},
		{s("GeoZone"), "GeoZone"},
		{s("LRS"), ""},
		{s(""), ""},
		{s("Geo "), ""},
	} {
		m, _, err := ApplyInstance(backupEnv, nil, "sub", "rg", "mi1", createBody(tc.in))
		in := "<not sent>"
		if tc.in != nil {
			in = *tc.in
		}
		if tc.want == "" {
			var fe *fault.Error
			if !errors.As(err, &fe) || fe.Code != "InvalidBackupStorageRedundancy" || fe.Class != fault.BadRequest ||
				!strings.Contains(fe.Message, "use Local, Zone, Geo or GeoZone") {
				t.Errorf("ApplyInstance(backupStorageRedundancy %q) = %v, want InvalidBackupStorageRedundancy saying the values to use", in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ApplyInstance(backupStorageRedundancy %q) = %v", in, err)
			continue
		}
		if m.BackupStorageRedundancy != tc.want || *m.View("fog.test", "Ready").Properties.BackupStorageRedundancy != tc.want {
			t.Errorf("ApplyInstance(backupStorageRedundancy %q) stored %q, want %q", in, m.BackupStorageRedundancy, tc.want)
		}
		if m.RetentionDays() != DefaultBackupRetentionDays || m.BackupRetentionDays != DefaultBackupRetentionDays {
			t.Errorf("a new instance keeps %d days of backups (recorded %d), want %d", m.RetentionDays(), m.BackupRetentionDays, DefaultBackupRetentionDays)
		}
	}
}

// An update may change backupStorageRedundancy, and one that does not send it keeps it.
func TestBackupStorageRedundancyUpdate(t *testing.T) {
	local, zone := "Local", "Zone"
	m, _, err := ApplyInstance(backupEnv, nil, "sub", "rg", "mi1", createBody(&local))
	if err != nil {
		t.Fatal(err)
	}
	kept, _, err := ApplyInstance(backupEnv, m, "sub", "rg", "mi1", InstanceJSON{Location: "eastus"})
	if err != nil || kept.BackupStorageRedundancy != "Local" {
		t.Fatalf("update without the property = %v, %v; want Local kept", kept, err)
	}
	changed, _, err := ApplyInstance(backupEnv, m, "sub", "rg", "mi1", InstanceJSON{Location: "eastus", Properties: InstanceProperties{BackupStorageRedundancy: &zone}})
	if err != nil || changed.BackupStorageRedundancy != "Zone" {
		t.Fatalf("update to Zone = %v, %v; want Zone", changed, err)
	}
}

// A record an older Fog wrote has no backup fields: it reads as Azure's defaults and its
// UID as its stanza.
func TestBackupDefaultsOfAnOlderRecord(t *testing.T) {
	m := &ManagedInstance{UID: "0a1b2c3d-0000-4000-8000-00000000abcd"}
	if m.Stanza() != m.UID || m.RetentionDays() != 7 || m.StorageRedundancy() != "Geo" ||
		*m.View("fog.test", "Ready").Properties.BackupStorageRedundancy != "Geo" {
		t.Errorf("older record: stanza %q, retention %d, redundancy %q; want its UID, 7, Geo", m.Stanza(), m.RetentionDays(), m.StorageRedundancy())
	}
	m.BackupStanza = "other"
	if m.Stanza() != "other" {
		t.Errorf("Stanza() = %q, want the recorded one", m.Stanza())
	}
}

func TestNewStanza(t *testing.T) {
	uid := NewUID()
	for _, tc := range []struct {
		uid  string
		n    int
		want string // "" for an error
	}{
		{uid, 0, uid},
		{uid, 1, uid + "-1"},
		{uid, 12, uid + "-12"},
		{"uid-s", 2, "uid-s-2"},
		{"Upper", 0, ""},
		{"-lead", 0, ""},
		{"", 0, ""},
		{"a/b", 1, ""},
		{strings.Repeat("a", 63), 0, strings.Repeat("a", 63)},
		{strings.Repeat("a", 62), 1, ""}, // 64 characters
	} {
		got, err := NewStanza(tc.uid, tc.n)
		if tc.want == "" {
			if err == nil {
				t.Errorf("NewStanza(%q, %d) = %q, want an error", tc.uid, tc.n, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NewStanza(%q, %d) = %q, %v; want %q", tc.uid, tc.n, got, err, tc.want)
		}
	}
}
