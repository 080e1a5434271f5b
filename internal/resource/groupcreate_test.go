package resource

import (
	"errors"
	"strings"
	"testing"

	"github.com/fogdb/fog/internal/fault"
)

// groupPair is a primary in eastus and a partner in westus that meet every prerequisite.
func groupPair() (*FailoverGroupSpec, GroupCandidate, GroupCandidate) {
	inst := func(rg, name, loc string) *ManagedInstance {
		return &ManagedInstance{UID: name + "-uid", Subscription: "sub1", ResourceGroup: rg, Name: name, Location: loc,
			Tier: "GeneralPurpose", VCores: 8, StorageSizeInGB: 256, Collation: DefaultCollation, TimezoneID: "UTC",
			DNSZone: "zone1", DatabaseFormat: DefaultDatabaseFormat, ProvisioningState: ProvisioningSucceeded}
	}
	prim, part := inst("rg-p", "mi-p", "eastus"), inst("rg-s", "mi-s", "westus")
	spec := &FailoverGroupSpec{ReadWritePolicy: "Manual", ReadOnlyPolicy: "Disabled", SecondaryType: "Geo", PartnerRegion: "westus",
		PrimaryID: ParsedID{Raw: prim.ID(), Subscription: "sub1", ResourceGroup: "rg-p", Name: "mi-p"},
		PartnerID: ParsedID{Raw: part.ID(), Subscription: "sub1", ResourceGroup: "rg-s", Name: "mi-s"}}
	return spec, GroupCandidate{Instance: prim, Running: true}, GroupCandidate{Instance: part, Running: true}
}

// faultOf returns err's code and class, or fails.
func faultOf(t *testing.T, err error) (string, fault.Class) {
	t.Helper()
	var fe *fault.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is not a *fault.Error", err)
	}
	return fe.Code, fe.Class
}

