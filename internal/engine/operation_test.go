package engine

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/fault"
)

// TestReasonKeepsStatus: the reason a rolled-back operation failed is read back from its
// stored record, by a resumed runner, with the status the client was told at first.
func TestReasonKeepsStatus(t *testing.T) {
	var op Operation
	op.setReason(fault.Invalid("PlannedFailoverTimedOut", "it timed out"))
	b, err := json.Marshal(op)
	if err != nil {
		t.Fatal(err)
	}
	var back Operation
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	var ae *arm.Error
	if !errors.As(back.reason(), &ae) {
		t.Fatalf("reason %v is not an arm.Error", back.reason())
	}
	if ae.Status != http.StatusBadRequest || ae.Code != "PlannedFailoverTimedOut" || ae.Message != "it timed out" {
		t.Errorf("reason read back = %d %s %q, want 400 PlannedFailoverTimedOut %q", ae.Status, ae.Code, ae.Message, "it timed out")
	}
	if (&Operation{}).reason() != nil {
		t.Error("an operation without a reason reports one")
	}
}
