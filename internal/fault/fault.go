// Package fault holds the errors Fog's domain packages (controller, resource, authz) return
// for conditions a client must be told of: one typed precondition error, Error, with an
// ARM-compatible code, a Class (the kind of HTTP status it stands for) and the message for
// the user, and sentinels for the conditions callers branch on. It imports nothing of Fog's,
// and it writes no response: only the API edge (arm.FromError, called by internal/api and
// by the controller where it saves an operation's outcome) turns an Error into an ARM error.
//
// A layer that wraps an Error keeps it visible to errors.As and its sentinel to errors.Is:
//
//	if err := resource.ValidateInstanceName(name); err != nil {
//		return fmt.Errorf("create instance: %w", err)
//	}
//	...
//	if errors.Is(err, fault.ErrBusy) {
//		// another operation holds the group: retry
//	}
package fault

import (
	"errors"
	"fmt"
)

// Class is the kind of failure an Error is, as the class of HTTP status the API answers
// with.
type Class int

// Classes of Error.
const (
	BadRequest   Class = iota + 1 // the request breaks a rule: fix it and send it again
	Unauthorized                  // the caller is not who the request needs
	Forbidden                     // the caller may not do this
	NotFound                      // what the request names does not exist
	Conflict                      // the request clashes with the current state: wait or change it
	Internal                      // Fog failed
	Unavailable                   // Fog cannot answer now (its store, or it is stopping): retry
)

// Sentinels callers test with errors.Is.
var (
	// ErrBusy: another operation holds the failover group (code InstanceFailoverGroupBusy);
	// the same request may succeed once it has ended.
	ErrBusy = errors.New("fault: busy")
	// ErrNotFound: what the request names does not exist. Every Error of class NotFound
	// is ErrNotFound.
	ErrNotFound = errors.New("fault: not found")
)

// Error is a failed precondition of a request: what the client is told, as an ARM-compatible
// code and a message that says what to do, and the class of failure.
type Error struct {
	Class   Class
	Code    string
	Message string

	kind  error // a sentinel the error is, or nil
	cause error // what it wraps (a %w in its format), or nil
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Unwrap returns the cause a %w in the message's format named.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether the error is the sentinel target.
func (e *Error) Is(target error) bool {
	return target != nil && (target == e.kind || target == ErrNotFound && e.Class == NotFound)
}

// New returns an Error of class c with code and the formatted message. A %w in format wraps
// its operand (its text is in the message, as with %v) so that errors.Is and errors.As see it.
func New(c Class, code, format string, args ...any) error {
	m := fmt.Errorf(format, args...)
	return &Error{Class: c, Code: code, Message: m.Error(), cause: errors.Unwrap(m)}
}

// Invalid is New(BadRequest, ...).
func Invalid(code, format string, args ...any) error {
	return New(BadRequest, code, format, args...)
}

// Busy returns a Conflict with code InstanceFailoverGroupBusy that is ErrBusy.
func Busy(format string, args ...any) error {
	err := New(Conflict, "InstanceFailoverGroupBusy", format, args...).(*Error)
	err.kind = ErrBusy
	return err
}
