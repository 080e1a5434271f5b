// Package instance is the contract between the control plane and the regional agents: the
// desired state of one PostgreSQL instance that the control plane writes, the observed state
// an agent reports back, and one-shot commands (create or drop a database) an agent carries out.
//
// # Why a failover's procedure is desired state, not commands
//
// Spec carries, beside what an instance is (role, epoch, upstream), how the current step of a
// failover wants it reached: Paused and StopImmediately (fence a demoted primary, skipping
// the shutdown checkpoint when forced), Drain, PromoteAfterLSN (promote only after the
// drained primary's last client commit arrived), Rewind and KeepLostWAL (a former primary
// rewinds, keeping its lost WAL aside). They stay in Spec, and are not commands of the
// operation, for three reasons:
//
//   - They are written in the one transaction that moves the group to the step, together with
//     the epoch and role they qualify, so an agent never sees one without the other. The
//     lease keeper's claims and fences are guarded by the revision of this key (lease.Claim),
//     and an agent refuses a spec of a lower epoch than it has seen, so a flag is superseded
//     the moment its epoch is. A command under its own key would have no such order: a
//     StopImmediately sent for a forced failover that was rolled back could still stop the
//     primary the rollback restored.
//   - They are level-triggered. An agent killed at any point reads the spec again and compares
//     it with what it observes and has reported (Status.Epoch, DrainedLSN, Rewound.Epoch), so
//     every transition is done once and redone safely; a one-shot command would need its own
//     acknowledgement and replay rules, and a new epoch would have to cancel it.
//   - They cannot linger: each step writes the whole spec of the next epoch, which clears
//     what the last step asked for.
//
// Commands are for what is not a state of the instance: creating, dropping or restoring a
// database.
// Package agent's transition table says, for each flag, what the agent checks first, does and
// publishes.
package instance

import (
	"strings"
	"time"

	"github.com/fogdb/fog/internal/ltr"
	"github.com/fogdb/fog/internal/pgtypes"
)

// Spec is the desired state of an instance. The agent of Region reconciles PostgreSQL to it.
type Spec struct {
	UID        string `json:"uid"`
	Name       string `json:"name"`
	Region     string `json:"region"`
	Generation int64  `json:"generation"`
	Host       string `json:"host"`
	Port       int    `json:"port"`
	// Locale is the cluster's initdb locale; Timezone an IANA name.
	Locale   string `json:"locale"`
	Timezone string `json:"timezone"`
	// AdminLogin's password is held only as a SCRAM-SHA-256 verifier.
	AdminLogin    string `json:"adminLogin"`
	AdminVerifier string `json:"adminVerifier"`
	// DNSNames go into the server certificate beside Host.
	DNSNames []string `json:"dnsNames"`
	VCores   int      `json:"vCores"`
	// Deleted asks the agent to stop the instance and remove its data.
	Deleted bool `json:"deleted"`

	// Replication, set while the instance is in a failover group.
	Role  string `json:"role,omitempty"` // "" (standalone), RolePrimary or RoleStandby
	Epoch int64  `json:"epoch,omitempty"`
	// GroupID identifies the failover group Epoch counts in: an agent refuses desired state
	// of a lower epoch of the same group than it has already seen.
	GroupID string `json:"groupId,omitempty"`
	// Upstream is the primary a standby streams from.
	Upstream *Upstream `json:"upstream,omitempty"`
	// Paused keeps the instance shut down: the fence of a demoted primary. StopImmediately
	// skips the shutdown checkpoint (forced failover).
	Paused          bool `json:"paused,omitempty"`
	StopImmediately bool `json:"stopImmediately,omitempty"`
	// Drain fences a primary for a planned failover without stopping it: new client
	// connections are refused and client sessions ended, so no client can commit, while the
	// server keeps running and its WAL sender ships everything to the standby. The agent then
	// reports DrainedLSN, the end of the WAL any client could have written.
	Drain bool `json:"drain,omitempty"`
	// KeepLostWAL keeps a rewound former primary's WAL aside (forced failover: it may hold
	// commits the new primary never had).
	KeepLostWAL bool `json:"keepLostWal,omitempty"`
	// PromoteAfterLSN holds a promotion until the standby has received WAL up to this LSN (a
	// drained old primary's end of client WAL), so a planned failover loses nothing.
	PromoteAfterLSN string `json:"promoteAfterLsn,omitempty"`
	// Rewind tells a former primary to rewind to its upstream's timeline before following it.
	Rewind bool `json:"rewind,omitempty"`
	// Slots are the physical slots a primary keeps for its standbys.
	Slots []string `json:"slots,omitempty"`
	// SeedGeneration: a standby whose SeededGeneration is lower is seeded again.
	SeedGeneration int64 `json:"seedGeneration,omitempty"`
	// Peer is the other instance of the failover group, on either side: the only one whose
	// replication certificate pg_hba.conf admits, from the addresses it publishes (Egress).
	Peer *Peer `json:"peer,omitempty"`
	// ExtraIPs go into the server certificate (listener addresses).
	ExtraIPs []string `json:"extraIps,omitempty"`
	// Link describes the failover group for the link-status view.
	Link *Link `json:"link,omitempty"`
	// Backup is the instance's backups: WAL archived continuously into its region's
	// repository, and backups taken when asked (nil: none, as for a spec an older Fog wrote).
	Backup *BackupSpec `json:"backup,omitempty"`
	// BackupKeep are the full backups long-term retention keeps in the region's repository,
	// by pgBackRest label, each until its time: the agent's expiry after each backup leaves
	// them (without their differential backups) while that time is ahead.
	BackupKeep []ltr.Keep `json:"backupKeep,omitempty"`
}

