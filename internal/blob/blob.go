// Package blob is the little of Azure Blob Storage's REST API that Fog's agent needs to give
// each stanza a container of its own: it creates a container with the account's shared key
// (Shared Key authorization) and mints a service SAS that reaches that container alone, which
// is all an instance's pgbackrest.conf ever holds (docs/backups.md, the tenant boundary). It
// speaks to Azure or to Azurite, Microsoft's emulator, with the standard library only.
//
// The key never leaves the Client: it is in no error, no log line and no URL.
//
// Usage:
//
//	c, err := blob.New("fogwest", keyBase64, blob.Endpoint("fogwest", "", 0, false), nil)
//	err = c.CreateContainer(ctx, "i-3f2a")
//	sas, err := c.ContainerSAS("i-3f2a", time.Now().Add(48*time.Hour))
package blob

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Version is the REST API version Fog's requests and SAS tokens name (x-ms-version, sv):
// one Azure and Azurite both serve, whose SAS format carries the encryption scope field.
const Version = "2020-12-06"

// ContainerPermissions is what a stanza's SAS allows on its container, in the order Azure
// requires: read, add, create, write, delete, list; everything pgBackRest does to a
// repository, nothing on any other container.
const ContainerPermissions = "racwdl"

// Errors callers branch on.
var (
	ErrInvalid = errors.New("blob: invalid argument")
	// ErrStatus is an answer Fog did not expect; the *StatusError says which.
	ErrStatus = errors.New("blob: unexpected answer")
)

// StatusError is a request Azure refused: its HTTP status and Azure's error code
// (x-ms-error-code), never the request's credentials.
type StatusError struct {
	Op     string
	Status int
	Code   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("blob: %s: HTTP %d %s", e.Op, e.Status, e.Code)
}

func (e *StatusError) Unwrap() error { return ErrStatus }

