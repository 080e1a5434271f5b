package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
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

func (c *client) groupPath(rg, location, name string) string {
	p := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Sql/locations/%s/instanceFailoverGroups",
		url.PathEscape(c.sub), url.PathEscape(rg), url.PathEscape(location))
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
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
func (f *groupFlags) readWrite(cmd *cobra.Command, cur map[string]any) (map[string]any, error) {
	rw := map[string]any{}
	if cur != nil {
		rw = cur
	}
	if cmd.Flags().Changed("failover-policy") || cur == nil {
		v := f.policy
		if !cmd.Flags().Changed("failover-policy") {
			v = "Manual" // create's default; update keeps what the group has
		}
		p, err := pick(policies, "--failover-policy", v)
		if err != nil {
			return nil, err
		}
		rw["failoverPolicy"] = p
	}
	if cmd.Flags().Changed("grace-period") {
		if f.grace < 1 {
			return nil, usageErr("--grace-period", "the grace period is in hours and must be at least 1")
		}
		rw["failoverWithDataLossGracePeriodMinutes"] = f.grace * 60
	} else if rw["failoverPolicy"] == "Automatic" && rw["failoverWithDataLossGracePeriodMinutes"] == nil {
		rw["failoverWithDataLossGracePeriodMinutes"] = 60
	}
	if cmd.Flags().Changed("grace-period-minutes") {
		if cmd.Flags().Changed("grace-period") {
			return nil, usageErr("--grace-period-minutes", "give either --grace-period (hours) or --grace-period-minutes")
		}
		rw["failoverWithDataLossGracePeriodMinutes"] = f.graceMinutes
	}
	if cmd.Flags().Changed("max-data-loss-bytes") {
		rw["maxDataLossBytes"] = f.maxLossBytes
	}
	if cmd.Flags().Changed("max-data-loss-seconds") {
		rw["maxDataLossSeconds"] = f.maxLossSeconds
	}
	if cmd.Flags().Changed("automatic-failover-mode") {
		rw["automaticFailoverMode"] = f.autoMode
	}
	if rw["failoverPolicy"] == "Manual" {
		for _, k := range []string{"failoverWithDataLossGracePeriodMinutes", "maxDataLossBytes", "maxDataLossSeconds", "automaticFailoverMode"} {
			delete(rw, k)
		}
	}
	return rw, nil
}