// BackupSpec is what the control plane asks of an instance's backups (docs/backups.md).
type BackupSpec struct {
	// Stanza names the backup history in the repository. Both members of a failover group are
	// one PostgreSQL system and share one stanza, each member writing it into its own
	// region's repository.
	Stanza string `json:"stanza"`
	// RetentionDays keeps every point in time of that many days restorable (pgBackRest's
	// time-based retention of full backups).
	RetentionDays int `json:"retentionDays"`
	// Seq asks for a backup of Type when it is above Status.Backup.Seq: the agent takes one
	// backup per sequence number, and a crash redoes it (pgBackRest resumes what it copied).
	Seq  int64  `json:"seq,omitempty"`
	Type string `json:"type,omitempty"` // BackupFull or BackupDiff
}

// Backup types.
const (
	BackupFull = "full"
	BackupDiff = "diff"
)

// Peer is an instance's failover-group partner.
type Peer struct {
	UID    string `json:"uid"`
	Region string `json:"region"`
	Host   string `json:"host"`
	Port   int    `json:"port"`
}

// Roles.
const (
	RolePrimary = "primary"
	RoleStandby = "standby"
)

// Upstream is where a standby streams from.
type Upstream struct {
	UID    string `json:"uid"`
	Region string `json:"region"`
	Host   string `json:"host"`
	Port   int    `json:"port"`
	Slot   string `json:"slot"`
}

// Link names a failover group and its members.
type Link struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	PrimaryName   string `json:"primaryName"`
	SecondaryName string `json:"secondaryName"`
	SecondaryType string `json:"secondaryType"`
}

// SlotName is the replication slot of a standby instance.
func SlotName(uid string) string {
	return "fog_" + strings.ReplaceAll(uid, "-", "")
}

// Phases an agent reports.
const (
	PhaseCreating = "Creating"
	PhaseReady    = "Ready"
	PhaseStopped  = "Stopped"
	PhaseDrained  = "Drained" // running, accepting no client (Spec.Drain)
	PhaseFailed   = "Failed"
	PhaseDeleted  = "Deleted"
)

