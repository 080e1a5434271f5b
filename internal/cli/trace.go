package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
)

// tracer logs the CLI's requests to stderr as az's --verbose (one line per request with its
// status and time) and --debug (headers and bodies too) do. The Authorization header and any
// field that names a password, secret or token are redacted: a debug log can be pasted into
// an issue.
type tracer struct {
	w     io.Writer
	debug bool
}

// Request, Response and Failed make the tracer the API client's fogclient.Tracer.
func (t *tracer) Request(req *http.Request, body []byte) {
	if !t.debug {
		return
	}
	fmt.Fprintf(t.w, "DEBUG: Request URL: '%s %s'\n", req.Method, req.URL)
	t.headers("Request", req.Header)
	if body != nil {
		fmt.Fprintf(t.w, "DEBUG: Request body:\nDEBUG: %s\n", redactJSON(body))
	}
}

func (t *tracer) Response(req *http.Request, resp *http.Response, b []byte, took time.Duration) {
	fmt.Fprintf(t.w, "INFO: %s %s: %d %s in %s\n", req.Method, pathOf(req), resp.StatusCode, http.StatusText(resp.StatusCode), took.Round(time.Millisecond))
	if !t.debug {
		return
	}
	t.headers("Response", resp.Header)
	if len(b) > 0 {
		fmt.Fprintf(t.w, "DEBUG: Response body:\nDEBUG: %s\n", redactJSON(b))
	}
}

func (t *tracer) Failed(req *http.Request, err error, took time.Duration) {
	fmt.Fprintf(t.w, "INFO: %s %s: failed after %s: %v\n", req.Method, pathOf(req), took.Round(time.Millisecond), err)
}

func (t *tracer) headers(what string, h http.Header) {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := strings.Join(h[k], ", ")
		if sensitive(k) || strings.EqualFold(k, "Set-Cookie") || strings.EqualFold(k, "Cookie") {
			v = "*****"
		}
		fmt.Fprintf(t.w, "DEBUG: %s header %s: %s\n", what, k, v)
	}
}

func pathOf(req *http.Request) string {
	return req.URL.Path + "?" + req.URL.RawQuery
}

// sensitive: a header or JSON key whose value is a secret.
func sensitive(key string) bool {
	k := strings.ToLower(key)
	for _, s := range []string{"authorization", "password", "secret", "token", "privatekey", "cakey"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// redactJSON replaces the values of sensitive keys anywhere in a JSON document. Not JSON: the
// body is summarised by its length, never printed, since it could hold anything.
func redactJSON(b []byte) string {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Sprintf("(%d bytes, not JSON)", len(b))
	}
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				if sensitive(k) && val != nil {
					x[k] = "*****"
				} else {
					x[k] = walk(val)
				}
			}
		case []any:
			for i := range x {
				x[i] = walk(x[i])
			}
		}
		return v
	}
	out, _ := json.Marshal(walk(v))
	return string(out)
}
