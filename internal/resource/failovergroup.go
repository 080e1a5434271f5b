package resource

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/fault"
)

// TypeFailoverGroup is the ARM type of an instance failover group.
const TypeFailoverGroup = "Microsoft.Sql/locations/instanceFailoverGroups"

// Replication states, as sys.dm_geo_replication_link_status names them, and Fog's state while
// a failover runs.
const (
	StatePending            = "PENDING"
	StateSeeding            = "SEEDING"
	StateCatchUp            = "CATCH_UP"
	StateSuspended          = "SUSPENDED"
	StateFailoverInProgress = "FAILOVER_IN_PROGRESS"
)

// MinGracePeriodMinutes is Azure's minimum grace period for the Automatic policy.
const MinGracePeriodMinutes = 60

// ReadWriteEndpoint is the read-write listener's policy. The fields after Azure's two are
// Fog's own and apply to the Automatic policy only.
type ReadWriteEndpoint struct {
	FailoverPolicy                         string `json:"failoverPolicy,omitempty"`
	FailoverWithDataLossGracePeriodMinutes *int   `json:"failoverWithDataLossGracePeriodMinutes,omitempty"`
	// MaxDataLossBytes and MaxDataLossSeconds are the data-loss budget: an automatic failover
	// does not happen when the secondary is further behind than either.
	MaxDataLossBytes   *int64 `json:"maxDataLossBytes,omitempty"`
	MaxDataLossSeconds *int   `json:"maxDataLossSeconds,omitempty"`
	// AutomaticFailoverMode is Enabled (the default) or ObserveOnly: the policy then only
	// records the failover it would start.
	AutomaticFailoverMode string `json:"automaticFailoverMode,omitempty"`
}

// ReadOnlyEndpoint is the read-only listener's policy.
type ReadOnlyEndpoint struct {
	FailoverPolicy string `json:"failoverPolicy,omitempty"`
}

// PartnerRegion is the other side's region and (in responses) its role.
type PartnerRegion struct {
	Location        string `json:"location,omitempty"`
	ReplicationRole string `json:"replicationRole,omitempty"`
}

// InstancePair names the current primary and its partner.
type InstancePair struct {
	PrimaryManagedInstanceID string `json:"primaryManagedInstanceId,omitempty"`
	PartnerManagedInstanceID string `json:"partnerManagedInstanceId,omitempty"`
}

// Listener is one listener's name and address (Fog's addition).
type Listener struct {
	FQDN string `json:"fullyQualifiedDomainName"`
	Host string `json:"host"`
	Port int    `json:"port"`
}

// Listeners are the group's two listeners.
type Listeners struct {
	ReadWrite Listener `json:"readWrite"`
	ReadOnly  Listener `json:"readOnly"`
}

// ReplicationStatus is Fog's addition to GET: how far behind the secondary is.
type ReplicationStatus struct {
	LagBytes               *int64     `json:"lagBytes,omitempty"`
	LagSeconds             *float64   `json:"lagSeconds,omitempty"`
	LastHardenedLSN        string     `json:"lastHardenedLsn,omitempty"`
	LastHardenedTime       *time.Time `json:"lastHardenedTime,omitempty"`
	SeedingPercentComplete *float64   `json:"seedingPercentComplete,omitempty"`
	// SeedSource is where the secondary's last seed came from: "repository" (a backup of
	// its region's repository, SeedBackup, plus the archived WAL, then streaming) or
	// "primary" (a copy from the primary, pg_basebackup). Read-only.
	SeedSource string `json:"seedSource,omitempty"`
	SeedBackup string `json:"seedBackup,omitempty"`
	// SeedFallback says why a seed from the primary did not come from the region's
	// repository (no backup of the stanza there, or the restore from it failed), in words.
	// Fog's own, read-only.
	SeedFallback string `json:"seedFallback,omitempty"`
	Epoch        int64  `json:"epoch"`
}

