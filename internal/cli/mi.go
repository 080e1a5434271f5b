package cli

import (
	"context"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fogdb/fog/internal/fogclient"
	"github.com/fogdb/fog/internal/resource"
)

type miFlags struct {
	name, rg, location, adminUser, adminPassword  string
	edition, family, storage, collation, timezone string
	dnsZonePartner, licenseType, databaseFormat   string
	capacity                                      int
	tags                                          []string
	noWait, yes                                   bool
}

func newMICommand(g *globals) *cobra.Command {
	mi := &cobra.Command{Use: "mi", Short: "Manage managed instances (az sql mi)"}
	var f miFlags
	nameRG := func(c *cobra.Command) {
		c.Flags().StringVarP(&f.name, "name", "n", "", "managed instance name")
		c.Flags().StringVarP(&f.rg, "resource-group", "g", "", "resource group")
		_ = c.MarkFlagRequired("name")
		_ = c.MarkFlagRequired("resource-group")
	}
	settable := func(c *cobra.Command) {
		c.Flags().StringVarP(&f.adminPassword, "admin-password", "p", "", "administrator login password (16+ characters, three character classes)")
		c.Flags().StringVarP(&f.edition, "edition", "e", "", "service tier: GeneralPurpose or BusinessCritical")
		c.Flags().StringVar(&f.edition, "tier", "", "alias of --edition")
		c.Flags().StringVarP(&f.family, "family", "f", "", "hardware family: Gen5")
		c.Flags().IntVarP(&f.capacity, "capacity", "c", 0, "vCores: 4, 8, 16, 24, 32, 40, 64 or 80")
		c.Flags().StringVar(&f.storage, "storage", "", "storage size, e.g. 64GB or 1TB (multiple of 32 GB)")
		c.Flags().StringVar(&f.licenseType, "license-type", "", "LicenseIncluded or BasePrice")
		c.Flags().StringVar(&f.databaseFormat, "database-format", "", "update policy: SQLServer2022, SQLServer2025 or AlwaysUpToDate")
		c.Flags().StringSliceVar(&f.tags, "tags", nil, "space- or comma-separated key=value tags")
		c.Flags().BoolVar(&f.noWait, "no-wait", false, "do not wait for the operation to finish")
	}

	create := &cobra.Command{
		Use:   "create",
		Short: "Create a managed instance",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := f.body(cmd, true)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			op, err := c.BeginCreateOrUpdateManagedInstance(cmd.Context(), f.rg, f.name, body)
			return g.finish(cmd, c, op, err, f.noWait, "Creating managed instance", true)
		},
	}
	nameRG(create)
	settable(create)
	create.Flags().StringVarP(&f.location, "location", "l", "", "region, e.g. eastus")
	create.Flags().StringVarP(&f.adminUser, "admin-user", "u", "", "administrator login")
	create.Flags().StringVar(&f.collation, "collation", "", "PostgreSQL locale of the instance, e.g. C.UTF-8")
	create.Flags().StringVar(&f.timezone, "timezone-id", "", "time zone: IANA name or Windows id, e.g. 'Pacific Standard Time'")
	create.Flags().StringVar(&f.dnsZonePartner, "dns-zone-partner", "", "resource id of an instance whose DNS zone to share (for a failover group secondary)")
	// Help shows what the API applies when a flag is not given (display only: an absent flag
	// is not sent).
	for fl, def := range map[string]string{
		"edition": "GeneralPurpose", "family": resource.DefaultFamily, "capacity": strconv.Itoa(resource.DefaultVCores),
		"storage": strconv.Itoa(resource.DefaultStorageGB) + "GB", "license-type": resource.DefaultLicenseType,
		"database-format": resource.DefaultDatabaseFormat, "collation": resource.DefaultCollation, "timezone-id": resource.DefaultTimezone,
	} {
		create.Flags().Lookup(fl).DefValue = def
	}
	_ = create.MarkFlagRequired("location")
	_ = create.MarkFlagRequired("admin-user")
	_ = create.MarkFlagRequired("admin-password")

	update := &cobra.Command{
		Use:   "update",
		Short: "Update a managed instance",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			// As az's generic update: read the instance, change what was asked, send it back.
			cur, err := c.GetManagedInstance(cmd.Context(), f.rg, f.name)
			if err != nil {
				return c.explain(err)
			}
			f.location = cur.Location
			body, err := f.body(cmd, false)
			if err != nil {
				return err
			}
			op, err := c.BeginCreateOrUpdateManagedInstance(cmd.Context(), f.rg, f.name, body)
			return g.finish(cmd, c, op, err, f.noWait, "Updating managed instance", true)
		},
	}
	nameRG(update)
	settable(update)

	show := &cobra.Command{
		Use:   "show",
		Short: "Show a managed instance",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.show(cmd, func(ctx context.Context, c *client) error {
				_, err := c.GetManagedInstance(ctx, f.rg, f.name)
				return err
			})
		},
	}
	nameRG(show)

	list := &cobra.Command{
		Use:   "list",
		Short: "List managed instances of a resource group, or of the subscription",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.show(cmd, func(ctx context.Context, c *client) error {
				_, err := c.ListManagedInstances(ctx, f.rg)
				return err
			})
		},
	}
	list.Flags().StringVarP(&f.rg, "resource-group", "g", "", "resource group (default: all)")

	del := &cobra.Command{
		Use:   "delete",
		Short: "Delete a managed instance and all its data",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.confirm(f.yes); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			op, err := c.BeginDeleteManagedInstance(cmd.Context(), f.rg, f.name)
			return g.finish(cmd, c, op, err, f.noWait, "Deleting managed instance", false)
		},
	}
	nameRG(del)
	del.Flags().BoolVarP(&f.yes, "yes", "y", false, "do not prompt for confirmation")
	del.Flags().BoolVar(&f.noWait, "no-wait", false, "do not wait for the operation to finish")

	mi.AddCommand(create, update, show, list, del, newMIConnStringCommand(g),
		newWaitCommand(g, "managed instance", func(c *client, rg, _, _, name string) string { return c.InstancePath(rg, name) }, false, false))
	return mi
}

