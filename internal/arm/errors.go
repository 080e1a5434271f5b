// Package arm holds the Azure Resource Manager conventions that Fog's API follows: resource
// ids, api-version checks, error bodies and the long-running-operation protocol.
package arm

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/fogdb/fog/internal/fault"
)

// Error is an ARM error: an HTTP status, a stable code that clients branch on, and a message
// that says what to do. It is the only error type the API layer writes to clients.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error with a formatted message.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// BadRequest is shorthand for a 400 error.
func BadRequest(code, format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, code, format, args...)
}

// statusOf is the HTTP status of each class of fault.
var statusOf = map[fault.Class]int{
	fault.BadRequest:   http.StatusBadRequest,
	fault.Unauthorized: http.StatusUnauthorized,
	fault.Forbidden:    http.StatusForbidden,
	fault.NotFound:     http.StatusNotFound,
	fault.Conflict:     http.StatusConflict,
	fault.Internal:     http.StatusInternalServerError,
	fault.Unavailable:  http.StatusServiceUnavailable,
}

// FromError is the ARM error a client is told for err, or nil for nil: an *Error in err's
// chain as it is; a *fault.Error with its code and message and the status of its class;
// anything else an InternalServerError naming a new error id, never err's text. It logs
// nothing: an edge that tells a client uses Report.
func FromError(err error) *Error {
	if err == nil {
		return nil
	}
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var fe *fault.Error
	if errors.As(err, &fe) {
		status, ok := statusOf[fe.Class]
		if !ok {
			status = http.StatusInternalServerError
		}
		return &Error{Status: status, Code: fe.Code, Message: fe.Message}
	}
	return FromError(unexpected(err))
}

// Report is FromError(err) for an edge that tells a client of err (a response, an operation's
// record): the cause of a failure of Fog's own, which the client is told only by its error
// id, is logged at ERROR on log under that id, with attrs (fault.Log: once per failure,
// however many edges it passes). An error that is neither an *Error nor a *fault.Error is
// such a failure.
func Report(log *slog.Logger, err error, attrs ...any) *Error {
	if err == nil {
		return nil
	}
	var ae *Error
	var fe *fault.Error
	if !errors.As(err, &ae) && !errors.As(err, &fe) {
		err = unexpected(err)
	}
	fault.Log(log, err, attrs...)
	return FromError(err)
}

// unexpected is the failure an error of no known kind is.
func unexpected(err error) error {
	return fault.Failure("InternalServerError", "Fog could not complete the request", err)
}

// Body is the JSON error envelope: {"error":{"code":..., "message":...}}.
type Body struct {
	Error *Error `json:"error"`
}

// WriteError writes e as an ARM error response, with the x-ms-error-code header that azcore
// reads before the body.
func WriteError(w http.ResponseWriter, e *Error) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("x-ms-error-code", e.Code)
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer authorization_uri="", error="invalid_token"`)
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(Body{Error: e})
}

// WriteJSON writes v with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}
