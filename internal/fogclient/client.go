// Package fogclient is the typed client of Fog's API: the ARM surface (managed instances,
// their databases, instance failover groups, role assignments, the activity log) and Fog's
// own endpoints (API tokens, join tokens, subscriptions, agent certificates). The CLI, the
// console, the benchmarks and the end-to-end tests all call Fog through it.
//
// A client is built from the client config that `fog up` and `fog server` write. It verifies
// the API's certificate against Fog's CA, sends the token as a bearer token only to the
// configured API, adds the api-version, decodes ARM errors into *Error, and follows
// long-running operations (Azure-AsyncOperation, else Location) to their end:
//
//	cfg, err := fogclient.LoadConfig(".fog/client.json")
//	if err != nil {
//		return err
//	}
//	c, err := fogclient.New(cfg)
//	if err != nil {
//		return err
//	}
//	mi, err := c.GetManagedInstance(ctx, "rg1", "mi1")
//	var e *fogclient.Error
//	if errors.As(err, &e) && e.Status == http.StatusNotFound {
//		// create it
//	}
//	g, err := c.CreateOrUpdateFailoverGroup(ctx, "rg1", "eastus", "fg1", fogclient.FailoverGroup{...})
//
// The wire shapes of instances, databases and groups are package resource's: they are the
// JSON the API writes, so the client and the server cannot drift apart. Fog's own endpoints
// answer shapes the API package builds as maps; their client-side structs are here, and a
// test in package api checks the paths agree.
package fogclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// APIVersion is the api-version of the Microsoft.Sql resources the client speaks.
const APIVersion = "2023-08-01"

// The api-versions of the other ARM namespaces Fog serves.
const (
	AuthorizationAPIVersion = "2022-04-01"
	SubscriptionAPIVersion  = "2022-12-01"
	ActivityLogAPIVersion   = "2015-04-01"
)

// Fog's own endpoints, outside the ARM namespace.
const (
	TokensPath        = "/fog/v1/tokens"
	JoinTokensPath    = "/fog/v1/joinTokens"
	SubscriptionsPath = "/fog/v1/subscriptions"
	AgentsPath        = "/agent/v1/"
)

// Config is the client config `fog up` and `fog server` write (client.json).
type Config struct {
	APIURL       string `json:"apiUrl"`
	CACert       string `json:"caCert"`
	Token        string `json:"token"`
	Subscription string `json:"subscription"`
}

// LoadConfig reads a client config file.
func LoadConfig(path string) (Config, error) {
	var cc Config
	b, err := os.ReadFile(path)
	if err != nil {
		return cc, fmt.Errorf("read client config %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &cc); err != nil {
		return cc, fmt.Errorf("client config %s is not valid JSON: %w", path, err)
	}
	if cc.APIURL == "" || cc.Token == "" {
		return cc, fmt.Errorf("client config %s lacks apiUrl or token", path)
	}
	if cc.CACert != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(cc.CACert)) {
		return cc, fmt.Errorf("client config %s: caCert is not a PEM certificate", path)
	}
	return cc, nil
}

// Error is an ARM error answer: the HTTP status, the stable code callers branch on and the
// message that says what to do. An operation that failed after its 202 has Status 0. Code is
// empty when the answer carried no ARM error body (Message is then the body).
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	code := e.Code
	if code == "" {
		code = strconv.Itoa(e.Status)
	}
	return fmt.Sprintf("(%s) %s", code, e.Message)
}

// IsNotFound reports whether err is a 404 answer.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// TransportError is a request that got no answer: the API is down, unreachable, or its
// certificate is not the CA's. Err is the *url.Error of net/http.
type TransportError struct{ Err error }

func (e *TransportError) Error() string { return e.Err.Error() }
func (e *TransportError) Unwrap() error { return e.Err }

// Tracer sees every request and its answer (the CLI's --verbose and --debug).
type Tracer interface {
	Request(req *http.Request, body []byte)
	Response(req *http.Request, resp *http.Response, body []byte, took time.Duration)
	Failed(req *http.Request, err error, took time.Duration)
}

