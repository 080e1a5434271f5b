package cli

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

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
			return g.put(cmd, g.instancePathFor(f.rg, f.name), body, f.noWait, "Creating managed instance")
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
			_, cur, err := c.do(cmd.Context(), http.MethodGet, c.instancePath(f.rg, f.name), nil)
			if err != nil {
				return err
			}
			var curBody struct{ Location string }
			_ = json.Unmarshal(cur, &curBody)
			f.location = curBody.Location
			body, err := f.body(cmd, false)
			if err != nil {
				return err
			}
			return g.put(cmd, c.instancePath(f.rg, f.name), body, f.noWait, "Updating managed instance")
		},
	}
	nameRG(update)
	settable(update)

	show := &cobra.Command{
		Use:   "show",
		Short: "Show a managed instance",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.get(cmd, g.instancePathFor(f.rg, f.name))
		},
	}
	nameRG(show)

	list := &cobra.Command{
		Use:   "list",
		Short: "List managed instances of a resource group, or of the subscription",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			p := "/subscriptions/" + c.sub
			if f.rg != "" {
				p += "/resourceGroups/" + f.rg
			}
			return g.get(cmd, p+"/providers/Microsoft.Sql/managedInstances")
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
			return g.delete(cmd, g.instancePathFor(f.rg, f.name), f.noWait, "Deleting managed instance")
		},
	}
	nameRG(del)
	del.Flags().BoolVarP(&f.yes, "yes", "y", false, "do not prompt for confirmation")
	del.Flags().BoolVar(&f.noWait, "no-wait", false, "do not wait for the operation to finish")

	mi.AddCommand(create, update, show, list, del, newMIConnStringCommand(g),
		newWaitCommand(g, "managed instance", func(c *client, rg, _, _, name string) string { return c.instancePath(rg, name) }, false, false))
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
func (f *miFlags) body(cmd *cobra.Command, create bool) (map[string]any, error) {
	props := map[string]any{}
	sku := map[string]any{}
	set := cmd.Flags().Changed
	if set("admin-user") {
		props["administratorLogin"] = f.adminUser
	}
	if set("admin-password") {
		props["administratorLoginPassword"] = f.adminPassword
	}
	if set("edition") || set("tier") {
		e, ok := editions[strings.ToLower(f.edition)]
		if !ok {
			return nil, usageErr("--edition", "%q is not a tier: use GeneralPurpose or BusinessCritical", f.edition)
		}
		sku["tier"] = e
	}
	if set("family") {
		if !strings.EqualFold(f.family, "Gen5") {
			return nil, usageErr("--family", "%q is not a hardware family: use Gen5", f.family)
		}
		sku["family"] = "Gen5"
	}
	if set("capacity") {
		props["vCores"] = f.capacity
	}
	if set("storage") {
		gb, err := parseStorage(f.storage)
		if err != nil {
			return nil, err
		}
		props["storageSizeInGB"] = gb
	}
	for flag, key := range map[string]string{"collation": "collation", "timezone-id": "timezoneId", "dns-zone-partner": "dnsZonePartner", "license-type": "licenseType", "database-format": "databaseFormat"} {
		if set(flag) {
			v := map[string]string{"collation": f.collation, "timezone-id": f.timezone, "dns-zone-partner": f.dnsZonePartner, "license-type": f.licenseType, "database-format": f.databaseFormat}[flag]
			props[key] = v
		}
	}
	body := map[string]any{"location": f.location, "properties": props}
	if len(sku) > 0 {
		body["sku"] = sku
	}
	if set("tags") {
		tags := map[string]string{}
		for _, t := range f.tags {
			for _, kv := range strings.Fields(t) {
				k, v, _ := strings.Cut(kv, "=")
				if k == "" {
					return nil, usageErr("--tags", "%q is not key=value", kv)
				}
				tags[k] = v
			}
		}
		body["tags"] = tags
	}
	_ = create
	return body, nil
}

func (g *globals) instancePathFor(rg, name string) string {
	c, err := g.client()
	if err != nil {
		return ""
	}
	return c.instancePath(rg, name)
}

func (g *globals) get(cmd *cobra.Command, path string) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	_, b, err := c.do(cmd.Context(), http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	return g.print(b)
}

func (g *globals) put(cmd *cobra.Command, path string, body any, noWait bool, what string) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	resp, b, err := c.do(cmd.Context(), http.MethodPut, path, body)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusAccepted {
		if noWait {
			return g.noWaitHint(cmd, resp)
		}
		if b, err = c.wait(cmd.Context(), resp, path, g.progressFor(what)); err != nil {
			return err
		}
	}
	return g.print(b)
}

func (g *globals) delete(cmd *cobra.Command, path string, noWait bool, what string) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	resp, _, err := c.do(cmd.Context(), http.MethodDelete, path, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusAccepted && noWait {
		return g.noWaitHint(cmd, resp)
	}
	if resp.StatusCode == http.StatusAccepted {
		_, err = c.wait(cmd.Context(), resp, "", g.progressFor(what))
		return err
	}
	return nil
}
