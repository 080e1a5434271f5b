package arm

import (
	"time"
)

// Operation statuses of the ARM async-operation protocol; azcore treats Succeeded, Failed and
// Canceled as terminal.
const (
	StatusInProgress = "InProgress"
	StatusSucceeded  = "Succeeded"
	StatusFailed     = "Failed"
	StatusCanceled   = "Canceled"
)

// OperationStatus is the body served at an Azure-AsyncOperation URL.
type OperationStatus struct {
	ID              string     `json:"id,omitempty"`
	Name            string     `json:"name"`
	Status          string     `json:"status"`
	StartTime       time.Time  `json:"startTime"`
	EndTime         *time.Time `json:"endTime,omitempty"`
	PercentComplete *float64   `json:"percentComplete,omitempty"`
	Error           *Error     `json:"error,omitempty"`
	// Properties carries Fog's extras (a failover's steps with their times); Azure's
	// operation status has the same optional field.
	Properties *OperationProperties `json:"properties,omitempty"`
}

// OperationProperties are Fog's additions to an operation's status.
type OperationProperties struct {
	Steps []StepTime `json:"steps,omitempty"`
}

// StepTime is when an operation reached a step.
type StepTime struct {
	Step string    `json:"step"`
	At   time.Time `json:"at"`
}

// Terminal reports whether s is a final status.
func Terminal(s string) bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCanceled
}