func TestCheckGroupPrerequisites(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(spec *FailoverGroupSpec, prim, part *GroupCandidate)
		code   string // "" for none
		class  fault.Class
	}{
		{"all met", func(*FailoverGroupSpec, *GroupCandidate, *GroupCandidate) {}, "", 0},
		{"partner region in another form", func(s *FailoverGroupSpec, _, _ *GroupCandidate) { s.PartnerRegion = "West US" }, "", 0},
		{"one time zone by its Windows and its IANA name", func(_ *FailoverGroupSpec, p, q *GroupCandidate) {
			p.Instance.TimezoneID, q.Instance.TimezoneID = "W. Europe Standard Time", "Europe/Berlin"
		}, "", 0},
		{"different vCores", func(_ *FailoverGroupSpec, p, _ *GroupCandidate) { p.Instance.VCores = 16 }, "", 0},
		{"same region", func(s *FailoverGroupSpec, _, q *GroupCandidate) {
			q.Instance.Location, s.PartnerRegion = "eastus", "eastus"
		}, "InvalidFailoverGroupRegion", fault.BadRequest},
		{"partner region not the partner's", func(s *FailoverGroupSpec, _, _ *GroupCandidate) { s.PartnerRegion = "centralus" },
			"FailoverGroupRegionMismatch", fault.BadRequest},
		{"primary in a group", func(_ *FailoverGroupSpec, p, _ *GroupCandidate) { p.Instance.FailoverGroup = "g0" },
			"InstanceFailoverGroupAlreadyExists", fault.Conflict},
		{"partner in a group", func(_ *FailoverGroupSpec, _, q *GroupCandidate) { q.Instance.FailoverGroup = "g0" },
			"InstanceFailoverGroupAlreadyExists", fault.Conflict},
		{"primary in a pool", func(_ *FailoverGroupSpec, p, _ *GroupCandidate) { p.Instance.InstancePoolID = "pool1" },
			"ManagedInstanceGeoDRNotAllowedForInstancePool", fault.BadRequest},
		{"partner in a pool", func(_ *FailoverGroupSpec, _, q *GroupCandidate) { q.Instance.InstancePoolID = "pool1" },
			"ManagedInstanceGeoDRNotAllowedForInstancePool", fault.BadRequest},
		{"primary being created", func(_ *FailoverGroupSpec, p, _ *GroupCandidate) { p.Instance.ProvisioningState = ProvisioningCreating },
			"ConflictingServerOperation", fault.Conflict},
		{"partner being updated", func(_ *FailoverGroupSpec, _, q *GroupCandidate) { q.Instance.ProvisioningState = ProvisioningUpdating },
			"ConflictingServerOperation", fault.Conflict},
		{"primary not running", func(_ *FailoverGroupSpec, p, _ *GroupCandidate) { p.Running = false },
			"ManagedInstanceStoppingOrStopped", fault.BadRequest},
		{"partner not running", func(_ *FailoverGroupSpec, _, q *GroupCandidate) { q.Running = false },
			"ManagedInstanceStoppingOrStopped", fault.BadRequest},
		{"tier", func(_ *FailoverGroupSpec, _, q *GroupCandidate) { q.Instance.Tier = "BusinessCritical" },
			"ServerEditionMismatch", fault.BadRequest},
		{"storage size", func(_ *FailoverGroupSpec, _, q *GroupCandidate) { q.Instance.StorageSizeInGB = 64 },
			"GeoDrInstanceSizeMismatch", fault.BadRequest},
		{"collation", func(_ *FailoverGroupSpec, _, q *GroupCandidate) { q.Instance.Collation = "en_US.UTF-8" },
			"GeoDrCollationMismatch", fault.BadRequest},
		{"timezone", func(_ *FailoverGroupSpec, _, q *GroupCandidate) { q.Instance.TimezoneID = "Europe/Berlin" },
			"GeoDrTimezoneMismatch", fault.BadRequest},
		{"dns zone", func(_ *FailoverGroupSpec, _, q *GroupCandidate) { q.Instance.DNSZone = "zone2" },
			"DnsZoneMismatch", fault.BadRequest},
		{"database format", func(_ *FailoverGroupSpec, _, q *GroupCandidate) { q.Instance.DatabaseFormat = "AlwaysUpToDate" },
			"ManagedInstanceEstablishingFailoverGroupGeoPrimaryWithNewerVersionEditionThanSecondary", fault.BadRequest},
		// When several rules are broken, the first in Azure's order is told.
		{"same region and tier", func(s *FailoverGroupSpec, _, q *GroupCandidate) {
			q.Instance.Location, s.PartnerRegion, q.Instance.Tier = "eastus", "eastus", "BusinessCritical"
		}, "InvalidFailoverGroupRegion", fault.BadRequest},
		{"not provisioned and not running", func(_ *FailoverGroupSpec, _, q *GroupCandidate) {
			q.Instance.ProvisioningState, q.Running = ProvisioningFailed, false
		}, "ConflictingServerOperation", fault.Conflict},
		{"partner not provisioned, primary not running", func(_ *FailoverGroupSpec, p, q *GroupCandidate) {
			q.Instance.ProvisioningState, p.Running = ProvisioningFailed, false
		}, "ManagedInstanceStoppingOrStopped", fault.BadRequest},
		{"storage and format", func(_ *FailoverGroupSpec, _, q *GroupCandidate) {
			q.Instance.StorageSizeInGB, q.Instance.DatabaseFormat = 64, "AlwaysUpToDate"
		}, "GeoDrInstanceSizeMismatch", fault.BadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, prim, part := groupPair()
			tc.change(spec, &prim, &part)
			err := CheckGroupPrerequisites(spec, prim, part)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("CheckGroupPrerequisites = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckGroupPrerequisites = nil, want %s", tc.code)
			}
			if code, class := faultOf(t, err); code != tc.code || class != tc.class {
				t.Errorf("CheckGroupPrerequisites = %v (class %d), want %s (class %d)", err, class, tc.code, tc.class)
			}
		})
	}
}

