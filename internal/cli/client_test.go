package cli

import (
	"errors"
	"testing"
)

// A 404 marked by a show command exits with 3; unmarked, with 1.
func TestShownExitCode(t *testing.T) {
	nf := &APIError{Status: 404, Code: "ResourceNotFound", Message: "no"}
	if got := ExitCode(shown(nf)); got != 3 {
		t.Errorf("ExitCode(shown(404)) = %d, want 3", got)
	}
	if got := ExitCode(nf); got != 1 {
		t.Errorf("ExitCode(404) = %d, want 1", got)
	}
	var ae *APIError
	if err := shown(nf); !errors.As(err, &ae) || err.Error() != "(ResourceNotFound) no" {
		t.Errorf("shown(404) = %v, want the API error as it was", err)
	}
}
