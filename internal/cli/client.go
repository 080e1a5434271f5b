package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"github.com/fogdb/fog/internal/fogclient"
)

// APIError is an ARM error returned by the API.
type APIError = fogclient.Error

// shownError is an error a show command got: a 404 there exits with 3, as az's does.
type shownError struct{ error }

func (e *shownError) Unwrap() error { return e.error }

// shown marks an API error that a show command got, for ExitCode.
func shown(err error) error {
	var ae *APIError
	if errors.As(err, &ae) {
		return &shownError{err}
	}
	return err
}

// client is the API client of the client config the CLI was pointed at.
type client struct {
	*fogclient.Client
	// config is the client config file the client was loaded from (for error messages).
	config string
}

func defaultConfigPath() string {
	if p := os.Getenv("FOG_CONFIG"); p != "" {
		return p
	}
	return filepath.Join(".fog", "client.json")
}

func loadClient(path, sub string, opts ...fogclient.Option) (*client, error) {
	cc, err := fogclient.LoadConfig(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%w (start Fog with `fog up`, or pass --config / set FOG_CONFIG)", err)
		}
		return nil, err
	}
	c, err := fogclient.New(cc, append([]fogclient.Option{fogclient.WithSubscription(sub)}, opts...)...)
	if err != nil {
		return nil, err
	}
	return &client{Client: c, config: path}, nil
}

// explain turns a request that got no answer into what it means and what to do, naming the
// API once.
func (c *client) explain(err error) error {
	var te *fogclient.TransportError
	if !errors.As(err, &te) {
		return err
	}
	err = te.Err
	base := c.BaseURL()
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var opErr *net.OpError
	switch {
	case errors.As(err, &unknownCA):
		abs, _ := filepath.Abs(c.config)
		return fmt.Errorf("the certificate of the Fog API at %s is not signed by the CA in %s (its caCert, written by `fog up` or `fog server` into their data directory): this config belongs to another deployment, or the server's CA changed; use that deployment's client.json (--config or FOG_CONFIG)", base, abs)
	case errors.As(err, &hostname):
		return fmt.Errorf("the certificate of the Fog API at %s does not name that host (%v); give the server --advertise with the name clients use", base, hostname)
	case errors.As(err, &opErr) && errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("nothing answers at the Fog API %s (connection refused): start it with `fog up`, or check apiUrl in %s", base, c.config)
	case errors.As(err, &opErr):
		return fmt.Errorf("cannot reach the Fog API %s: %v", base, opErr.Err)
	}
	return fmt.Errorf("the Fog API %s: %w", base, err)
}

// answer runs a typed call and returns the API's answer as it came (the CLI prints it as
// az does, with nothing lost in a round trip through the typed shape).
func (c *client) answer(ctx context.Context, call func(ctx context.Context) error) ([]byte, error) {
	var raw fogclient.Response
	if err := call(fogclient.WithResponse(ctx, &raw)); err != nil {
		return nil, c.explain(err)
	}
	return raw.Body, nil
}
