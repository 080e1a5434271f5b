// Package fault holds the errors Fog's domain packages (controller, resource, authz) return
// for conditions a client must be told of: one typed precondition error, Error, with an
// ARM-compatible code, a Class (the kind of HTTP status it stands for) and the message for
// the user, and sentinels for the conditions callers branch on. It imports nothing of Fog's,
// and it writes no response: only the API edge (arm.Report, called by internal/api and by
// the controller and the engine where they save an operation's outcome) turns an Error into
// an ARM error.
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
//
// A failure of Fog's own (a store error, a broken invariant) is a Failure: the client is told
// a summary and an error id, never the cause's text, which names store keys, hosts and paths;
// the error's text (Error) leaves the cause out too, so that a Failure formatted into another
// message does not carry it. The edge that tells a client (arm.Report) logs the cause under
// the id with Log.
package fault

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
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

// Error is a failed precondition of a request, or a failure of Fog's own (Failure): what the
// client is told, as an ARM-compatible code and a message that says what to do, and the class
// of failure.
type Error struct {
	Class   Class
	Code    string
	Message string
	// ErrorID is the id of a Failure, which its Message names and under which Log logs its
	// cause; "" for every other Error.
	ErrorID string

	kind    error       // a sentinel the error is, or nil
	cause   error       // what it wraps (a %w in its format, or a Failure's cause), or nil
	summary string      // a Failure's summary
	logged  atomic.Bool // a Failure's cause has been logged
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// LogValue is how Fog's logs show the error: its text and, for a Failure, its cause, which
// the text (what a client may be told) leaves out.
func (e *Error) LogValue() slog.Value {
	if e.ErrorID != "" && e.cause != nil {
		return slog.StringValue(e.Error() + " Cause: " + e.cause.Error())
	}
	return slog.StringValue(e.Error())
}

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

// Failure returns an Error of class Internal for a failure of Fog's own, cause. What a client
// is told is code and a message of summary and a new error id; cause's text stays out of it
// (it can name store keys, hosts and paths) and is logged under the id by the edge that
// tells the client (Log). errors.Is and errors.As see cause.
func Failure(code, summary string, cause error) error {
	id := newErrorID()
	return &Error{Class: Internal, Code: code, ErrorID: id, cause: cause, summary: summary,
		Message: fmt.Sprintf("%s (error id %s). Retry; if it persists, the fog server log has the details under that id.", summary, id)}
}

func newErrorID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// Log logs, at ERROR on log with attrs, the cause of the Failure in err's chain under its
// error id, and so on for a Failure in that cause (whose text names only its id). A Failure
// is logged once, however many edges it passes (a response, an operation's record, the
// reason a rollback keeps); err without a Failure logs nothing.
func Log(log *slog.Logger, err error, attrs ...any) {
	for fe := failureOf(err); fe != nil; fe = failureOf(fe.cause) {
		if !fe.logged.Swap(true) {
			log.Error(fe.summary, append([]any{"errorId", fe.ErrorID, "code", fe.Code, "err", fe.cause}, attrs...)...)
		}
	}
}

// failureOf returns the first Failure along err's chain of Errors, or nil.
func failureOf(err error) *Error {
	var fe *Error
	for errors.As(err, &fe) {
		if fe.ErrorID != "" {
			return fe
		}
		err = fe.cause
	}
	return nil
}
