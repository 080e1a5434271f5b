package resource

import (
	"fmt"
	"strings"

	"github.com/fogdb/fog/internal/fault"
)

// The prerequisites of creating an instance failover group, with the codes the
// Microsoft.Sql resource provider answers and in the order it checks them. They judge data
// only: the caller reads the two instances (as the caller of the request may see them) and
// what their agents report, and passes them in. The checks run in the order a create
// needs them:
//
//  1. CheckGroupPrimaryAddressed, before the instances are read;
//  2. CheckGroupInstances, once they are read (a nil instance is one the caller cannot
//     read, or that does not exist: the two are answered alike);
//  3. CheckGroupPrerequisites, once the caller is known to be allowed to join the two;
//  4. CheckGroupPartnerEmpty and CheckGroupNameFree, over what only a live look tells (the
//     partner's databases as its agent lists them now, the names already in the zone).

// GroupCandidate is an instance a new failover group would join: its record, and whether
// its agent last reported its PostgreSQL running (phase Ready).
type GroupCandidate struct {
	Instance *ManagedInstance
	Running  bool
}

// CheckGroupPrimaryAddressed checks that a create is addressed to the subscription and
// resource group of the primary the body names: a group is created through its primary.
func CheckGroupPrimaryAddressed(spec *FailoverGroupSpec, sub, rg string) error {
	if !strings.EqualFold(spec.PrimaryID.Subscription, sub) || !strings.EqualFold(spec.PrimaryID.ResourceGroup, rg) {
		return fogErr("InvalidPrimary", "The given primary field in create or update instance failover group request body is empty or invalid: the primary %s must be in the resource group the request is addressed to ('%s').", spec.PrimaryID.Raw, rg)
	}
	return nil
}

// CheckGroupInstances checks that both instances the body names were found (nil: there is
// none the caller can read) and that the request is addressed to the primary's region.
func CheckGroupInstances(spec *FailoverGroupSpec, region string, primary, partner *ManagedInstance) error {
	switch {
	case primary == nil:
		return fogErr("InvalidPrimary", "The given primary field in create or update instance failover group request body is empty or invalid: no managed instance %s.", spec.PrimaryID.Raw)
	case partner == nil:
		return fogErr("InvalidPartner", "The given partners field in create or update instance failover group request body is empty or invalid: no managed instance %s.", spec.PartnerID.Raw)
	case primary.Location != region:
		return fogErr("InvalidPrimary", "The primary managed instance '%s' is in '%s'; address the request to that location, not '%s'.", primary.Name, primary.Location, region)
	}
	return nil
}

