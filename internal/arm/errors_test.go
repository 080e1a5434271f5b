package arm

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/fogdb/fog/internal/fault"
	"github.com/google/go-cmp/cmp"
)

func TestFromError(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want *Error
	}{
		{"nil", nil, nil},
		{"fault", fmt.Errorf("put: %w", fault.New(fault.Conflict, "NameAlreadyExists", "'%s' is taken.", "mi1")),
			&Error{Status: http.StatusConflict, Code: "NameAlreadyExists", Message: "'mi1' is taken."}},
		{"busy", fault.Busy("busy; retry."), &Error{Status: http.StatusConflict, Code: "InstanceFailoverGroupBusy", Message: "busy; retry."}},
		{"invalid", fault.Invalid("InvalidSku", "no"), &Error{Status: http.StatusBadRequest, Code: "InvalidSku", Message: "no"}},
		{"arm", Errorf(http.StatusTooManyRequests, "TooManyRequests", "slow down"), &Error{Status: http.StatusTooManyRequests, Code: "TooManyRequests", Message: "slow down"}},
		{"other", errors.New("secret internal detail"), &Error{Status: http.StatusInternalServerError, Code: "InternalServerError",
			Message: "Fog could not complete the request. Retry; if it persists, check the fog log."}},
	} {
		if diff := cmp.Diff(c.want, FromError(c.err)); diff != "" {
			t.Errorf("%s: FromError(%v) mismatch (-want +got):\n%s", c.name, c.err, diff)
		}
	}
}
