package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// newMonitorCommand is az monitor's activity-log list, over Fog's activity log.
func newMonitorCommand(g *globals) *cobra.Command {
	mon := &cobra.Command{Use: "monitor", Short: "Monitor Fog: the activity log"}
	al := &cobra.Command{Use: "activity-log", Short: "Who started which operation, when, and how it ended"}
	var rg, start, end, offset, resourceID, correlation string
	var maxEvents int
	list := &cobra.Command{
		Use:   "list",
		Short: "List activity log events (default: the last 6 hours), newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			now := time.Now().UTC()
			to := now
			if end != "" {
				if to, err = time.Parse(time.RFC3339, end); err != nil {
					return usageErr("--end-time", "give a time such as 2026-11-26T10:00:00Z")
				}
			}
			var from time.Time
			switch {
			case start != "":
				if from, err = time.Parse(time.RFC3339, start); err != nil {
					return usageErr("--start-time", "give a time such as 2026-11-26T08:00:00Z")
				}
			default:
				d, err := parseOffset(offset)
				if err != nil {
					return usageErr("--offset", "%v", err)
				}
				from = to.Add(-d)
			}
			if maxEvents < 1 {
				return usageErr("--max-events", "give a positive number")
			}
			filter := fmt.Sprintf("eventTimestamp ge '%s' and eventTimestamp le '%s'", from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano))
			if rg != "" {
				filter += fmt.Sprintf(" and resourceGroupName eq '%s'", rg)
			}
			if resourceID != "" {
				filter += fmt.Sprintf(" and resourceId eq '%s'", resourceID)
			}
			if correlation != "" {
				filter += fmt.Sprintf(" and correlationId eq '%s'", correlation)
			}
			b, err := c.answer(cmd.Context(), func(ctx context.Context) error {
				_, err := c.ListActivityLog(ctx, filter)
				return err
			})
			if err != nil {
				return err
			}
			return g.printLimited(b, maxEvents)
		},
	}
	fl := list.Flags()
	fl.StringVarP(&rg, "resource-group", "g", "", "only this resource group's events")
	fl.StringVar(&start, "start-time", "", "start of the window (RFC 3339); default: end time minus --offset")
	fl.StringVar(&end, "end-time", "", "end of the window (RFC 3339); default: now")
	fl.StringVar(&offset, "offset", "6h", "length of the window when --start-time is not given, such as 6h or 7d")
	fl.StringVar(&resourceID, "resource-id", "", "only this resource's events")
	fl.StringVar(&correlation, "correlation-id", "", "only this operation's events")
	fl.IntVar(&maxEvents, "max-events", 50, "at most this many events")
	al.AddCommand(list)
	mon.AddCommand(al)
	return mon
}

// parseOffset reads az's offsets: a Go duration, or whole days such as 7d.
func parseOffset(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(d, "%d", &n); err == nil && n > 0 && n <= 90 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
		return 0, fmt.Errorf("%q: give 1d to 90d, or hours such as 6h", s)
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: give a duration such as 6h or 7d", s)
	}
	return d, nil
}

// printLimited prints a list body's values as they are (az does not flatten activity log
// events), at most n of them.
func (g *globals) printLimited(body []byte, n int) error {
	if g.output == "none" {
		return nil
	}
	var v struct {
		Value []json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	if len(v.Value) > n {
		v.Value = v.Value[:n]
	}
	if v.Value == nil {
		v.Value = []json.RawMessage{}
	}
	b, _ := json.MarshalIndent(v.Value, "", "  ")
	_, err := fmt.Fprintln(g.io.Out, string(b))
	return err
}