// Reasons an agent reports in Status.Reason.
const (
	// ReasonNotCaughtUp: a standby told to promote after an LSN did not receive WAL up to it.
	ReasonNotCaughtUp = "NotCaughtUp"
	// ReasonNoLease: the agent does not hold the lease a primary of the spec's epoch needs.
	ReasonNoLease = "NoLease"
	// ReasonStaleEpoch: the spec is of an older epoch than the instance has seen.
	ReasonStaleEpoch = "StaleEpoch"
)

// Status is the observed state of an instance, written only by its agent.
type Status struct {
	UID                string `json:"uid"`
	ObservedGeneration int64  `json:"observedGeneration"`
	Phase              string `json:"phase"`
	Error              string `json:"error,omitempty"`
	// Reason is, when the agent is not acting on the spec for a cause a step of the control
	// plane waits on, that cause as one of the Reason constants; Error says it to a person.
	Reason        string    `json:"reason,omitempty"`
	Databases     []DB      `json:"databases"`
	ServerVersion string    `json:"serverVersion,omitempty"`
	Heartbeat     time.Time `json:"heartbeat"`
	// LeaseIncarnation is the agent's lease incarnation when it published this (the control
	// plane trusts it as news of now only while the lease has that incarnation).
	LeaseIncarnation int64 `json:"leaseIncarnation,omitempty"`

	// Role is what the server is: RolePrimary (accepts writes) or RoleStandby (in recovery).
	Role string `json:"role,omitempty"`
	// Epoch is the spec epoch the role was reached in.
	Epoch int64 `json:"epoch,omitempty"`
	// DrainedLSN is, on a drained primary (Spec.Drain), the flushed end of WAL after every
	// client session ended: every commit a client was told of lies before it.
	DrainedLSN string `json:"drainedLsn,omitempty"`
	// PromotedFrom is the end of the old timeline: where this server's history diverged.
	PromotedFrom string `json:"promotedFrom,omitempty"`
	// Seeding progress of a standby, and the seed generation it completed.
	SeedPercent      *float64  `json:"seedPercent,omitempty"`
	SeededGeneration int64     `json:"seededGeneration,omitempty"`
	SeededAt         time.Time `json:"seededAt"`
	// SeedSource is where the last seed (or the one under way) copied the data from:
	// SeedFromRepository (SeedBackup names the backup of the region's repository it
	// restored) or SeedFromPrimary (pg_basebackup). SeedFallback says why a seed that could
	// have come from the repository did not.
	SeedSource   string `json:"seedSource,omitempty"`
	SeedBackup   string `json:"seedBackup,omitempty"`
	SeedFallback string `json:"seedFallback,omitempty"`
	// Rewound reports the WAL a rewind discarded, for the epoch it happened in.
	Rewound *LostWAL `json:"rewound,omitempty"`
	// Replication is the server's own view, refreshed on every resync.
	Replication *pgtypes.Replication `json:"replication,omitempty"`
	// Egress is the source address this instance's connections to its peer come from (the
	// peer's pg_hba.conf admits replication from it).
	Egress []string `json:"egress,omitempty"`
	// Backup is the state of the instance's backups and WAL archive in its region's
	// repository (nil: backups are off).
	Backup *BackupStatus `json:"backup,omitempty"`
	// Dropped are the databases dropped from the instance while it was a primary with
	// backups, within its retention: what restorableDroppedDatabases lists.
	Dropped []DroppedDB `json:"dropped,omitempty"`
}

// Seed sources (Status.SeedSource).
const (
	SeedFromRepository = "repository"
	SeedFromPrimary    = "primary"
)

// DroppedDB is a database dropped from an instance, as its agent found the drop in the
// instance's WAL.
type DroppedDB struct {
	Name    string    `json:"name"`
	OID     uint32    `json:"oid"`
	Created time.Time `json:"created"`
	// Deleted is when the drop committed. LSN is where its drop record is: a restore of the
	// database as it was when dropped stops just before it (PostgreSQL removes the files at
	// that record, ahead of the commit).
	Deleted time.Time `json:"deleted"`
	LSN     string    `json:"lsn"`
}