var (
	accountRE   = regexp.MustCompile(`^[a-z0-9]{3,24}$`)
	containerRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9]|-[a-z0-9]){2,62}$`)
)

// Client is one storage account, reached with its shared key.
type Client struct {
	account string
	key     []byte
	base    *url.URL
	hc      *http.Client
}

// Endpoint is the account's service URL: host-style (https://<account>.<host>, host
// "blob.core.windows.net" when empty) or, with pathStyle, the account in the path
// (https://<host>:<port>/<account>), as Azurite serves it.
func Endpoint(account, host string, port int, pathStyle bool) string {
	if host == "" {
		host = "blob.core.windows.net"
	}
	if port > 0 {
		host = net.JoinHostPort(host, strconv.Itoa(port))
	}
	if pathStyle {
		return "https://" + host + "/" + account
	}
	return "https://" + account + "." + host
}

// New returns a client of account, whose shared key is keyBase64 (as Azure shows it), at
// endpoint (Endpoint's URL). hc nil is a client that trusts the system's CAs (HTTPClient).
func New(account, keyBase64, endpoint string, hc *http.Client) (*Client, error) {
	if !accountRE.MatchString(account) {
		return nil, fmt.Errorf("%w: account %q", ErrInvalid, account)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keyBase64))
	if err != nil || len(key) == 0 {
		return nil, fmt.Errorf("%w: the account key is not base64", ErrInvalid)
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("%w: endpoint %q: want https://host[:port][/account]", ErrInvalid, endpoint)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if hc == nil {
		if hc, err = HTTPClient(""); err != nil {
			return nil, err
		}
	}
	return &Client{account: account, key: key, base: u, hc: hc}, nil
}

// HTTPClient is an HTTP client for the store: it trusts the CA certificates in caFile (PEM;
// an emulator's, signed by a CA of the operator's), or the system's when caFile is empty,
// and gives up on a request after a minute.
func HTTPClient(caFile string) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("blob: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: CA file %s holds no certificate", ErrInvalid, caFile)
		}
		t.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: t, Timeout: time.Minute}, nil
}

// CreateContainer creates the container unless it exists (private: no anonymous access).
func (c *Client) CreateContainer(ctx context.Context, name string) error {
	if !containerRE.MatchString(name) {
		return fmt.Errorf("%w: container %q", ErrInvalid, name)
	}
	op := "create container " + name
	resp, err := c.do(ctx, http.MethodPut, name, url.Values{"restype": {"container"}})
	if err != nil {
		return fmt.Errorf("blob: %s: %w", op, err)
	}
	switch code := resp.Header.Get("x-ms-error-code"); {
	case resp.StatusCode == http.StatusCreated:
		return nil
	case resp.StatusCode == http.StatusConflict && code == "ContainerAlreadyExists":
		return nil
	default:
		return &StatusError{Op: op, Status: resp.StatusCode, Code: code}
	}
}

// CreateContainerWithMetadata creates the container with metadata meta (names: letters and
// digits; values: printable ASCII) and reports whether it made it; a container that exists
// already is left as it is (false, nil). A container SAS can neither read nor write a
// container's metadata: only the account key can, so the metadata is the key holder's.
func (c *Client) CreateContainerWithMetadata(ctx context.Context, name string, meta map[string]string) (bool, error) {
	if !containerRE.MatchString(name) {
		return false, fmt.Errorf("%w: container %q", ErrInvalid, name)
	}
	h, err := metaHeaders(meta)
	if err != nil {
		return false, err
	}
	op := "create container " + name
	resp, err := c.doWith(ctx, http.MethodPut, name, url.Values{"restype": {"container"}}, h)
	if err != nil {
		return false, fmt.Errorf("blob: %s: %w", op, err)
	}
	switch code := resp.Header.Get("x-ms-error-code"); {
	case resp.StatusCode == http.StatusCreated:
		return true, nil
	case resp.StatusCode == http.StatusConflict && code == "ContainerAlreadyExists":
		return false, nil
	default:
		return false, &StatusError{Op: op, Status: resp.StatusCode, Code: code}
	}
}

// ContainerMetadata returns the container's metadata (names in lower case) and whether the
// container exists.
func (c *Client) ContainerMetadata(ctx context.Context, name string) (map[string]string, bool, error) {
	if !containerRE.MatchString(name) {
		return nil, false, fmt.Errorf("%w: container %q", ErrInvalid, name)
	}
	op := "container " + name + " properties"
	resp, err := c.do(ctx, http.MethodHead, name, url.Values{"restype": {"container"}})
	if err != nil {
		return nil, false, fmt.Errorf("blob: %s: %w", op, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, false, nil
	default:
		return nil, false, &StatusError{Op: op, Status: resp.StatusCode, Code: resp.Header.Get("x-ms-error-code")}
	}
	meta := map[string]string{}
	for k, v := range resp.Header {
		if n, ok := strings.CutPrefix(strings.ToLower(k), "x-ms-meta-"); ok && len(v) > 0 {
			meta[n] = v[0]
		}
	}
	return meta, true, nil
}

// SetContainerMetadata replaces the container's metadata with meta.
func (c *Client) SetContainerMetadata(ctx context.Context, name string, meta map[string]string) error {
	if !containerRE.MatchString(name) {
		return fmt.Errorf("%w: container %q", ErrInvalid, name)
	}
	h, err := metaHeaders(meta)
	if err != nil {
		return err
	}
	op := "set container " + name + " metadata"
	resp, err := c.doWith(ctx, http.MethodPut, name, url.Values{"restype": {"container"}, "comp": {"metadata"}}, h)
	if err != nil {
		return fmt.Errorf("blob: %s: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK {
		return &StatusError{Op: op, Status: resp.StatusCode, Code: resp.Header.Get("x-ms-error-code")}
	}
	return nil
}

var metaNameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,62}$`)

func metaHeaders(meta map[string]string) (http.Header, error) {
	h := http.Header{}
	for k, v := range meta {
		if !metaNameRE.MatchString(k) {
			return nil, fmt.Errorf("%w: metadata name %q", ErrInvalid, k)
		}
		for _, r := range v {
			if r < 0x20 || r > 0x7e {
				return nil, fmt.Errorf("%w: metadata %s: not printable ASCII", ErrInvalid, k)
			}
		}
		h.Set("x-ms-meta-"+k, v)
	}
	return h, nil
}

