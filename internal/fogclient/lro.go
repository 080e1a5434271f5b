package fogclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
)

// Operation is a request that may run on after its answer: a PUT, DELETE or POST that the
// API answered with 202 and an Azure-AsyncOperation (or Location) URL, or one it finished at
// once.
type Operation struct {
	c *Client
	// First is the request's own answer.
	First *Response
	// final is where the resource is read when the operation succeeds ("" for the Location
	// header's URL, or nothing).
	final string
}

// Begin sends a request that may start a long-running operation. finalURL is where the
// resource is read when it succeeds ("" to read the Location header's URL, as after a POST
// action or a DELETE).
func (c *Client) Begin(ctx context.Context, method, path string, body any, finalURL string) (*Operation, error) {
	resp, err := c.do(ctx, method, path, body, nil)
	if err != nil {
		return nil, err
	}
	return &Operation{c: c, First: resp, final: finalURL}, nil
}

// Done reports whether the request finished with its answer (no 202).
func (o *Operation) Done() bool { return o.First.Status != http.StatusAccepted }

// StatusURL is the operation's Azure-AsyncOperation URL ("" when there is none).
func (o *Operation) StatusURL() string { return o.First.Header.Get("Azure-AsyncOperation") }

// Wait follows the operation to its end, reading its status every poll interval, and
// returns the answer the resource was read from when it succeeded (the final read; the
// first answer when it finished at once; nil when there is nothing to read). progress, if
// not nil, sees each status. A failed or canceled operation is an *Error with Status 0.
func (o *Operation) Wait(ctx context.Context, progress func(arm.OperationStatus)) (*Response, error) {
	if o.Done() {
		capture(ctx, o.First)
		return o.First, nil
	}
	statusURL := o.StatusURL()
	if statusURL == "" {
		loc := o.First.Header.Get("Location")
		if loc == "" {
			return nil, errors.New("the API answered 202 without an Azure-AsyncOperation URL")
		}
		return o.c.pollLocation(ctx, loc)
	}
	st, _, err := o.c.PollStatus(ctx, statusURL, progress)
	if err != nil {
		return nil, err
	}
	if !strings.EqualFold(st.Status, arm.StatusSucceeded) {
		if st.Error != nil {
			return nil, &Error{Code: st.Error.Code, Message: st.Error.Message}
		}
		return nil, fmt.Errorf("operation %s", st.Status)
	}
	final := o.final
	if final == "" {
		final = o.First.Header.Get("Location")
	}
	if final == "" {
		return nil, nil
	}
	return o.c.Do(ctx, http.MethodGet, final, nil, nil)
}

// PollStatus reads an Azure-AsyncOperation URL until the operation ends (Succeeded, Failed
// or Canceled) and returns its last status and the answer it came in. A failed operation is
// not an error here: the status says how it ended.
func (c *Client) PollStatus(ctx context.Context, statusURL string, progress func(arm.OperationStatus)) (*arm.OperationStatus, *Response, error) {
	tick := time.NewTicker(c.poll)
	defer tick.Stop()
	for {
		resp, err := c.do(ctx, http.MethodGet, statusURL, nil, nil)
		if err != nil {
			return nil, nil, err
		}
		var st arm.OperationStatus
		if err := json.Unmarshal(resp.Body, &st); err != nil {
			return nil, resp, fmt.Errorf("operation status: %w", err)
		}
		if progress != nil {
			progress(st)
		}
		switch strings.ToLower(st.Status) {
		case "succeeded", "failed", "canceled", "cancelled":
			return &st, resp, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// pollLocation follows ARM's Location protocol: the URL answers 202 while the operation
// runs, then the result (or an error).
func (c *Client) pollLocation(ctx context.Context, loc string) (*Response, error) {
	tick := time.NewTicker(c.poll)
	defer tick.Stop()
	for {
		resp, err := c.do(ctx, http.MethodGet, loc, nil, nil)
		if err != nil {
			return nil, err
		}
		if resp.Status != http.StatusAccepted {
			capture(ctx, resp)
			if len(resp.Body) == 0 {
				return nil, nil
			}
			return resp, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}