// LostWAL is the WAL a forced failover discarded and the transactions it held.
type LostWAL struct {
	FromLSN string `json:"fromLsn"`
	ToLSN   string `json:"toLsn"`
	Bytes   int64  `json:"bytes"`
	SavedIn string `json:"savedIn,omitempty"`
	// TransactionsLost is how many transactions committed in the range (nil: the WAL could
	// not be decoded, only its size is known); Transactions lists them with their commit
	// times and the relations they wrote.
	TransactionsLost *int              `json:"transactionsLost,omitempty"`
	Transactions     []LostTransaction `json:"transactions,omitempty"`
}

// LostTransaction is one committed transaction a forced failover lost.
type LostTransaction struct {
	XID        uint32    `json:"xid"`
	CommitTime time.Time `json:"commitTime"`
	Relations  []string  `json:"relations,omitempty"`
}

// Summary says what was lost in words: transactions when known, else bytes.
func (l *LostWAL) Summary() string {
	if l.TransactionsLost == nil {
		return fmt.Sprintf("%d bytes of WAL (%s to %s), not decoded: the transactions in it are unknown", l.Bytes, l.FromLSN, l.ToLSN)
	}
	n := *l.TransactionsLost
	s := fmt.Sprintf("%d transactions lost", n)
	if n == 1 {
		s = "1 transaction lost"
	}
	if n > 0 {
		var xids []string
		rels := map[string]bool{}
		var last time.Time
		for _, t := range l.Transactions {
			if len(xids) < 10 {
				xids = append(xids, fmt.Sprint(t.XID))
			}
			if t.CommitTime.After(last) {
				last = t.CommitTime
			}
			for _, r := range t.Relations {
				rels[r] = true
			}
		}
		if len(l.Transactions) > 10 {
			xids = append(xids, "...")
		}
		names := make([]string, 0, len(rels))
		for r := range rels {
			names = append(names, r)
		}
		sort.Strings(names)
		s += fmt.Sprintf(" (xids %s; last commit %s; relations %s)", strings.Join(xids, ", "), last.Format(time.RFC3339Nano), strings.Join(names, ", "))
	}
	return s + fmt.Sprintf(" in %d bytes of WAL (%s to %s)", l.Bytes, l.FromLSN, l.ToLSN)
}

// Event is a record of something that happened to a group.
type Event struct {
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	Message   string    `json:"message"`
	Initiator string    `json:"initiator,omitempty"`
	LostWAL   *LostWAL  `json:"lostWal,omitempty"`
}

// ForcedFailover is the last forced failover and what it lost, once known.
type ForcedFailover struct {
	Time time.Time `json:"time"`
	// OperationID is the forced failover's operation (its activity log entries).
	OperationID string   `json:"operationId,omitempty"`
	Epoch       int64    `json:"epoch"`
	LostWAL     *LostWAL `json:"lostWal,omitempty"`
	LostKnown   bool     `json:"lostWalKnown"`
}

// FailoverGroupProperties is the properties block of an instance failover group.
type FailoverGroupProperties struct {
	SecondaryType        string             `json:"secondaryType,omitempty"`
	ReadWriteEndpoint    *ReadWriteEndpoint `json:"readWriteEndpoint,omitempty"`
	ReadOnlyEndpoint     *ReadOnlyEndpoint  `json:"readOnlyEndpoint,omitempty"`
	ReplicationRole      string             `json:"replicationRole,omitempty"`
	ReplicationState     string             `json:"replicationState,omitempty"`
	PartnerRegions       []PartnerRegion    `json:"partnerRegions"`
	ManagedInstancePairs []InstancePair     `json:"managedInstancePairs"`
	// Fog's additions.
	Listeners          *Listeners         `json:"listeners,omitempty"`
	Replication        *ReplicationStatus `json:"replication,omitempty"`
	LastForcedFailover *ForcedFailover    `json:"lastForcedFailover,omitempty"`
	Warnings           []string           `json:"warnings,omitempty"`
	// Events is what happened to the group, newest last (Fog's addition): failovers, and what
	// the automatic policy saw and did, each with its initiator.
	Events []Event `json:"events,omitempty"`
}

// FailoverGroupJSON is the wire form of an instance failover group (a proxy resource: no
// location, tags or sku).
type FailoverGroupJSON struct {
	ID         string                  `json:"id,omitempty"`
	Name       string                  `json:"name,omitempty"`
	Type       string                  `json:"type,omitempty"`
	Properties FailoverGroupProperties `json:"properties"`
}

var fogNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateFailoverGroupName checks a group name: it becomes a DNS label of the listeners.
func ValidateFailoverGroupName(name string) error {
	if !fogNameRe.MatchString(name) {
		return fault.New(fault.Conflict, "InvalidFailoverGroupName",
			"Invalid Instance Failover Group name '%s': use 1 to 63 lowercase letters, digits and hyphens, not starting or ending with a hyphen (it becomes a DNS name).", name)
	}
	return nil
}

func fogErr(code, format string, args ...any) error {
	return fault.Invalid("InstanceFailoverGroupCreateOrUpdateRequest"+code, format, args...)
}

// FailoverGroupSpec is a validated PUT body.
type FailoverGroupSpec struct {
	ReadWritePolicy string
	GraceMinutes    *int
	MaxLossBytes    *int64
	MaxLossSeconds  *int
	ObserveOnly     bool
	ReadOnlyPolicy  string
	SecondaryType   string
	PartnerRegion   string
	PrimaryID       ParsedID
	PartnerID       ParsedID
}

// ParsedID is a managed-instance id and the form it was sent in.
type ParsedID struct {
	Raw                               string
	Subscription, ResourceGroup, Name string
}

// ValidateFailoverGroupBody checks a PUT body's shape and policy rules, with the codes the
// Microsoft.Sql resource provider uses. minGrace is the deployment's minimum grace period in
// minutes (Azure's MinGracePeriodMinutes unless an operator lowered it).
func ValidateFailoverGroupBody(b FailoverGroupJSON, minGrace int) (*FailoverGroupSpec, error) {
	p := b.Properties
	spec := &FailoverGroupSpec{ReadOnlyPolicy: "Disabled", SecondaryType: "Geo"}
	if p.ReadWriteEndpoint == nil {
		return nil, fogErr("InvalidReadWriteEndpoint", "The readWriteEndpoint field is required for create or update requests.")
	}
	rw := p.ReadWriteEndpoint
	if rw.FailoverPolicy == "" {
		return nil, fogErr("InvalidReadWriteFailoverPolicy", "The failoverPolicy field for the read-write endpoint is required for create or update requests: use Manual or Automatic.")
	}
	pol, ok := oneOf([]string{"Manual", "Automatic"}, rw.FailoverPolicy)
	if !ok {
		return nil, fogErr("InvalidReadWriteFailoverPolicy", "The read-write failoverPolicy '%s' is invalid: use Manual or Automatic.", rw.FailoverPolicy)
	}
	spec.ReadWritePolicy = pol
	g := rw.FailoverWithDataLossGracePeriodMinutes
	switch {
	case g != nil && *g < 0:
		return nil, fogErr("NegativeGracePeriodValues", "Grace period value for the read-write endpoint must be non-negative.")
	case pol == "Manual" && g != nil:
		return nil, fogErr("InvalidReadWriteEndpointFieldsForManualPolicy", "Grace period value should not be provided when failover policy Manual is selected for the read-write endpoint.")
	case pol == "Automatic" && g == nil:
		return nil, fogErr("InvalidReadWriteEndpointFields", "The property failoverWithDataLossGracePeriodMinutes must be provided when failover policy Automatic is selected for the read-write endpoint.")
	case pol == "Automatic" && *g < minGrace:
		return nil, fogErr("LessThanMinimumGracePeriodValues", "Grace period value for the instance failover group must be greater than or equal to the '%d' minutes minimum grace period.", minGrace)
	}
	spec.GraceMinutes = g
	if pol == "Manual" && (rw.MaxDataLossBytes != nil || rw.MaxDataLossSeconds != nil || rw.AutomaticFailoverMode != "") {
		return nil, fogErr("InvalidReadWriteEndpointFieldsForManualPolicy", "maxDataLossBytes, maxDataLossSeconds and automaticFailoverMode apply to the Automatic failover policy only; remove them or use Automatic.")
	}
	if (rw.MaxDataLossBytes != nil && *rw.MaxDataLossBytes < 0) || (rw.MaxDataLossSeconds != nil && *rw.MaxDataLossSeconds < 0) {
		return nil, fogErr("InvalidDataLossBudget", "maxDataLossBytes and maxDataLossSeconds must be non-negative (0 allows no loss at all).")
	}
	spec.MaxLossBytes, spec.MaxLossSeconds = rw.MaxDataLossBytes, rw.MaxDataLossSeconds
	if rw.AutomaticFailoverMode != "" {
		mode, ok := oneOf([]string{"Enabled", "ObserveOnly"}, rw.AutomaticFailoverMode)
		if !ok {
			return nil, fogErr("InvalidAutomaticFailoverMode", "automaticFailoverMode '%s' is invalid: use Enabled or ObserveOnly.", rw.AutomaticFailoverMode)
		}
		spec.ObserveOnly = mode == "ObserveOnly"
	}
	if p.ReadOnlyEndpoint != nil && p.ReadOnlyEndpoint.FailoverPolicy != "" {
		ro, ok := oneOf([]string{"Disabled", "Enabled"}, p.ReadOnlyEndpoint.FailoverPolicy)
		if !ok {
			return nil, fogErr("Invalid", "The read-only failoverPolicy '%s' is invalid: use Disabled or Enabled.", p.ReadOnlyEndpoint.FailoverPolicy)
		}
		spec.ReadOnlyPolicy = ro
	}
	if p.SecondaryType != "" {
		t, ok := oneOf([]string{"Geo", "Standby"}, p.SecondaryType)
		if !ok {
			return nil, fogErr("Invalid", "The secondaryType '%s' is invalid: use Geo (readable secondary) or Standby (DR only).", p.SecondaryType)
		}
		spec.SecondaryType = t
	}
	switch n := len(p.PartnerRegions); {
	case n == 0:
		return nil, fogErr("InvalidManagedInstanceRegion", "The provided partner managed instance region in the instance failover group request body is empty or invalid: send partnerRegions with one location.")
	case n > 1:
		return nil, fogErr("UnsupportedPartnerCount", "Only one partner region is supported.")
	}
	if strings.TrimSpace(p.PartnerRegions[0].Location) == "" {
		return nil, fogErr("InvalidManagedInstanceRegion", "The provided partner managed instance region in the instance failover group request body is empty or invalid.")
	}
	spec.PartnerRegion = p.PartnerRegions[0].Location
	switch n := len(p.ManagedInstancePairs); {
	case n == 0:
		return nil, fogErr("InvalidPrimary", "The given primary field in create or update instance failover group request body is empty or invalid: send managedInstancePairs with one pair.")
	case n > 1:
		return nil, fogErr("UnsupportedPairCount", "Only one managed instance pair is supported.")
	}
	pair := p.ManagedInstancePairs[0]
	pid, err := arm.ParseInstanceID(pair.PrimaryManagedInstanceID)
	if err != nil {
		return nil, fogErr("InvalidPrimary", "The given primary field in create or update instance failover group request body is empty or invalid: %v.", err)
	}
	sid, err := arm.ParseInstanceID(pair.PartnerManagedInstanceID)
	if err != nil {
		return nil, fogErr("InvalidPartner", "The given partners field in create or update instance failover group request body is empty or invalid: %v.", err)
	}
	spec.PrimaryID = ParsedID{Raw: pair.PrimaryManagedInstanceID, Subscription: pid.Subscription, ResourceGroup: pid.ResourceGroup, Name: pid.Name}
	spec.PartnerID = ParsedID{Raw: pair.PartnerManagedInstanceID, Subscription: sid.Subscription, ResourceGroup: sid.ResourceGroup, Name: sid.Name}
	if strings.EqualFold(spec.PrimaryID.Subscription, spec.PartnerID.Subscription) &&
		strings.EqualFold(spec.PrimaryID.ResourceGroup, spec.PartnerID.ResourceGroup) &&
		strings.EqualFold(spec.PrimaryID.Name, spec.PartnerID.Name) {
		return nil, fogErr("DuplicatePartner", "One or more of the provided partner servers are already part of the instance failover group. Please make sure the primary server and all of the given partner servers are unique.")
	}
	return spec, nil
}