// ContainerExists reports whether the container is there.
func (c *Client) ContainerExists(ctx context.Context, name string) (bool, error) {
	if !containerRE.MatchString(name) {
		return false, fmt.Errorf("%w: container %q", ErrInvalid, name)
	}
	op := "container " + name + " properties"
	resp, err := c.do(ctx, http.MethodHead, name, url.Values{"restype": {"container"}})
	if err != nil {
		return false, fmt.Errorf("blob: %s: %w", op, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	default:
		return false, &StatusError{Op: op, Status: resp.StatusCode, Code: resp.Header.Get("x-ms-error-code")}
	}
}

// do sends a request without a body, signed with the shared key, and returns the answer
// with its body read (a bounded amount) and closed.
func (c *Client) do(ctx context.Context, method, path string, q url.Values) (*http.Response, error) {
	return c.doWith(ctx, method, path, q, nil)
}

// doWith is do with the headers h added (signed with the others).
func (c *Client) doWith(ctx context.Context, method, path string, q url.Values, h http.Header) (*http.Response, error) {
	u := *c.base
	u.Path = c.base.Path + "/" + path
	u.RawPath = ""
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("x-ms-date", time.Now().UTC().Format(http.TimeFormat))
	req.Header.Set("x-ms-version", Version)
	req.Header.Set("Authorization", "SharedKey "+c.account+":"+c.sign(stringToSign(req, c.account)))
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp, nil
}

func (c *Client) sign(s string) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// stringToSign is Shared Key's string for a Blob service request (version 2009-09-19 and
// later; "Authorize with Shared Key" in Azure's Storage REST API reference): the verb, the
// standard headers in a fixed order, the x-ms-* headers sorted, and the resource as
// /<account><path> followed by the query's parameters sorted. A path-style URL has the account
// in its path already, so the emulator's resource names it twice, as its documentation says.
func stringToSign(req *http.Request, account string) string {
	h := req.Header
	length := ""
	if req.ContentLength > 0 {
		length = strconv.FormatInt(req.ContentLength, 10)
	} else if v := h.Get("Content-Length"); v != "" && v != "0" {
		// Since version 2015-02-21 a zero length signs as the empty string.
		length = v
	}
	var b strings.Builder
	b.WriteString(req.Method + "\n")
	for _, k := range []string{"Content-Encoding", "Content-Language"} {
		b.WriteString(h.Get(k) + "\n")
	}
	b.WriteString(length + "\n")
	for _, k := range []string{"Content-MD5", "Content-Type", "Date", "If-Modified-Since", "If-Match", "If-None-Match", "If-Unmodified-Since", "Range"} {
		b.WriteString(h.Get(k) + "\n")
	}
	var names []string
	for k := range h {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-ms-") {
			names = append(names, lk)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		var vals []string
		for _, v := range h.Values(k) {
			vals = append(vals, strings.Join(strings.Fields(v), " "))
		}
		b.WriteString(k + ":" + strings.Join(vals, ",") + "\n")
	}
	b.WriteString("/" + account + req.URL.EscapedPath())
	q := req.URL.Query()
	keys := make([]string, 0, len(q))
	lower := map[string][]string{}
	for k, v := range q {
		lk := strings.ToLower(k)
		if _, ok := lower[lk]; !ok {
			keys = append(keys, lk)
		}
		lower[lk] = append(lower[lk], v...)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vals := lower[k]
		sort.Strings(vals)
		b.WriteString("\n" + k + ":" + strings.Join(vals, ","))
	}
	return b.String()
}

// ContainerSAS returns a service SAS for the container (a query string without its "?", as
// Azure's tools print it): ContainerPermissions, HTTPS only, valid until expiry. Whoever holds
// it can do anything to that container's blobs and nothing to any other container or to the
// account; it is signed, not stored, so it is revoked only by expiring or by a new key.
func (c *Client) ContainerSAS(container string, expiry time.Time) (string, error) {
	if !containerRE.MatchString(container) {
		return "", fmt.Errorf("%w: container %q", ErrInvalid, container)
	}
	if expiry.IsZero() {
		return "", fmt.Errorf("%w: a SAS needs an expiry", ErrInvalid)
	}
	p := sasParams{
		permissions: ContainerPermissions,
		expiry:      expiry.UTC().Format("2006-01-02T15:04:05Z"),
		resource:    "/blob/" + c.account + "/" + container,
		protocol:    "https",
		version:     Version,
		kind:        "c",
	}
	q := url.Values{
		"sv":  {p.version},
		"spr": {p.protocol},
		"se":  {p.expiry},
		"sr":  {p.kind},
		"sp":  {p.permissions},
		"sig": {c.sign(p.stringToSign())},
	}
	return q.Encode(), nil
}

// sasParams are the fields of a service SAS that Fog sets; the others sign as empty.
type sasParams struct {
	permissions, start, expiry, resource, identifier, ip, protocol, version, kind string
}

// stringToSign is a service SAS's string for version 2020-12-06 and later ("Create a service
// SAS" in Azure's Storage REST API reference): the signed fields in order, the snapshot time
// and encryption scope empty, then the five response-header overrides, empty.
func (p sasParams) stringToSign() string {
	return strings.Join([]string{
		p.permissions, p.start, p.expiry, p.resource, p.identifier, p.ip, p.protocol, p.version, p.kind,
		"",                 // signedSnapshotTime
		"",                 // signedEncryptionScope
		"", "", "", "", "", // rscc, rscd, rsce, rscl, rsct
	}, "\n")
}