// BackupStatus is an instance's backups and archive as its agent last saw them.
type BackupStatus struct {
	// Stanza is the stanza the repository holds for this instance, once it exists there.
	Stanza string `json:"stanza,omitempty"`
	// Seq is the last Spec.Backup.Seq the agent carried out (with Error if it failed).
	Seq   int64  `json:"seq,omitempty"`
	Error string `json:"error,omitempty"`
	// Running is the sequence number of a backup under way.
	Running int64 `json:"running,omitempty"`
	// Backups are the stanza's backups in this region's repository, oldest first.
	Backups []Backup `json:"backups,omitempty"`
	// Archive is WAL archiving's state.
	Archive Archive `json:"archive"`
	// Health is BackupHealthy, or BackupDegraded with Error or Archive.Error saying why.
	Health string `json:"health,omitempty"`
	// CheckedAt is when the repository was last read.
	CheckedAt time.Time `json:"checkedAt"`
	// Verify is the last verification of the repository (pgBackRest's verify, after each
	// backup): nil before the first.
	Verify *BackupVerify `json:"verify,omitempty"`
	// Cancelled: the backup Seq names did not fail, it was stopped (the instance was
	// promoted, demoted, stopped or drained); the schedule asks again at once.
	Cancelled bool `json:"cancelled,omitempty"`
	// Served is set while a group's primary serves its partner's backups (docs/backups.md):
	// what the standby's member needs to take its region's backups from the standby.
	Served *BackupServed `json:"served,omitempty"`
	// Repository is where the stanza's backups go in this region.
	Repository *BackupRepository `json:"repository,omitempty"`
}

// BackupRepository is where an instance's backups go in its region, without any credential.
type BackupRepository struct {
	// Type is "posix" (a directory, Path, on the agent's machine) or "azure" (Container in
	// storage Account).
	Type      string `json:"type"`
	Path      string `json:"path,omitempty"`
	Account   string `json:"account,omitempty"`
	Container string `json:"container,omitempty"`
	// CredentialExpiry is when the credential in the instance's configuration expires (a
	// SAS); the agent renews it well before.
	CredentialExpiry time.Time `json:"credentialExpiry,omitzero"`
}

// BackupServed is the pgBackRest TLS server a group's primary runs, as its own OS user, for
// its partner: where it listens, and the primary's paths that the standby's backup names
// (pg1-path, pg1-socket-path, pg1-host-config must be the primary's own).
type BackupServed struct {
	Host string `json:"host"`
	// Port is the TLS server's (BackupServerPort of the instance's); PGPort PostgreSQL's.
	Port   int    `json:"port"`
	PGPort int    `json:"pgPort"`
	Stanza string `json:"stanza"`
	// DataDir, SocketDir and Config are paths on the primary's machine.
	DataDir   string `json:"dataDir"`
	SocketDir string `json:"socketDir"`
	Config    string `json:"config"`
}

// BackupServerPort is the port of the pgBackRest TLS server of an instance on port: on the
// instance's own address, 1000 above its PostgreSQL port (an agent's --port-range spans at
// most 1000 ports, so it is no instance's or listener's).
func BackupServerPort(port int) int { return port + 1000 }

// BackupVerify is a verification of the stanza's backups and WAL archive in a repository:
// every file's checksum and size, and the WAL each backup needs.
type BackupVerify struct {
	At time.Time `json:"at"`
	// Seq is the backup it followed.
	Seq int64 `json:"seq"`
	// Error is what it found wrong ("": everything is valid).
	Error string `json:"error,omitempty"`
}

