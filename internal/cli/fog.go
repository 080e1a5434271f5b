package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fogdb/fog/internal/fogclient"
	"github.com/fogdb/fog/internal/resource"
)

type groupFlags struct {
	name, rg, location, mi, partnerMI, partnerRG string
	policy, secondaryType, readOnlyPolicy        string
	grace                                        int
	allowDataLoss, noWait                        bool
	// Fog's own: minutes (where the deployment allows less than an hour), the data-loss
	// budget and observe-only mode.
	graceMinutes, maxLossSeconds int
	maxLossBytes                 int64
	autoMode                     string
}

// bindFogPolicy adds Fog's own readWriteEndpoint flags.
func (f *groupFlags) bindFogPolicy(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.IntVar(&f.graceMinutes, "grace-period-minutes", 0, "grace period in minutes instead of hours (Fog; a deployment's --min-grace-period may allow less than 60)")
	fl.Int64Var(&f.maxLossBytes, "max-data-loss-bytes", 0, "Automatic policy: do not fail over when the secondary is further behind than this many bytes (Fog)")
	fl.IntVar(&f.maxLossSeconds, "max-data-loss-seconds", 0, "Automatic policy: do not fail over when the secondary is further behind than this many seconds (Fog)")
	fl.StringVar(&f.autoMode, "automatic-failover-mode", "", "Automatic policy: Enabled, or ObserveOnly to record what it would do without acting (Fog)")
}

var policies = map[string]string{"manual": "Manual", "automatic": "Automatic"}
var secondaryTypes = map[string]string{"geo": "Geo", "standby": "Standby"}
var roPolicies = map[string]string{"disabled": "Disabled", "enabled": "Enabled"}

func pick(m map[string]string, flag, v string) (string, error) {
	if x, ok := m[strings.ToLower(v)]; ok {
		return x, nil
	}
	var allowed []string
	for _, x := range m {
		allowed = append(allowed, x)
	}
	return "", usageErr(flag, "%q is not one of %s", v, strings.Join(allowed, ", "))
}

// readWrite builds the readWriteEndpoint as az does: the grace period in hours becomes
// minutes, and is omitted for Manual.
func (f *groupFlags) readWrite(cmd *cobra.Command, cur *resource.ReadWriteEndpoint) (*resource.ReadWriteEndpoint, error) {
	rw := &resource.ReadWriteEndpoint{}
	if cur != nil {
		rw = cur
	}
	changed := cmd.Flags().Changed
	if changed("failover-policy") || cur == nil {
		v := f.policy
		if !changed("failover-policy") {
			v = "Manual" // create's default; update keeps what the group has
		}
		p, err := pick(policies, "--failover-policy", v)
		if err != nil {
			return nil, err
		}
		rw.FailoverPolicy = p
	}
	if changed("grace-period") {
		if f.grace < 1 {
			return nil, usageErr("--grace-period", "the grace period is in hours and must be at least 1")
		}
		rw.FailoverWithDataLossGracePeriodMinutes = ptr(f.grace * 60)
	} else if rw.FailoverPolicy == "Automatic" && rw.FailoverWithDataLossGracePeriodMinutes == nil {
		rw.FailoverWithDataLossGracePeriodMinutes = ptr(60)
	}
	if changed("grace-period-minutes") {
		if changed("grace-period") {
			return nil, usageErr("--grace-period-minutes", "give either --grace-period (hours) or --grace-period-minutes")
		}
		rw.FailoverWithDataLossGracePeriodMinutes = ptr(f.graceMinutes)
	}
	if changed("max-data-loss-bytes") {
		rw.MaxDataLossBytes = ptr(f.maxLossBytes)
	}
	if changed("max-data-loss-seconds") {
		rw.MaxDataLossSeconds = ptr(f.maxLossSeconds)
	}
	if changed("automatic-failover-mode") {
		rw.AutomaticFailoverMode = f.autoMode
	}
	if rw.FailoverPolicy == "Manual" {
		rw.FailoverWithDataLossGracePeriodMinutes, rw.MaxDataLossBytes, rw.MaxDataLossSeconds, rw.AutomaticFailoverMode = nil, nil, nil, ""
	}
	return rw, nil
}

func ptr[T any](v T) *T { return &v }

// current reads the addressed group.
func (f *groupFlags) current(cmd *cobra.Command, g *globals) (*client, *fogclient.FailoverGroup, error) {
	c, err := g.client()
	if err != nil {
		return nil, nil, err
	}
	cur, err := c.GetFailoverGroup(cmd.Context(), f.rg, f.location, f.name)
	if err != nil {
		return nil, nil, c.explain(err)
	}
	return c, cur, nil
}