// Client calls one Fog API with one token.
type Client struct {
	base, sub, token string
	hc               *http.Client
	poll             time.Duration
	userAgent        string
	trace            Tracer
	// transport and idle are what New builds the default HTTP client from.
	transport http.RoundTripper
	idle      int
}

// Option configures a Client.
type Option func(*Client)

// WithSubscription makes the client address subscription sub instead of the config's ("" keeps it).
func WithSubscription(sub string) Option {
	return func(c *Client) {
		if sub != "" {
			c.sub = sub
		}
	}
}

// WithPollInterval sets how often an operation's status is read (default 200ms).
func WithPollInterval(d time.Duration) Option { return func(c *Client) { c.poll = d } }

// WithTracer logs requests and answers to t.
func WithTracer(t Tracer) Option { return func(c *Client) { c.trace = t } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// WithIdleConnsPerHost keeps up to n idle connections to the API (for load generators).
func WithIdleConnsPerHost(n int) Option { return func(c *Client) { c.idle = n } }

// WithTransport sends the requests through rt instead of a TLS transport built from the CA.
func WithTransport(rt http.RoundTripper) Option { return func(c *Client) { c.transport = rt } }

// WithHandler serves every request with h in this process, as the console calls the API:
// no network and no TLS, and remoteAddr as the request's RemoteAddr (the API logs it and
// rate-limits by it).
func WithHandler(h http.Handler, remoteAddr string) Option {
	return WithTransport(handlerTransport{h: h, remote: remoteAddr})
}

// New returns a client of the API cfg names.
func New(cfg Config, opts ...Option) (*Client, error) {
	if cfg.APIURL == "" {
		return nil, errors.New("fogclient: the config has no apiUrl")
	}
	c := &Client{base: strings.TrimRight(cfg.APIURL, "/"), sub: cfg.Subscription, token: cfg.Token, poll: 200 * time.Millisecond}
	for _, o := range opts {
		o(c)
	}
	rt := c.transport
	if rt == nil {
		pool := x509.NewCertPool()
		if cfg.CACert != "" && !pool.AppendCertsFromPEM([]byte(cfg.CACert)) {
			return nil, errors.New("fogclient: caCert is not a PEM certificate")
		}
		rt = &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: c.idle,
		}
	}
	c.hc = &http.Client{Timeout: 60 * time.Second, Transport: rt}
	return c, nil
}

// BaseURL is the API's URL.
func (c *Client) BaseURL() string { return c.base }

// Subscription is the subscription the client addresses.
func (c *Client) Subscription() string { return c.sub }

// Token is the client's API token.
func (c *Client) Token() string { return c.token }

// CloseIdleConnections closes the kept-alive connections to the API.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Request is one raw request. Path is relative to the API unless it is an absolute URL
// (which must be on the API); api-version=APIVersion is added when it names none.
type Request struct {
	Method, Path string
	// Body is sent as JSON; a string or []byte is sent as it is.
	Body any
	// Header replaces the client's headers; a header given with "" is not sent (such as
	// Authorization, for an anonymous request).
	Header http.Header
}

// Response is an answer as it came: status, headers and body.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// URL is the absolute URL of path with its api-version.
func (c *Client) URL(path string) string {
	if strings.HasPrefix(path, "https://") || strings.HasPrefix(path, "http://") {
		if strings.Contains(path, "api-version=") {
			return path
		}
	} else {
		path = c.base + path
	}
	if strings.Contains(path, "api-version=") {
		return path
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + "api-version=" + APIVersion
}

// sameOrigin reports whether u is on the API at base (scheme, host and port).
func sameOrigin(u, base string) bool {
	a, err1 := url.Parse(u)
	b, err2 := url.Parse(base)
	return err1 == nil && err2 == nil && strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Host, b.Host)
}

func originOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Scheme + "://" + p.Host
}