var storageRe = regexp.MustCompile(`(?i)^\s*(\d+)\s*(gb|g|tb|t)?\s*$`)

// parseStorage takes a size as az does ("64GB", "1TB", or GB by default) and returns GB.
func parseStorage(s string) (int, error) {
	m := storageRe.FindStringSubmatch(s)
	if m == nil {
		return 0, usageErr("--storage", "%q is not a size: use a number of GB such as 64GB or 1TB", s)
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, usageErr("--storage", "%q is too large", s)
	}
	if u := strings.ToLower(m[2]); u == "tb" || u == "t" {
		n *= 1024
	}
	return n, nil
}

var editions = map[string]string{"generalpurpose": "GeneralPurpose", "gp": "GeneralPurpose", "businesscritical": "BusinessCritical", "bc": "BusinessCritical"}

// body builds the PUT body from the flags that were set.
func (f *miFlags) body(cmd *cobra.Command, create bool) (fogclient.ManagedInstance, error) {
	mi := fogclient.ManagedInstance{Location: f.location}
	props := &mi.Properties
	var sku resource.Sku
	set := cmd.Flags().Changed
	if set("admin-user") {
		props.AdministratorLogin = &f.adminUser
	}
	if set("admin-password") {
		props.AdministratorLoginPassword = &f.adminPassword
	}
	if set("edition") || set("tier") {
		e, ok := editions[strings.ToLower(f.edition)]
		if !ok {
			return mi, usageErr("--edition", "%q is not a tier: use GeneralPurpose or BusinessCritical", f.edition)
		}
		sku.Tier = e
	}
	if set("family") {
		if !strings.EqualFold(f.family, "Gen5") {
			return mi, usageErr("--family", "%q is not a hardware family: use Gen5", f.family)
		}
		sku.Family = "Gen5"
	}
	if set("capacity") {
		props.VCores = &f.capacity
	}
	if set("storage") {
		gb, err := parseStorage(f.storage)
		if err != nil {
			return mi, err
		}
		props.StorageSizeInGB = &gb
	}
	for flag, field := range map[string]**string{"collation": &props.Collation, "timezone-id": &props.TimezoneID, "dns-zone-partner": &props.DNSZonePartner, "license-type": &props.LicenseType, "database-format": &props.DatabaseFormat} {
		if set(flag) {
			v := map[string]string{"collation": f.collation, "timezone-id": f.timezone, "dns-zone-partner": f.dnsZonePartner, "license-type": f.licenseType, "database-format": f.databaseFormat}[flag]
			*field = &v
		}
	}
	if sku != (resource.Sku{}) {
		mi.Sku = &sku
	}
	if set("tags") {
		// A non-nil map, even empty: --tags "" clears the instance's tags.
		mi.Tags = map[string]string{}
		for _, t := range f.tags {
			for _, kv := range strings.Fields(t) {
				k, v, _ := strings.Cut(kv, "=")
				if k == "" {
					return mi, usageErr("--tags", "%q is not key=value", kv)
				}
				mi.Tags[k] = v
			}
		}
	}
	_ = create
	return mi, nil
}

// show runs a read and prints the API's answer.
func (g *globals) show(cmd *cobra.Command, read func(ctx context.Context, c *client) error) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	b, err := c.answer(cmd.Context(), func(ctx context.Context) error { return read(ctx, c) })
	if err != nil {
		return err
	}
	return g.print(b)
}

// finish follows an operation a command started: with --no-wait it prints how to wait for
// it; otherwise it waits, and prints the resource the operation ended with when print is set.
func (g *globals) finish(cmd *cobra.Command, c *client, op *fogclient.Operation, err error, noWait bool, what string, print bool) error {
	if err != nil {
		return c.explain(err)
	}
	resp := op.First
	if !op.Done() {
		if noWait {
			return g.noWaitHint(cmd, op.First.Header)
		}
		if resp, err = op.Wait(cmd.Context(), g.progressFor(what)); err != nil {
			return c.explain(err)
		}
	}
	if !print || resp == nil {
		return nil
	}
	return g.print(resp.Body)
}
