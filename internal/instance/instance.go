// Package instance is the contract between the control plane and the regional agents: the
// desired state of one PostgreSQL instance that the control plane writes, the observed state
// an agent reports back, and one-shot commands (create or drop a database) an agent carries out.
package instance

import "time"

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
}

// Phases an agent reports.
const (
	PhaseCreating = "Creating"
	PhaseReady    = "Ready"
	PhaseStopped  = "Stopped"
	PhaseFailed   = "Failed"
	PhaseDeleted  = "Deleted"
)

// Status is the observed state of an instance, written only by its agent.
type Status struct {
	UID                string    `json:"uid"`
	ObservedGeneration int64     `json:"observedGeneration"`
	Phase              string    `json:"phase"`
	Error              string    `json:"error,omitempty"`
	Databases          []DB      `json:"databases"`
	ServerVersion      string    `json:"serverVersion,omitempty"`
	Heartbeat          time.Time `json:"heartbeat"`
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
)

// Command is a one-shot request to an agent. Databases are commands, not desired state,
// because users also create and drop them with SQL: the agent must neither recreate a database
// a user dropped nor drop one a user created.
type Command struct {
	ID          string    `json:"id"`
	InstanceUID string    `json:"instanceUid"`
	Kind        string    `json:"kind"`
	Database    string    `json:"database,omitempty"`
	Owner       string    `json:"owner,omitempty"`
	Done        bool      `json:"done"`
	Error       string    `json:"error,omitempty"`
	Created     time.Time `json:"created"`
}

// Store keys.
func SpecKey(region, uid string) string   { return "desired/" + region + "/" + uid }
func StatusKey(region, uid string) string { return "observed/" + region + "/" + uid }
func CommandKey(region, id string) string { return "commands/" + region + "/" + id }
func SpecPrefix(region string) string     { return "desired/" + region + "/" }
func CommandPrefix(region string) string  { return "commands/" + region + "/" }