// Send sends a raw request and returns the answer whatever its status; the error is only
// for a request that got none (a *TransportError) or could not be built. The token goes
// only to the configured API: an absolute URL elsewhere is refused before any request.
func (c *Client) Send(ctx context.Context, r Request) (*Response, error) {
	var body []byte
	switch b := r.Body.(type) {
	case nil:
	case string:
		body = []byte(b)
	case []byte:
		body = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("encode the %s body: %w", r.Method, err)
		}
		body = j
	}
	target := c.URL(r.Path)
	if !sameOrigin(target, c.base) {
		return nil, fmt.Errorf("refusing to send the API token to %s: it is not the configured API %s (check the server's --external-url)", originOf(target), c.base)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, target, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	for k, v := range r.Header {
		if len(v) == 0 || v[0] == "" {
			req.Header.Del(k)
		} else {
			req.Header[http.CanonicalHeaderKey(k)] = v
		}
	}
	start := time.Now()
	if c.trace != nil {
		c.trace.Request(req, body)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if c.trace != nil {
			c.trace.Failed(req, err, time.Since(start))
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &TransportError{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, &TransportError{Err: err}
	}
	if c.trace != nil {
		c.trace.Response(req, resp, b, time.Since(start))
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// Do sends a request; an answer of 300 or more is an *Error. A 2xx body is decoded into out
// when out is not nil.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) (*Response, error) {
	resp, err := c.do(ctx, method, path, body, out)
	if err == nil {
		capture(ctx, resp)
	}
	return resp, err
}

// do is Do without capturing the answer (for the status reads of an operation).
func (c *Client) do(ctx context.Context, method, path string, body, out any) (*Response, error) {
	resp, err := c.Send(ctx, Request{Method: method, Path: path, Body: body})
	if err != nil {
		return nil, err
	}
	if resp.Status >= 300 {
		return resp, decodeError(resp)
	}
	if out != nil && len(resp.Body) > 0 {
		if err := json.Unmarshal(resp.Body, out); err != nil {
			return resp, fmt.Errorf("decode the answer to %s %s: %w", method, path, err)
		}
	}
	return resp, nil
}

// decodeError reads an ARM error body ({"error":{"code","message"}}).
func decodeError(resp *Response) *Error {
	var eb struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(resp.Body, &eb)
	if eb.Error.Code == "" {
		return &Error{Status: resp.Status, Message: strings.TrimSpace(string(resp.Body))}
	}
	return &Error{Status: resp.Status, Code: eb.Error.Code, Message: eb.Error.Message}
}

type captureKey struct{}

// WithResponse returns a context with which a typed method stores in r the answer its
// result was read from (for an operation, the final read), as azcore's
// runtime.WithCaptureResponse: for callers that show the API's answer as it came.
func WithResponse(ctx context.Context, r *Response) context.Context {
	return context.WithValue(ctx, captureKey{}, r)
}

func capture(ctx context.Context, resp *Response) {
	if r, ok := ctx.Value(captureKey{}).(*Response); ok && resp != nil {
		*r = *resp
	}
}

// handlerTransport serves requests with an http.Handler in this process.
type handlerTransport struct {
	h      http.Handler
	remote string
}

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	sreq := req.Clone(req.Context())
	// A server's request carries only the path and query; the host is not the API's
	// business (it builds operation URLs from its own configuration).
	sreq.URL = &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	sreq.RequestURI = req.URL.RequestURI()
	sreq.Host = ""
	sreq.RemoteAddr = t.remote
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	rec := &recorder{hdr: http.Header{}}
	t.h.ServeHTTP(rec, sreq)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &http.Response{
		Status: strconv.Itoa(rec.status) + " " + http.StatusText(rec.status), StatusCode: rec.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.hdr, Body: io.NopCloser(&rec.body), ContentLength: int64(rec.body.Len()), Request: req,
	}, nil
}

type recorder struct {
	hdr    http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.hdr }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
