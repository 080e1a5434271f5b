package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fogdb/fog/internal/api"
)

// apiVersion is the api-version the CLI speaks.
const apiVersion = "2023-08-01"

// APIError is an ARM error returned by the API.
type APIError struct {
	Status  int
	Code    string
	Message string
	// show: the error answers a show command (a 404 there exits with 3, as az's does).
	show bool
}

// shown marks a 404 that a show command got, for ExitCode.
func shown(err error) error {
	var ae *APIError
	if errors.As(err, &ae) {
		ae.show = true
	}
	return err
}

func (e *APIError) Error() string { return fmt.Sprintf("(%s) %s", e.Code, e.Message) }

type client struct {
	// config is the client config file the client was loaded from (for error messages).
	config string
	base   string
	sub    string
	tok    string
	hc     *http.Client
	// trace, when set, logs requests (--verbose, --debug).
	trace *tracer
}

func defaultConfigPath() string {
	if p := os.Getenv("FOG_CONFIG"); p != "" {
		return p
	}
	return filepath.Join(".fog", "client.json")
}

func loadClient(path, sub string) (*client, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read client config %s: %w (start Fog with `fog up`, or pass --config / set FOG_CONFIG)", path, err)
	}
	var cc api.ClientConfig
	if err := json.Unmarshal(b, &cc); err != nil {
		return nil, fmt.Errorf("client config %s is not valid JSON: %w", path, err)
	}
	if cc.APIURL == "" || cc.Token == "" {
		return nil, fmt.Errorf("client config %s lacks apiUrl or token", path)
	}
	pool := x509.NewCertPool()
	if cc.CACert != "" && !pool.AppendCertsFromPEM([]byte(cc.CACert)) {
		return nil, fmt.Errorf("client config %s: caCert is not a PEM certificate", path)
	}
	if sub == "" {
		sub = cc.Subscription
	}
	return &client{
		base: strings.TrimRight(cc.APIURL, "/"), sub: sub, tok: cc.Token, config: path,
		hc: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		}},
	}, nil
}

// transportError says what a failed request means and what to do, naming the API once.
func (c *client) transportError(err error) error {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var opErr *net.OpError
	switch {
	case errors.As(err, &unknownCA):
		abs, _ := filepath.Abs(c.config)
		return fmt.Errorf("the certificate of the Fog API at %s is not signed by the CA in %s (its caCert, written by `fog up` or `fog server` into their data directory): this config belongs to another deployment, or the server's CA changed; use that deployment's client.json (--config or FOG_CONFIG)", c.base, abs)
	case errors.As(err, &hostname):
		return fmt.Errorf("the certificate of the Fog API at %s does not name that host (%v); give the server --advertise with the name clients use", c.base, hostname)
	case errors.As(err, &opErr) && errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("nothing answers at the Fog API %s (connection refused): start it with `fog up`, or check apiUrl in %s", c.base, c.config)
	case errors.As(err, &opErr):
		return fmt.Errorf("cannot reach the Fog API %s: %v", c.base, opErr.Err)
	}
	return fmt.Errorf("the Fog API %s: %w", c.base, err)
}

func originOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Scheme + "://" + p.Host
}

// sameOrigin reports whether u is on the API at base (scheme, host and port).
func sameOrigin(u, base string) bool {
	a, err1 := url.Parse(u)
	b, err2 := url.Parse(base)
	return err1 == nil && err2 == nil && strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Host, b.Host)
}

func (c *client) url(path string) string {
	if strings.HasPrefix(path, "https://") || strings.HasPrefix(path, "http://") {
		return path
	}
	if strings.Contains(path, "api-version=") {
		return c.base + path
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return c.base + path + sep + "api-version=" + apiVersion
}

// do sends a request and returns the response with its body read. Non-2xx answers become
// *APIError.
func (c *client) do(ctx context.Context, method, path string, body any) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	target := c.url(path)
	if !sameOrigin(target, c.base) {
		return nil, nil, fmt.Errorf("refusing to send the API token to %s: it is not the configured API %s (check the server's --external-url)", originOf(target), c.base)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.tok)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	c.trace.request(req, body)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.trace.failed(req, err, time.Since(start))
		return nil, nil, c.transportError(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, nil, err
	}
	c.trace.response(req, resp, b, time.Since(start))
	if resp.StatusCode >= 300 {
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(b, &eb)
		if eb.Error.Code == "" {
			eb.Error.Code, eb.Error.Message = strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(b))
		}
		return resp, b, &APIError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	return resp, b, nil
}

// progress reports a long-running operation's progress.
type progress func(status string, percent *float64)

// wait follows a 202: it polls the Azure-AsyncOperation URL until the operation ends, then
// returns the final body (from finalURL if set, else from the Location URL), as azcore does.
func (c *client) wait(ctx context.Context, resp *http.Response, finalURL string, show progress) ([]byte, error) {
	statusURL := resp.Header.Get("Azure-AsyncOperation")
	if statusURL == "" {
		return nil, errors.New("the API answered 202 without an Azure-AsyncOperation URL")
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		_, b, err := c.do(ctx, http.MethodGet, statusURL, nil)
		if err != nil {
			return nil, err
		}
		var st struct {
			Status          string
			PercentComplete *float64
			Error           *struct{ Code, Message string }
		}
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("operation status: %w", err)
		}
		if show != nil {
			show(st.Status, st.PercentComplete)
		}
		switch strings.ToLower(st.Status) {
		case "succeeded":
			if finalURL == "" {
				finalURL = resp.Header.Get("Location")
			}
			if finalURL == "" {
				return nil, nil
			}
			_, body, err := c.do(ctx, http.MethodGet, finalURL, nil)
			return body, err
		case "failed", "canceled", "cancelled":
			if st.Error != nil {
				return nil, &APIError{Code: st.Error.Code, Message: st.Error.Message}
			}
			return nil, fmt.Errorf("operation %s", st.Status)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

func (c *client) instancePath(rg, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Sql/managedInstances/%s",
		url.PathEscape(c.sub), url.PathEscape(rg), url.PathEscape(name))
}
