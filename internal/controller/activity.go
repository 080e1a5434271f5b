package controller

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/resource"
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

// Activity is the activity log's record of one operation: who or what started it, what,
// when, how it ended, and what a forced failover lost. It is written when the operation
// ends, in the transaction that ends it, and kept for the retention period (the operation's
// own record goes after a day).
type Activity struct {
	OperationID   string            `json:"operationId"`
	Kind          string            `json:"kind"`
	Subscription  string            `json:"subscription"`
	ResourceGroup string            `json:"resourceGroup"`
	ResourceID    string            `json:"resourceId"`
	Caller        string            `json:"caller"`
	Status        string            `json:"status"`
	Start         time.Time         `json:"start"`
	End           *time.Time        `json:"end,omitempty"`
	Error         *arm.Error        `json:"error,omitempty"`
	LostWAL       *resource.LostWAL `json:"lostWal,omitempty"`
}

func activityKey(opID string) string { return "activity/" + opID }

// activityOf is the activity record of op.
func activityOf(op *Operation) Activity {
	a := Activity{OperationID: op.ID, Kind: op.Kind, Subscription: op.Subscription, Caller: op.initiator(), Status: op.Status,
		Start: op.StartTime, End: op.EndTime, Error: op.Error, ResourceGroup: op.ResourceGroup, ResourceID: op.ResourceID}
	if op.groupOp() {
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

// ActivityFilter selects activity log entries, as the activity log's $filter does.
type ActivityFilter struct {
	From, To      time.Time
	ResourceGroup string
	ResourceID    string
	OperationID   string
}

// ActivityEvent is one entry: an operation's start, or its end.
type ActivityEvent struct {
	Activity
	Phase string // "Started", or the final status
	Time  time.Time
}

// ActivityLog lists the entries of sub matching f, newest first: operations that ended (from
// their activity records) and operations still running (from the operations).
func (c *Controller) ActivityLog(ctx context.Context, sub string, f ActivityFilter) ([]ActivityEvent, error) {
	acts, err := store.List[Activity](ctx, c.st, "activity/")
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
		if !seen[ops[i].ID] && (ops[i].groupOp() || ops[i].ResourceID != "") {
			acts = append(acts, activityOf(&ops[i]))
		}
	}
	var out []ActivityEvent
	for _, a := range acts {
		if !strings.EqualFold(a.Subscription, sub) ||
			(f.ResourceGroup != "" && !strings.EqualFold(a.ResourceGroup, f.ResourceGroup)) ||
			(f.ResourceID != "" && !strings.EqualFold(a.ResourceID, f.ResourceID)) ||
			(f.OperationID != "" && a.OperationID != f.OperationID) {
			continue
		}
		evs := []ActivityEvent{{Activity: a, Phase: "Started", Time: a.Start}}
		if a.End != nil {
			evs = append(evs, ActivityEvent{Activity: a, Phase: a.Status, Time: *a.End})
		}
		for _, e := range evs {
			if !e.Time.Before(f.From) && (f.To.IsZero() || !e.Time.After(f.To)) {
				out = append(out, e)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out, nil
}

// pruneActivity removes activity records older than the retention.
func (c *Controller) pruneActivity(ctx context.Context) {
	if c.cfg.activityRetention() <= 0 {
		return
	}
	acts, err := store.List[Activity](ctx, c.st, "activity/")
	if err != nil {
		return
	}
	var del []store.Op
	for _, a := range acts {
		if a.End != nil && time.Since(*a.End) > c.cfg.activityRetention() {
			del = append(del, store.Op{Key: activityKey(a.OperationID), Delete: true})
		}
	}
	if len(del) > 0 {
		if err := c.st.Txn(ctx, nil, del); err != nil && !errors.Is(err, context.Canceled) {
			c.log.Warn("prune the activity log", "err", err)
		}
	}
}

// noteLostInActivity adds a forced failover's lost range to its activity record.
func (c *Controller) noteLostInActivity(ctx context.Context, opID string, lost *resource.LostWAL) {
	if opID == "" {
		return
	}
	_, err := store.Update(ctx, c.st, activityKey(opID), func(a *Activity) error {
		a.LostWAL = lost
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		c.log.Warn("record the lost range in the activity log", "operation", opID, "err", err)
	}
}
