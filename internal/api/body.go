package api

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/fogdb/fog/internal/arm"
)

// MaxBodyBytes is the largest request body the API reads: Fog's request bodies are JSON of a
// few kilobytes.
const MaxBodyBytes = 1 << 20

// maxDiscardBytes is how much of a body the API reads and throws away after it has refused
// the request, so that the client gets the answer. A server that closes a TCP connection with
// unread data in its receive buffer sends RST, not FIN (RFC 2525 2.17; Linux tcp_close), and
// a client still writing its body then sees "connection reset" and loses the response it has
// not read yet; net/http discards only 256 KiB of an unread body before it closes
// (maxPostHandlerReadBytes). Beyond this bound the connection is closed after the response
// instead: draining more would be reading an attacker's upload. The server's ReadTimeout
// bounds how long the draining takes.
const maxDiscardBytes = 64 << 20

// errBodyTooLarge is what reading a request body past MaxBodyBytes returns.
var errBodyTooLarge = &http.MaxBytesError{Limit: MaxBodyBytes}

// bodyTooLarge is the ARM error for a body over MaxBodyBytes.
func bodyTooLarge() *arm.Error {
	return arm.Errorf(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge",
		"The request body is larger than the limit of %d bytes (1 MiB). Send only the resource's JSON: Fog's request bodies are a few kilobytes.", MaxBodyBytes)
}

// limitedBody reads a request body up to MaxBodyBytes and remembers whether the handler read it.
type limitedBody struct {
	rc   io.ReadCloser
	n    int64
	read bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	b.read = true
	if b.n > MaxBodyBytes {
		return 0, errBodyTooLarge
	}
	if rest := MaxBodyBytes + 1 - b.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if b.n > MaxBodyBytes {
		return n - 1, errBodyTooLarge
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// expectsContinue: the client waits for "100 Continue" before it sends the body, which
// net/http sends only once the body is read; a body nobody read was never sent.
func expectsContinue(r *http.Request) bool {
	return r.ProtoMajor == 1 && strings.EqualFold(r.Header.Get("Expect"), "100-continue")
}

// discard reads and drops the rest of a body, up to maxDiscardBytes; it reports whether the
// body ended within the bound.
func discard(rc io.Reader) bool {
	n, err := io.Copy(io.Discard, io.LimitReader(rc, maxDiscardBytes+1))
	return err == nil && n <= maxDiscardBytes
}

// limitBody makes every endpoint answer 413 RequestEntityTooLarge to a body over MaxBodyBytes,
// and makes sure the client can read that answer (and any other answer given before its body
// was read: a 401, a 403). A body declared too large is refused before anything else runs;
// one sent without a length is refused when read past the limit (readBody, decode).
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxBodyBytes {
			if expectsContinue(r) || r.ContentLength > MaxBodyBytes+maxDiscardBytes || !discard(r.Body) {
				closeAfter(w, r)
			}
			arm.WriteError(w, bodyTooLarge())
			return
		}
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		orig := r.Body
		lb := &limitedBody{rc: orig}
		r.Body = lb
		next.ServeHTTP(w, r)
		// The server looks at the body it made once this returns: put it back, so that it
		// still knows a body behind "Expect: 100-continue" that nobody asked for (and that the
		// client therefore never sent) and closes the connection instead of waiting for it.
		r.Body = orig
		// A short answer (an error) is still in the server's buffer until this returns, so the
		// client reads it after its body has been taken in full.
		if lb.read || !expectsContinue(r) {
			discard(orig)
		}
	})
}

// readBody reads an authenticated request's body before any handler runs: a body sent without
// a declared length (chunked) is known to be too large only once read, and this way every
// endpoint answers 413 to it, as it does to one declared too large, whether or not it takes a
// body. It runs after authentication so that Fog never holds a stranger's upload.
func readBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		b, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
		switch {
		case isTooLarge(err) || len(b) > MaxBodyBytes:
			arm.WriteError(w, bodyTooLarge())
			return
		case err != nil:
			arm.WriteError(w, arm.BadRequest("InvalidRequestContent", "The request body could not be read: %v.", err))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		next.ServeHTTP(w, r)
	})
}

// closeAfter asks HTTP/1 to close the connection after the response (HTTP/2 ends only the
// stream, which needs nothing).
func closeAfter(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
}

// isTooLarge reports whether err is a read past MaxBodyBytes.
func isTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}