func TestCheckGroupAddressingAndInstances(t *testing.T) {
	spec, prim, part := groupPair()
	for _, tc := range []struct {
		name string
		err  error
		code string
	}{
		{"addressed to the primary", CheckGroupPrimaryAddressed(spec, "SUB1", "RG-P"), ""},
		{"addressed to another resource group", CheckGroupPrimaryAddressed(spec, "sub1", "rg-s"), "InstanceFailoverGroupCreateOrUpdateRequestInvalidPrimary"},
		{"addressed to another subscription", CheckGroupPrimaryAddressed(spec, "sub2", "rg-p"), "InstanceFailoverGroupCreateOrUpdateRequestInvalidPrimary"},
		{"both found", CheckGroupInstances(spec, "eastus", prim.Instance, part.Instance), ""},
		{"no primary", CheckGroupInstances(spec, "eastus", nil, nil), "InstanceFailoverGroupCreateOrUpdateRequestInvalidPrimary"},
		{"no partner", CheckGroupInstances(spec, "eastus", prim.Instance, nil), "InstanceFailoverGroupCreateOrUpdateRequestInvalidPartner"},
		{"addressed to the partner's region", CheckGroupInstances(spec, "westus", prim.Instance, part.Instance), "InstanceFailoverGroupCreateOrUpdateRequestInvalidPrimary"},
		{"no partner, addressed elsewhere", CheckGroupInstances(spec, "westus", prim.Instance, nil), "InstanceFailoverGroupCreateOrUpdateRequestInvalidPartner"},
	} {
		if tc.code == "" {
			if tc.err != nil {
				t.Errorf("%s: %v, want nil", tc.name, tc.err)
			}
			continue
		}
		if tc.err == nil {
			t.Errorf("%s: nil, want %s", tc.name, tc.code)
			continue
		}
		if code, class := faultOf(t, tc.err); code != tc.code || class != fault.BadRequest {
			t.Errorf("%s: %v (class %d), want %s (class %d)", tc.name, tc.err, class, tc.code, fault.BadRequest)
		}
	}
}

func TestCheckGroupLiveRules(t *testing.T) {
	_, prim, _ := groupPair()
	holder := prim.Instance
	for _, tc := range []struct {
		name  string
		err   error
		code  string
		class fault.Class
		names string // what the message must contain
	}{
		{"partner empty", CheckGroupPartnerEmpty(nil), "", 0, ""},
		{"partner has a database", CheckGroupPartnerEmpty([]string{"sales", "hr"}), "GeoDrSecondaryInstanceNotEmpty", fault.BadRequest, "(sales)"},
		{"name free", CheckGroupNameFree("g1", "zone1", nil, false), "", 0, ""},
		{"name of an instance the caller reads", CheckGroupNameFree("mi-p", "zone1", holder, true), "InstanceFailoverGroupDnsRecordInUse", fault.Conflict, holder.ID()},
		{"name of an instance the caller cannot read", CheckGroupNameFree("mi-p", "zone1", holder, false), "InstanceFailoverGroupDnsRecordInUse", fault.Conflict, "'mi-p' is already a name in zone zone1"},
	} {
		if tc.code == "" {
			if tc.err != nil {
				t.Errorf("%s: %v, want nil", tc.name, tc.err)
			}
			continue
		}
		if tc.err == nil {
			t.Errorf("%s: nil, want %s", tc.name, tc.code)
			continue
		}
		if code, class := faultOf(t, tc.err); code != tc.code || class != tc.class || !strings.Contains(tc.err.Error(), tc.names) {
			t.Errorf("%s: %v (class %d), want %s (class %d) naming %q", tc.name, tc.err, class, tc.code, tc.class, tc.names)
		}
	}
	// One the caller cannot read is not named.
	if err := CheckGroupNameFree("mi-p", "zone1", holder, false); strings.Contains(err.Error(), holder.ResourceGroup) {
		t.Errorf("CheckGroupNameFree of an unreadable holder names it: %v", err)
	}
}

func TestGroupWarnings(t *testing.T) {
	_, prim, part := groupPair()
	if w := GroupWarnings(prim.Instance, part.Instance); len(w) != 0 {
		t.Errorf("GroupWarnings of equal instances = %q, want none", w)
	}
	part.Instance.VCores = 4
	if w := GroupWarnings(prim.Instance, part.Instance); len(w) != 1 || !strings.Contains(w[0], "mi-p: 8, mi-s: 4") {
		t.Errorf("GroupWarnings of 8 and 4 vCores = %q, want one naming both", w)
	}
}