// current reads the addressed group and returns its path and properties.
func (f *groupFlags) current(cmd *cobra.Command, g *globals) (*client, string, map[string]any, error) {
	c, err := g.client()
	if err != nil {
		return nil, "", nil, err
	}
	path := c.groupPath(f.rg, f.location, f.name)
	_, b, err := c.do(cmd.Context(), http.MethodGet, path, nil)
	if err != nil {
		return nil, "", nil, err
	}
	var cur struct {
		Properties map[string]any `json:"properties"`
	}
	if err := json.Unmarshal(b, &cur); err != nil {
		return nil, "", nil, fmt.Errorf("decode failover group: %w", err)
	}
	return c, path, cur.Properties, nil
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
			var prim, part struct {
				ID       string
				Location string
			}
			_, b, err := c.do(cmd.Context(), http.MethodGet, c.instancePath(f.rg, f.mi), nil)
			if err != nil {
				return lookedFor(err, "the primary managed instance", f.mi, f.rg, c.sub, "--mi and --resource-group")
			}
			_ = json.Unmarshal(b, &prim)
			_, b, err = c.do(cmd.Context(), http.MethodGet, c.instancePath(f.partnerRG, f.partnerMI), nil)
			if err != nil {
				return lookedFor(err, "the partner managed instance", f.partnerMI, f.partnerRG, c.sub, "--partner-mi and --partner-resource-group (which defaults to --resource-group)")
			}
			_ = json.Unmarshal(b, &part)
			rw, err := f.readWrite(cmd, nil)
			if err != nil {
				return err
			}
			props := map[string]any{
				"readWriteEndpoint":    rw,
				"readOnlyEndpoint":     map[string]any{"failoverPolicy": "Disabled"},
				"partnerRegions":       []any{map[string]any{"location": part.Location}},
				"managedInstancePairs": []any{map[string]any{"primaryManagedInstanceId": prim.ID, "partnerManagedInstanceId": part.ID}},
			}
			if cmd.Flags().Changed("secondary-type") {
				t, err := pick(secondaryTypes, "--secondary-type", f.secondaryType)
				if err != nil {
					return err
				}
				props["secondaryType"] = t
			}
			return g.put(cmd, c.groupPath(f.rg, prim.Location, f.name), map[string]any{"properties": props}, f.noWait, "Seeding the secondary")
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
			c, err := g.client()
			if err != nil {
				return err
			}
			return g.get(cmd, c.groupPath(f.rg, f.location, f.name))
		},
	}
	addr(show)

	list := &cobra.Command{
		Use: "list", Short: "List the failover groups of a resource group and region", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return g.get(cmd, c.groupPath(f.rg, f.location, ""))
		},
	}
	list.Flags().StringVarP(&f.rg, "resource-group", "g", "", "resource group")
	list.Flags().StringVarP(&f.location, "location", "l", "", "region")
	_ = list.MarkFlagRequired("resource-group")
	_ = list.MarkFlagRequired("location")

	update := &cobra.Command{
		Use: "update", Short: "Change a failover group's policies (on the primary side)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, path, p, err := f.current(cmd, g)
			if err != nil {
				return err
			}
			rw, _ := p["readWriteEndpoint"].(map[string]any)
			if rw, err = f.readWrite(cmd, rw); err != nil {
				return err
			}
			p["readWriteEndpoint"] = rw
			if cmd.Flags().Changed("secondary-type") {
				if p["secondaryType"], err = pick(secondaryTypes, "--secondary-type", f.secondaryType); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("read-only-failover-policy") {
				v, err := pick(roPolicies, "--read-only-failover-policy", f.readOnlyPolicy)
				if err != nil {
					return err
				}
				p["readOnlyEndpoint"] = map[string]any{"failoverPolicy": v}
			}
			for _, k := range []string{"replicationRole", "replicationState", "listeners", "replication", "lastForcedFailover", "warnings"} {
				delete(p, k)
			}
			if regions, ok := p["partnerRegions"].([]any); ok {
				for _, r := range regions {
					if m, ok := r.(map[string]any); ok {
						delete(m, "replicationRole")
					}
				}
			}
			return g.put(cmd, path, map[string]any{"properties": p}, false, "Updating failover group")
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
			return g.delete(cmd, c.groupPath(f.rg, f.location, f.name), false, "Deleting failover group")
		},
	}
	addr(del)

	setPrimary := &cobra.Command{
		Use: "set-primary", Short: "Fail over to the instance in this resource group and region", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, path, p, err := f.current(cmd, g)
			if err != nil {
				return err
			}
			// As az: a side that is already primary needs nothing.
			if p["replicationRole"] == "Primary" {
				return nil
			}
			action := "/failover"
			if f.allowDataLoss {
				action = "/forceFailoverAllowDataLoss"
			}
			resp, _, err := c.do(cmd.Context(), http.MethodPost, path+action, nil)
			if err != nil {
				return err
			}
			body, err := c.wait(cmd.Context(), resp, "", g.progressFor("Failing over"))
			if err != nil {
				return err
			}
			return g.print(body)
		},
	}
	addr(setPrimary)
	setPrimary.Flags().BoolVar(&f.allowDataLoss, "allow-data-loss", false, "fail over even if the primary is unreachable; recent transactions may be lost")

	grp.AddCommand(create, show, list, update, del, setPrimary, newGroupConnStringCommand(g),
		newWaitCommand(g, "failover group", func(c *client, rg, loc, _, name string) string { return c.groupPath(rg, loc, name) }, true, false))
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
