// Package group holds the stored record of a failover group, shared by the controller that
// writes it and the gateways that route by it, and computes the listeners' routes and the
// replication lag the sides' observed state shows.
package group

import (
	"strings"
	"time"

	"github.com/fogdb/fog/internal/resource"
)

// FailoverGroup is the stored record of an instance failover group. Sides[Primary] is the
// current primary; every role change increments Epoch.
type FailoverGroup struct {
	Name            string       `json:"name"`
	Sides           [2]GroupSide `json:"sides"`
	Primary         int          `json:"primary"`
	ReadWritePolicy string       `json:"readWritePolicy"`
	GraceMinutes    *int         `json:"graceMinutes,omitempty"`
	// The data-loss budget and observe-only mode of the Automatic policy.
	MaxLossBytes   *int64 `json:"maxLossBytes,omitempty"`
	MaxLossSeconds *int   `json:"maxLossSeconds,omitempty"`
	ObserveOnly    bool   `json:"observeOnly,omitempty"`
	ReadOnlyPolicy string `json:"readOnlyPolicy"`
	SecondaryType  string `json:"secondaryType"`
	Epoch          int64  `json:"epoch"`
	// Switching holds new read-write connections while the primary changes.
	Switching bool `json:"switching"`
	// Deleting: the group is being removed; listeners are gone.
	Deleting        bool   `json:"deleting,omitempty"`
	ActiveOperation string `json:"activeOperation,omitempty"`
	// OperationKind of the active operation, for replicationState.
	OperationKind  string    `json:"operationKind,omitempty"`
	Members        [2]Member `json:"members"`
	ID             string    `json:"id"`
	SeedGeneration int64     `json:"seedGeneration"`
	ReadWrite      Address   `json:"readWrite"`
	ReadOnly       Address   `json:"readOnly"`
	// PartnerReadWrite and PartnerReadOnly are the listeners in Sides[1]'s region (each
	// region's gateway serves the group on addresses of its own); ReadWrite and ReadOnly are
	// in Sides[0]'s. Groups created before regions had their own gateways have none.
	PartnerReadWrite Address                  `json:"partnerReadWrite,omitzero"`
	PartnerReadOnly  Address                  `json:"partnerReadOnly,omitzero"`
	DNSZone          string                   `json:"dnsZone"`
	Warnings         []string                 `json:"warnings,omitempty"`
	LastForced       *resource.ForcedFailover `json:"lastForced,omitempty"`
	Events           []resource.Event         `json:"events,omitempty"`
	Created          time.Time                `json:"created"`
}

// Member is what the group wants of one side's instance right now; the instance spec is its
// base spec with this applied.
type Member struct {
	Role            string `json:"role,omitempty"`
	Paused          bool   `json:"paused,omitempty"`
	Drain           bool   `json:"drain,omitempty"`
	KeepLostWAL     bool   `json:"keepLostWal,omitempty"`
	StopImmediately bool   `json:"stopImmediately,omitempty"`
	PromoteAfterLSN string `json:"promoteAfterLsn,omitempty"`
	Rewind          bool   `json:"rewind,omitempty"`
	SeedGeneration  int64  `json:"seedGeneration,omitempty"`
}

// GroupSide is one member of a group.
type GroupSide struct {
	Subscription  string `json:"subscription"`
	ResourceGroup string `json:"resourceGroup"`
	Location      string `json:"location"`
	InstanceName  string `json:"instanceName"`
	InstanceUID   string `json:"instanceUid"`
	// PartnerRegionAsSent keeps the partnerRegions location in the form the client sent.
	PartnerRegionAsSent string `json:"partnerRegionAsSent,omitempty"`
}

// Address is a listener address.
type Address struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

// Listeners returns the read-write and read-only listener addresses in side i's region,
// falling back to side 0's for a group that has none there.
func (g *FailoverGroup) Listeners(i int) (rw, ro Address) {
	if i == 1 && g.PartnerReadWrite.Host != "" {
		return g.PartnerReadWrite, g.PartnerReadOnly
	}
	return g.ReadWrite, g.ReadOnly
}

// ListenerAddrs are every listener address of the group.
func (g *FailoverGroup) ListenerAddrs() []Address {
	out := []Address{g.ReadWrite, g.ReadOnly}
	if g.PartnerReadWrite.Host != "" {
		out = append(out, g.PartnerReadWrite, g.PartnerReadOnly)
	}
	return out
}

// ListenerHosts are every listener host of the group.
func (g *FailoverGroup) ListenerHosts() []string {
	out := []string{g.ReadWrite.Host, g.ReadOnly.Host}
	if g.PartnerReadWrite.Host != "" {
		out = append(out, g.PartnerReadWrite.Host, g.PartnerReadOnly.Host)
	}
	return out
}

// Secondary is the index of the current secondary.
func (g *FailoverGroup) Secondary() int { return 1 - g.Primary }

// InstanceKey is the store key of a side's instance.
func (s GroupSide) InstanceKey() string {
	return InstanceKey(s.Subscription, s.ResourceGroup, s.InstanceName)
}

// Side returns the index of the side addressed by (sub, rg, location), or -1.
func (g *FailoverGroup) Side(sub, rg, location string) int {
	for i, s := range g.Sides {
		if strings.EqualFold(s.Subscription, sub) && strings.EqualFold(s.ResourceGroup, rg) &&
			resource.NormalizeRegion([]string{s.Location}, location) != "" {
			return i
		}
	}
	return -1
}

// Event records an event in the group that a user's request caused, keeping the last 50.
func (g *FailoverGroup) Event(kind, msg string, lost *resource.LostWAL) {
	g.EventBy("user", kind, msg, lost)
}

// EventBy records an event with its initiator ("user", or "system" for the automatic
// policy), keeping the last 50.
func (g *FailoverGroup) EventBy(initiator, kind, msg string, lost *resource.LostWAL) {
	g.Events = append(g.Events, resource.Event{Time: time.Now().UTC(), Kind: kind, Message: msg, Initiator: initiator, LostWAL: lost})
	if len(g.Events) > 50 {
		g.Events = g.Events[len(g.Events)-50:]
	}
}

// Key is the store key of a group's record.
func Key(name string) string { return Prefix + strings.ToLower(name) }

// Prefix is the prefix of every group record.
const Prefix = "fog/"

// InstanceKey is the store key of a managed instance's record.
func InstanceKey(sub, rg, name string) string {
	return "mi/" + strings.ToLower(sub) + "/" + strings.ToLower(rg) + "/" + strings.ToLower(name)
}

// ListenerNames returns the read-write and read-only listener names of a group.
func ListenerNames(name, zone, suffix string) (rw, ro string) {
	return name + "." + zone + "." + suffix, name + ".secondary." + zone + "." + suffix
}