// CheckGroupPrerequisites checks Azure's prerequisites of a failover group between primary
// and partner, in Azure's order: different regions, the partner region the body names, in
// no group yet, not in an instance pool, both provisioned and running, the same tier,
// storage size, collation, time zone, DNS zone and database format.
func CheckGroupPrerequisites(spec *FailoverGroupSpec, primary, partner GroupCandidate) error {
	prim, part := primary.Instance, partner.Instance
	both := []GroupCandidate{primary, partner}
	if prim.Location == part.Location {
		return fault.Invalid("InvalidFailoverGroupRegion", "Servers specified in an Instance Failover Group need to reside in different regions to provide isolation: both are in '%s'.", prim.Location)
	}
	if NormalizeRegion([]string{part.Location}, spec.PartnerRegion) == "" {
		return fault.Invalid("FailoverGroupRegionMismatch", "Partner region specified in Failover Group need to match the region of the partner managed instance indicated: partnerRegions says '%s', '%s' is in '%s'.", spec.PartnerRegion, part.Name, part.Location)
	}
	for _, c := range both {
		if m := c.Instance; m.FailoverGroup != "" {
			return fault.New(fault.Conflict, "InstanceFailoverGroupAlreadyExists", "Failover group already exists on a given server: '%s' is in failover group '%s'.", m.Name, m.FailoverGroup)
		}
	}
	for _, c := range both {
		if m := c.Instance; m.InstancePoolID != "" {
			return fault.Invalid("ManagedInstanceGeoDRNotAllowedForInstancePool", "Creating auto-failover group (GeoDR) is not supported for Managed Instances provisioned inside instance pools ('%s' is in %s). Auto failover groups can be created only for standalone Managed Instances.", m.Name, m.InstancePoolID)
		}
	}
	for _, c := range both {
		m := c.Instance
		if m.ProvisioningState != ProvisioningSucceeded {
			return fault.New(fault.Conflict, "ConflictingServerOperation", "Managed instance '%s' is %s; create the group when it is Ready.", m.Name, m.ProvisioningState)
		}
		if !c.Running {
			return fault.Invalid("ManagedInstanceStoppingOrStopped", "Managed instance '%s' is not Ready (its PostgreSQL is not running); create the group when it is.", m.Name)
		}
	}
	if prim.Tier != part.Tier {
		return fault.Invalid("ServerEditionMismatch", "Edition must be the same as the primary server when creating a replica server: '%s' is %s, '%s' is %s.", prim.Name, prim.Tier, part.Name, part.Tier)
	}
	if prim.StorageSizeInGB != part.StorageSizeInGB {
		return fault.Invalid("GeoDrInstanceSizeMismatch", "Primary managed instance and partner managed instance do not have the same storage size: %d GB and %d GB.", prim.StorageSizeInGB, part.StorageSizeInGB)
	}
	if prim.Collation != part.Collation {
		return fault.Invalid("GeoDrCollationMismatch", "Primary and partner managed instances must have the same collation: '%s' and '%s'. A physical replica shares the primary's locale.", prim.Collation, part.Collation)
	}
	// Two names of one zone (a Windows name and its IANA name) are the same time zone.
	pt, _ := IANATimezone(prim.TimezoneID)
	st, _ := IANATimezone(part.TimezoneID)
	if pt != st {
		return fault.Invalid("GeoDrTimezoneMismatch", "Primary and partner managed instances must have the same timezoneId: '%s' and '%s'.", prim.TimezoneID, part.TimezoneID)
	}
	if prim.DNSZone != part.DNSZone {
		return fault.Invalid("DnsZoneMismatch", "The DNSZone on the partner server is different from the DNSZone on the source server. This breaks InstanceFailoverGroup functionality. Create '%s' with dnsZonePartner set to %s.", part.Name, prim.ID())
	}
	if prim.DatabaseFormat != part.DatabaseFormat {
		return fault.Invalid("ManagedInstanceEstablishingFailoverGroupGeoPrimaryWithNewerVersionEditionThanSecondary",
			"Failover group cannot be created because database format of the primary instance (%s) is not compatible with the database format of the secondary instance (%s).", prim.DatabaseFormat, part.DatabaseFormat)
	}
	return nil
}

// CheckGroupPartnerEmpty checks that the partner, which becomes the secondary and is seeded
// from the primary, has no databases of its own: databases are the partner's databases as
// its agent lists them.
func CheckGroupPartnerEmpty(databases []string) error {
	if len(databases) > 0 {
		return fault.Invalid("GeoDrSecondaryInstanceNotEmpty", "Secondary managed instance has user databases (%s). To create an instance failover group the secondary managed instance needs to be empty.", databases[0])
	}
	return nil
}

// CheckGroupNameFree checks that the group's name, which becomes a listener's name in zone,
// is not a name there already: holder is the instance of that name in the zone, or nil, and
// readable whether the caller may read it. One the caller cannot read is not named.
func CheckGroupNameFree(name, zone string, holder *ManagedInstance, readable bool) error {
	switch {
	case holder == nil:
		return nil
	case !readable:
		return fault.New(fault.Conflict, "InstanceFailoverGroupDnsRecordInUse", "A duplicate DNS record exists for the requested endpoint: '%s' is already a name in zone %s; choose another group name.", name, zone)
	}
	return fault.New(fault.Conflict, "InstanceFailoverGroupDnsRecordInUse", "A duplicate DNS record exists for the requested endpoint: '%s' is already the name of managed instance %s in zone %s.", name, holder.ID(), zone)
}

// GroupWarnings are what a group between primary and partner is created with but told of:
// differences Azure allows.
func GroupWarnings(primary, partner *ManagedInstance) []string {
	var warnings []string
	if primary.VCores != partner.VCores {
		warnings = append(warnings, fmt.Sprintf("The instances have different vCores (%s: %d, %s: %d). This is allowed; after a failover the new primary runs with its own vCores.", primary.Name, primary.VCores, partner.Name, partner.VCores))
	}
	return warnings
}
