package controller

import (
	"context"
	"fmt"
	"strings"

	"github.com/fogdb/fog/internal/activity"
	"github.com/fogdb/fog/internal/store"
)

type callerKey struct{}

// WithCaller tells the controller who makes the requests made with ctx (the API token's
// name); operations record it as their initiator.
func WithCaller(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, callerKey{}, name)
}

func callerOf(ctx context.Context) string {
	if s, _ := ctx.Value(callerKey{}).(string); s != "" {
		return s
	}
	return InitiatorUser
}

// The activity log (package activity).
type (
	ActivityFilter = activity.Filter
	ActivityEvent  = activity.Event
)

// activityOf is the activity record of op, written in the transaction that ends it.
func activityOf(op *Operation) activity.Record {
	a := activity.Record{OperationID: op.ID, Kind: op.Kind, Subscription: op.Subscription, Caller: op.InitiatedBy(), Status: op.Status,
		Start: op.StartTime, End: op.EndTime, Error: op.Error, ResourceGroup: op.ResourceGroup, ResourceID: op.ResourceID}
	if op.GroupOp() {
		a.ResourceID = fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Sql/locations/%s/instanceFailoverGroups/%s",
			op.Subscription, op.ResourceGroup, op.Location, op.ResourceID)
	}
	if a.ResourceGroup == "" {
		if _, rest, ok := strings.Cut(a.ResourceID, "/resourceGroups/"); ok {
			a.ResourceGroup, _, _ = strings.Cut(rest, "/")
		}
	}
	return a
}

// ActivityLog lists the entries of sub matching f, newest first: operations that ended (from
// their activity records) and operations still running (from the operations).
func (c *Controller) ActivityLog(ctx context.Context, sub string, f ActivityFilter) ([]ActivityEvent, error) {
	acts, err := activity.List(ctx, c.st)
	if err != nil {
		return nil, internalError(err)
	}
	seen := map[string]bool{}
	for _, a := range acts {
		seen[a.OperationID] = true
	}
	ops, err := store.List[Operation](ctx, c.st, "ops/")
	if err != nil {
		return nil, internalError(err)
	}
	for i := range ops {
		if !seen[ops[i].ID] && (ops[i].GroupOp() || ops[i].ResourceID != "") {
			acts = append(acts, activityOf(&ops[i]))
		}
	}
	return activity.Select(acts, sub, f), nil
}