// Backup is one backup in a repository.
type Backup struct {
	Label string `json:"label"`
	Type  string `json:"type"` // BackupFull or BackupDiff (or pgBackRest's "incr")
	// Start and Stop are when it began and ended; a restore can reach any time from Stop.
	Start time.Time `json:"start"`
	Stop  time.Time `json:"stop"`
	// Size is the data it covers, RepoSize what it adds to the repository (compressed).
	Size     int64 `json:"size"`
	RepoSize int64 `json:"repoSize"`
	// WALStart and WALStop are the first and last WAL segments it needs.
	WALStart string `json:"walStart"`
	WALStop  string `json:"walStop"`
	// Seq is the sequence number it was taken for (0: not one of Fog's schedule).
	Seq int64 `json:"seq,omitempty"`
}

// Archive is the state of an instance's WAL archiving (pg_stat_archiver).
type Archive struct {
	LastArchivedWAL string    `json:"lastArchivedWal,omitempty"`
	LastArchivedAt  time.Time `json:"lastArchivedAt"`
	LastFailedWAL   string    `json:"lastFailedWal,omitempty"`
	LastFailedAt    time.Time `json:"lastFailedAt"`
	// DroppedAt is when WAL was last dropped from the bounded push queue (the repository
	// was unreachable too long), DroppedWAL the segment: the archive has a gap there, which
	// stays open until a backup ends after it (Gap).
	DroppedAt  time.Time `json:"droppedAt"`
	DroppedWAL string    `json:"droppedWal,omitempty"`
	Gap        bool      `json:"gap,omitempty"`
	// Error is why archiving is unhealthy: the last push failed after the last success, or
	// the archive has a gap.
	Error string `json:"error,omitempty"`
}

// Backup health.
const (
	BackupHealthy  = "Healthy"
	BackupDegraded = "Degraded"
)

// LostWAL is a WAL range a forced failover discarded.
type LostWAL struct {
	Epoch   int64  `json:"epoch"`
	FromLSN string `json:"fromLsn"`
	ToLSN   string `json:"toLsn"`
	Bytes   int64  `json:"bytes"`
	SavedIn string `json:"savedIn,omitempty"`
	// Decoded: pg_waldump read the range before the rewind; Committed and Aborted count the
	// transactions that committed and aborted there, Transactions lists the committed ones
	// (the first MaxLostListed).
	Decoded      bool              `json:"decoded,omitempty"`
	Committed    int               `json:"committed"`
	Aborted      int               `json:"aborted,omitempty"`
	Transactions []LostTransaction `json:"transactions,omitempty"`
	// Resolved: the relations are named from the rewound instance's catalogs.
	Resolved bool `json:"resolved,omitempty"`
}

// MaxLostListed is how many lost transactions a report lists; the count is always exact.
const MaxLostListed = 1000

// LostTransaction is a transaction that committed on a former primary in the WAL a forced
// failover discarded.
type LostTransaction struct {
	XID        uint32    `json:"xid"`
	CommitTime time.Time `json:"commitTime"`
	Relations  []string  `json:"relations,omitempty"`
}

// DB is one user database as the agent saw it.
type DB struct {
	Name      string    `json:"name"`
	Collation string    `json:"collation"`
	Created   time.Time `json:"created"`
}

// Command kinds.
const (
	CmdCreateDatabase = "createDatabase"
	CmdDropDatabase   = "dropDatabase"
	CmdRefresh        = "refresh"
	CmdCheckpoint     = "checkpoint"
	CmdCheckReach     = "checkReach"
	// CmdRestoreDatabase restores SourceDatabase of the instance's backups as it was at Time
	// into a new database named Database, owned by Owner, in the same instance. It runs for
	// minutes: the agent publishes Progress on the command while it runs and sets Done (with
	// Error if it failed) when it ends; deleting the command before that cancels it, and the
	// agent then removes what it made. docs/backups.md has the steps.
	CmdRestoreDatabase = "restoreDatabase"
)