func newGroupCommand(g *globals) *cobra.Command {
	grp := &cobra.Command{Use: "instance-failover-group", Short: "Manage instance failover groups (az sql instance-failover-group)"}
	var f groupFlags
	addr := func(c *cobra.Command) {
		c.Flags().StringVarP(&f.name, "name", "n", "", "failover group name")
		c.Flags().StringVarP(&f.rg, "resource-group", "g", "", "resource group of the instance on this side")
		c.Flags().StringVarP(&f.location, "location", "l", "", "region of the instance on this side")
		_ = c.MarkFlagRequired("name")
		_ = c.MarkFlagRequired("resource-group")
		_ = c.MarkFlagRequired("location")
	}

	create := &cobra.Command{
		Use: "create", Short: "Create a failover group (seeds the secondary from the primary)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if f.partnerRG == "" {
				f.partnerRG = f.rg
			}
			prim, err := c.GetManagedInstance(cmd.Context(), f.rg, f.mi)
			if err != nil {
				return lookedFor(c.explain(err), "the primary managed instance", f.mi, f.rg, c.Subscription(), "--mi and --resource-group")
			}
			part, err := c.GetManagedInstance(cmd.Context(), f.partnerRG, f.partnerMI)
			if err != nil {
				return lookedFor(c.explain(err), "the partner managed instance", f.partnerMI, f.partnerRG, c.Subscription(), "--partner-mi and --partner-resource-group (which defaults to --resource-group)")
			}
			rw, err := f.readWrite(cmd, nil)
			if err != nil {
				return err
			}
			grp := fogclient.FailoverGroup{Properties: resource.FailoverGroupProperties{
				ReadWriteEndpoint:    rw,
				ReadOnlyEndpoint:     &resource.ReadOnlyEndpoint{FailoverPolicy: "Disabled"},
				PartnerRegions:       []resource.PartnerRegion{{Location: part.Location}},
				ManagedInstancePairs: []resource.InstancePair{{PrimaryManagedInstanceID: prim.ID, PartnerManagedInstanceID: part.ID}},
			}}
			if cmd.Flags().Changed("secondary-type") {
				if grp.Properties.SecondaryType, err = pick(secondaryTypes, "--secondary-type", f.secondaryType); err != nil {
					return err
				}
			}
			op, err := c.BeginCreateOrUpdateFailoverGroup(cmd.Context(), f.rg, prim.Location, f.name, grp)
			return g.finish(cmd, c, op, err, f.noWait, "Seeding the secondary", true)
		},
	}
	create.Flags().StringVarP(&f.name, "name", "n", "", "failover group name")
	create.Flags().StringVarP(&f.rg, "resource-group", "g", "", "resource group of the primary instance")
	create.Flags().StringVar(&f.mi, "mi", "", "[Required] primary managed instance (or --source-mi)")
	create.Flags().StringVar(&f.mi, "source-mi", "", "alias of --mi")
	create.Flags().StringVar(&f.partnerMI, "partner-mi", "", "secondary managed instance")
	create.Flags().StringVar(&f.partnerRG, "partner-resource-group", "", "resource group of the secondary (default: --resource-group)")
	create.Flags().StringVar(&f.policy, "failover-policy", "Manual", "Manual or Automatic")
	create.Flags().IntVar(&f.grace, "grace-period", 1, "hours before an Automatic policy fails over with data loss (at least 1)")
	f.bindFogPolicy(create)
	create.Flags().StringVar(&f.secondaryType, "secondary-type", "Geo", "Geo (readable) or Standby (DR only)")
	create.Flags().BoolVar(&f.noWait, "no-wait", false, "do not wait for seeding to finish")
	for _, fl := range []string{"name", "resource-group", "partner-mi"} {
		_ = create.MarkFlagRequired(fl)
	}
	create.PreRunE = func(*cobra.Command, []string) error {
		if f.mi == "" {
			return usageErr("--mi", "the primary managed instance is required")
		}
		return nil
	}

	show := &cobra.Command{
		Use: "show", Short: "Show a failover group as this side sees it", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.show(cmd, func(ctx context.Context, c *client) error {
				_, err := c.GetFailoverGroup(ctx, f.rg, f.location, f.name)
				return err
			})
		},
	}
	addr(show)

	list := &cobra.Command{
		Use: "list", Short: "List the failover groups of a resource group and region", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.show(cmd, func(ctx context.Context, c *client) error {
				_, err := c.ListFailoverGroups(ctx, f.rg, f.location)
				return err
			})
		},
	}
	list.Flags().StringVarP(&f.rg, "resource-group", "g", "", "resource group")
	list.Flags().StringVarP(&f.location, "location", "l", "", "region")
	_ = list.MarkFlagRequired("resource-group")
	_ = list.MarkFlagRequired("location")

	update := &cobra.Command{
		Use: "update", Short: "Change a failover group's policies (on the primary side)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cur, err := f.current(cmd, g)
			if err != nil {
				return err
			}
			p := &cur.Properties
			if p.ReadWriteEndpoint, err = f.readWrite(cmd, p.ReadWriteEndpoint); err != nil {
				return err
			}
			if cmd.Flags().Changed("secondary-type") {
				if p.SecondaryType, err = pick(secondaryTypes, "--secondary-type", f.secondaryType); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("read-only-failover-policy") {
				v, err := pick(roPolicies, "--read-only-failover-policy", f.readOnlyPolicy)
				if err != nil {
					return err
				}
				p.ReadOnlyEndpoint = &resource.ReadOnlyEndpoint{FailoverPolicy: v}
			}
			// Send back only what a PUT sets: the read-only properties go.
			body := fogclient.FailoverGroup{Properties: resource.FailoverGroupProperties{
				SecondaryType: p.SecondaryType, ReadWriteEndpoint: p.ReadWriteEndpoint, ReadOnlyEndpoint: p.ReadOnlyEndpoint,
				ManagedInstancePairs: p.ManagedInstancePairs,
			}}
			for _, r := range p.PartnerRegions {
				body.Properties.PartnerRegions = append(body.Properties.PartnerRegions, resource.PartnerRegion{Location: r.Location})
			}
			op, err := c.BeginCreateOrUpdateFailoverGroup(cmd.Context(), f.rg, f.location, f.name, body)
			return g.finish(cmd, c, op, err, false, "Updating failover group", true)
		},
	}
	addr(update)
	update.Flags().StringVar(&f.policy, "failover-policy", "", "Manual or Automatic")
	update.Flags().IntVar(&f.grace, "grace-period", 1, "hours before an Automatic policy fails over with data loss")
	f.bindFogPolicy(update)
	update.Flags().StringVar(&f.secondaryType, "secondary-type", "", "Geo or Standby")
	update.Flags().StringVar(&f.readOnlyPolicy, "read-only-failover-policy", "", "Enabled or Disabled: may read-only sessions go to the primary when the secondary is down")

	del := &cobra.Command{
		Use: "delete", Short: "Delete a failover group; both instances keep their data", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			op, err := c.BeginDeleteFailoverGroup(cmd.Context(), f.rg, f.location, f.name)
			return g.finish(cmd, c, op, err, false, "Deleting failover group", false)
		},
	}
	addr(del)

	setPrimary := &cobra.Command{
		Use: "set-primary", Short: "Fail over to the instance in this resource group and region", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cur, err := f.current(cmd, g)
			if err != nil {
				return err
			}
			// As az: a side that is already primary needs nothing.
			if cur.Properties.ReplicationRole == "Primary" {
				return nil
			}
			begin := c.BeginFailover
			if f.allowDataLoss {
				begin = c.BeginForceFailoverAllowDataLoss
			}
			op, err := begin(cmd.Context(), f.rg, f.location, f.name)
			return g.finish(cmd, c, op, err, false, "Failing over", true)
		},
	}
	addr(setPrimary)
	setPrimary.Flags().BoolVar(&f.allowDataLoss, "allow-data-loss", false, "fail over even if the primary is unreachable; recent transactions may be lost")

	grp.AddCommand(create, show, list, update, del, setPrimary, newGroupConnStringCommand(g),
		newWaitCommand(g, "failover group", func(c *client, rg, loc, _, name string) string { return c.GroupPath(rg, loc, name) }, true, false))
	return grp
}

// lookedFor turns a 404 for an instance the command looked up into an error that says where
// it looked and which flags say so.
func lookedFor(err error, what, name, rg, sub, flags string) error {
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return &APIError{Status: ae.Status, Code: ae.Code, Message: fmt.Sprintf("%s '%s' was not found in resource group '%s' of subscription '%s'; check %s.", what, name, rg, sub, flags)}
	}
	return err
}
