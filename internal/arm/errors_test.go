package arm

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
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
	} {
		if diff := cmp.Diff(c.want, FromError(c.err)); diff != "" {
			t.Errorf("%s: FromError(%v) mismatch (-want +got):\n%s", c.name, c.err, diff)
		}
	}
	// A failure of Fog's own, and an error of no known kind, are told by an error id only.
	for _, err := range []error{errors.New("secret internal detail"), fault.Failure("InternalServerError", "Fog could not complete the request", errors.New("secret internal detail"))} {
		got := FromError(err)
		if got.Status != http.StatusInternalServerError || got.Code != "InternalServerError" || !failureMessage.MatchString(got.Message) {
			t.Errorf("FromError(%v) = %+v, want a 500 InternalServerError naming an error id", err, got)
		}
	}
}

var failureMessage = regexp.MustCompile(`^Fog could not complete the request \(error id ([0-9a-f]{16})\)\. Retry; if it persists, the fog server log has the details under that id\.$`)

func TestReport(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	for _, err := range []error{
		fmt.Errorf("get instance: %w", fault.Failure("InternalServerError", "Fog could not complete the request", errors.New("decode mi/s/rg/x: boom"))),
		errors.New("decode mi/s/rg/x: boom"),
	} {
		buf.Reset()
		got := Report(log, err, "path", "/p")
		m := failureMessage.FindStringSubmatch(got.Message)
		if got.Status != http.StatusInternalServerError || m == nil || strings.Contains(got.Message, "boom") {
			t.Fatalf("Report(%v) = %+v, want a 500 naming an error id, not the cause", err, got)
		}
		for _, want := range []string{"level=ERROR", "errorId=" + m[1], "decode mi/s/rg/x: boom", "path=/p"} {
			if !strings.Contains(buf.String(), want) {
				t.Errorf("Report(%v) logged %q, which lacks %q", err, buf.String(), want)
			}
		}
	}
	// What a client may be told in full is not logged.
	buf.Reset()
	if got := Report(log, fault.Invalid("InvalidSku", "no"), "path", "/p"); got.Code != "InvalidSku" || buf.Len() != 0 {
		t.Errorf("Report(InvalidSku) = %+v and logged %q", got, buf.String())
	}
	if Report(log, nil) != nil {
		t.Error("Report(nil) != nil")
	}
}