// Command is a one-shot request to an agent. Databases are commands, not desired state,
// because users also create and drop them with SQL: the agent must neither recreate a database
// a user dropped nor drop one a user created.
type Command struct {
	ID          string `json:"id"`
	InstanceUID string `json:"instanceUid"`
	Kind        string `json:"kind"`
	Database    string `json:"database,omitempty"`
	// Target is a host:port for CmdCheckReach.
	Target string `json:"target,omitempty"`
	Owner  string `json:"owner,omitempty"`
	// SourceDatabase and Time are what CmdRestoreDatabase restores: that database as it was
	// at that time (UTC), restored as Database.
	SourceDatabase string    `json:"sourceDatabase,omitempty"`
	Time           time.Time `json:"time,omitzero"`
	// Latest restores SourceDatabase to the end of the WAL archived in this region's
	// repository instead of to Time (geo-restore, Azure's createMode Recovery: the source's
	// region may be gone).
	Latest bool `json:"latest,omitempty"`
	// SourceInstanceUID is the instance whose backups hold SourceDatabase, when it is not
	// InstanceUID (the restore's target): another instance of the same region.
	SourceInstanceUID string `json:"sourceInstanceUid,omitempty"`
	// DropLSN and Dropped, for a source database that was dropped: its drop record's LSN
	// and the drop's commit time (DroppedDB). A Time not before Dropped restores the
	// database as it was when dropped.
	DropLSN string    `json:"dropLsn,omitempty"`
	Dropped time.Time `json:"dropped,omitzero"`
	// BackupSet, for CmdRestoreDatabase, restores SourceDatabase as it was at the end of
	// that backup (a pgBackRest label: a long-term retention backup) rather than at Time,
	// which is then the backup's end, for the record.
	BackupSet string `json:"backupSet,omitempty"`
	// Progress is how far a long command has come, 0 to 100.
	Progress float64 `json:"progress,omitempty"`
	// Restored: a CmdRestoreDatabase's database is in the instance. The instance's worker
	// ends the command (Done) once it has published an observation that lists it, so the
	// operation never succeeds before the new database can be read.
	Restored bool      `json:"restored,omitempty"`
	Done     bool      `json:"done"`
	Error    string    `json:"error,omitempty"`
	Created  time.Time `json:"created"`
}

// Store keys.
func SpecKey(region, uid string) string   { return "desired/" + region + "/" + uid }
func StatusKey(region, uid string) string { return "observed/" + region + "/" + uid }
func CommandKey(region, id string) string { return "commands/" + region + "/" + id }
func SpecPrefix(region string) string     { return "desired/" + region + "/" }
func CommandPrefix(region string) string  { return "commands/" + region + "/" }

// AgentKey is the store key of a region's agent record.
func AgentKey(region string) string { return "agents/" + region }

// AgentRecord is what a region's agent tells the control plane about its machine when it
// starts: the addresses it hands to instances and listeners. Addresses are the agent's
// configuration (--address-range), never probed by the server.
type AgentRecord struct {
	Region string `json:"region"`
	// AddressFirst and AddressLast bound the addresses of the region's instances and
	// listeners, and Port to PortLast (PortLast 0: Port alone) their ports: each instance and
	// listener gets an address and port pair of its own, every address on Port first.
	AddressFirst string `json:"addressFirst"`
	AddressLast  string `json:"addressLast"`
	Port         int    `json:"port"`
	PortLast     int    `json:"portLast,omitempty"`
	// Advertise is the address other machines reach this agent's machine at.
	Advertise string    `json:"advertise,omitempty"`
	Hostname  string    `json:"hostname,omitempty"`
	Started   time.Time `json:"started"`
}

// ClusterKey is the store key of the settings every agent needs from the control plane.
const ClusterKey = "cluster/config"

// DefaultDNSSuffix is the DNS suffix of instance and listener names when the deployment
// names none (`--dns-suffix`).
const DefaultDNSSuffix = "database.fog.internal"

// ClusterConfig are the deployment's settings that agents follow; the server writes them
// when it starts.
type ClusterConfig struct {
	Regions   []string      `json:"regions"`
	DNSSuffix string        `json:"dnsSuffix"`
	LeaseTTL  time.Duration `json:"leaseTtl"`
}
