package engine

import (
	"time"

	"github.com/fogdb/fog/internal/arm"
)

// Operation kinds. The engine runs each from its table (Tables), but for an update of a
// failover group, which ends in the transaction that accepts it, and a database's short-term
// retention policy, which is accepted finished. The names are stored.
const (
	KindPutInstance    = "putInstance"
	KindDeleteInstance = "deleteInstance"
	KindPutDatabase    = "putDatabase"
	KindDeleteDatabase = "deleteDatabase"
	// KindRestoreDatabase restores a database to a point in time as a new database.
	KindRestoreDatabase = "restoreDatabase"
	KindCreateGroup     = "createGroup"
	KindUpdateGroup     = "updateGroup"
	KindDeleteGroup     = "deleteGroup"
	KindFailover        = "failover"
	KindForceFailover   = "forceFailover"
	// KindPutRetention is a PUT of a database's short-term retention policy: Azure answers it
	// as a long-running operation, and Fog's ends in the transaction that accepts it, which
	// writes the policy, the instance's retention and its desired state together (the agent
	// applies the retention at its next expiry, after a backup).
	KindPutRetention = "putShortTermRetention"
)

// Initiators of operations.
const (
	InitiatorUser   = "user"
	InitiatorSystem = "system"
)

// Operation is a long-running operation as stored: enough to serve its status URL and its
// result URL, and to resume driving it after a restart. Its JSON is what operations in flight
// across an upgrade are read back from: fields are only ever added.
type Operation struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Kind         string `json:"kind"`
	Subscription string `json:"subscription"`
	// ResourceGroup is the addressed resource group of a failover-group operation.
	ResourceGroup string     `json:"resourceGroup,omitempty"`
	Location      string     `json:"location"`
	ResourceID    string     `json:"resourceId"`
	InstanceKey   string     `json:"instanceKey"`
	InstanceUID   string     `json:"instanceUid"`
	Region        string     `json:"region"`
	Generation    int64      `json:"generation,omitempty"`
	Create        bool       `json:"create,omitempty"`
	Database      string     `json:"database,omitempty"`
	CommandID     string     `json:"commandId,omitempty"`
	Status        string     `json:"status"`
	Error         *arm.Error `json:"error,omitempty"`
	ErrorStatus   int        `json:"errorStatus,omitempty"`
	StartTime     time.Time  `json:"startTime"`
	EndTime       *time.Time `json:"endTime,omitempty"`
	Percent       *float64   `json:"percent,omitempty"`

	// Failover record (see the package documentation): the side the user asked to become
	// primary, the epoch the operation created, and the last step reached, each written in
	// the same transaction as that step's effect.
	Target int `json:"target,omitempty"`
	// Initiator is who started the operation: InitiatorUser, or InitiatorSystem for the
	// automatic failover policy.
	Initiator  string `json:"initiator,omitempty"`
	Epoch      int64  `json:"epoch,omitempty"`
	Step       string `json:"step,omitempty"`
	DrainedLSN string `json:"drainedLsn,omitempty"`
	Seeded     int64  `json:"seeded,omitempty"`
	// Reason is why a rolled-back operation failed, kept for a resumed driver to report, and
	// ReasonStatus its HTTP status (an arm.Error's status is not part of its JSON).
	Reason       *arm.Error `json:"reason,omitempty"`
	ReasonStatus int        `json:"reasonStatus,omitempty"`
	// Timeline is when each step was reached (and what was observed between them).
	Timeline []arm.StepTime `json:"timeline,omitempty"`
}

// InitiatedBy is who started op ("user" for operations recorded before it was kept).
func (o *Operation) InitiatedBy() string {
	if o.Initiator == "" {
		return InitiatorUser
	}
	return o.Initiator
}

// setReason records why the operation fails, as the client is told it.
func (o *Operation) setReason(err error) {
	rec := arm.FromError(err)
	o.Reason, o.ReasonStatus = rec, rec.Status
}

// reason is the recorded reason the operation fails, with its status, or nil.
func (o *Operation) reason() error {
	if o.Reason == nil {
		return nil
	}
	r := *o.Reason
	if r.Status == 0 {
		r.Status = o.ReasonStatus
	}
	return &r
}

// Mark notes that the operation reached step now; it is stored with the next step.
func (o *Operation) Mark(step string) {
	o.Timeline = append(o.Timeline, arm.StepTime{Step: step, At: time.Now().UTC()})
}

// GroupOp reports whether the operation holds its failover group's operation mark.
func (o *Operation) GroupOp() bool {
	switch o.Kind {
	case KindCreateGroup, KindUpdateGroup, KindDeleteGroup, KindFailover, KindForceFailover:
		return true
	}
	return false
}

// StatusBody is the operation as the Azure-AsyncOperation URL serves it.
func (o *Operation) StatusBody() arm.OperationStatus {
	s := arm.OperationStatus{Name: o.ID, Status: o.Status, StartTime: o.StartTime, EndTime: o.EndTime, Error: o.Error, PercentComplete: o.Percent}
	if len(o.Timeline) > 0 {
		s.Properties = &arm.OperationProperties{Steps: o.Timeline}
	}
	return s
}

// Terminal reports whether the operation has finished.
func (o *Operation) Terminal() bool { return arm.Terminal(o.Status) }

// OpKey is the store key of operation id.
func OpKey(id string) string { return "ops/" + id }

// OpPrefix is the store prefix of every operation.
const OpPrefix = "ops/"
