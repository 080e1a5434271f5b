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
}

// Terminal reports whether s is a final status.
func Terminal(s string) bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCanceled
}
